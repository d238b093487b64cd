"""The TUI and the due report: marks and highlights, a filter per reason, the detail pane."""

from __future__ import annotations

import time
from pathlib import Path

from credd import paths
from tests.conftest import SENTINEL
from tests.tui.conftest import running, screen_is, screen_text, wait_until


def _row(app, name: str) -> str:
    """The list's row of `name` (left of the detail pane)."""
    return next(line.split("│")[0] for line in screen_text(app).splitlines()
                if line.startswith(f" {name} "))


async def _browsing_with_report(pilot):
    """Browse's list, once the agent's due report has reached it."""
    await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
    entries = pilot.app.screen.entry_list
    await wait_until(pilot, lambda: entries.has_report, what="the due report")
    return entries


def test_reasons_mark_rows_and_filter_the_list(unlocked_agent, make_app, run):
    with unlocked_agent.client() as c:
        c.set("a/copy", value=SENTINEL)
        c.set("b/copy", value=SENTINEL)
        c.set("pw", kind="password", value="hunter2!")
        c.set("fine", value="nothing-wrong-here")
        c.set("staged", value="the-current-value")
        c.rotate("staged", "the-next-value")
        c.record_verification("fine", "ok", seconds=0.2)

    async def scenario():
        async with running(make_app(unlocked_agent), size=(120, 30)) as pilot:
            entries = await _browsing_with_report(pilot)
            assert _row(pilot.app, "a/copy").rstrip().endswith("reused")
            assert _row(pilot.app, "pw").rstrip().endswith("short")
            assert _row(pilot.app, "staged").rstrip().endswith("pending")
            assert entries.reason_counts() == {"duplicate": 2, "short": 1, "pending": 1}
            await pilot.press("U")
            await wait_until(pilot, lambda: screen_is(pilot.app, "PickReasonScreen"))
            assert "the same value as another entry  (2)" in screen_text(pilot.app)
            for _ in range(list(_reasons()).index("duplicate")):
                await pilot.press("down")
            await pilot.press("enter")
            await wait_until(pilot, lambda: [e.name for e in entries.visible_entries()]
                             == ["a/copy", "b/copy"], what="only the reused entries")
            await pilot.press("U")
            await wait_until(pilot, lambda: screen_is(pilot.app, "PickReasonScreen"))
            await pilot.press("end", "enter")  # "every entry again"
            await wait_until(pilot, lambda: len(entries.visible_entries()) == 5, what="all")
            assert entries.move_to("fine")
            detail = pilot.app.screen.detail
            await wait_until(pilot, lambda: detail.meta is not None and detail.meta.name == "fine"
                             and detail.inspected, what="the detail's inspection")
            shown = screen_text(pilot.app)
            assert "fingerprint  fp:" in shown and "checked      ok " in shown
            assert SENTINEL not in shown

    run(scenario())


def test_the_list_marks_due_entries_with_the_agent_s_periods(unlocked_agent, make_app, run):
    path = Path(paths.config_path())
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text('[rotation]\napi_key = "1s"\n')
    path.chmod(0o600)
    with unlocked_agent.client() as c:
        c.set("key", kind="api_key", value="an-api-key-value")
    time.sleep(1.1)

    async def scenario():
        async with running(make_app(unlocked_agent), size=(120, 30)) as pilot:
            entries = await _browsing_with_report(pilot)
            assert _row(pilot.app, "key").rstrip().endswith("ROTATE")
            await pilot.press("u")
            await wait_until(pilot, lambda: [e.name for e in entries.visible_entries()]
                             == ["key"], what="the due entry")
            assert "rotation due since" in screen_text(pilot.app)

    run(scenario())


def _reasons():
    from credd.rules import REASONS
    return REASONS
