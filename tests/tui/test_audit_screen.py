"""The entry detail says when a value was last used, and `w` shows who read it."""

from __future__ import annotations

from tests.tui.conftest import running, screen_is, screen_text, wait_until


def test_last_used_and_who_read_it(browsing, make_app, run, run_credd):
    assert run_credd("get", "db/main").returncode == 0
    assert run_credd("get", "db/main").returncode == 0

    async def scenario():
        async with running(make_app(browsing)) as pilot:
            await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
            screen = pilot.app.screen
            await wait_until(pilot, lambda: screen.entry_list.entries, what="entries")
            assert screen.entry_list.move_to("db/main")
            await wait_until(pilot, lambda: "last used" in screen_text(pilot.app),
                             what="last used in the detail")
            await pilot.press("w")
            await wait_until(pilot, lambda: "credd get" in screen_text(pilot.app),
                             what="the readers")
            assert screen_is(pilot.app, "WhoReadScreen")
            text = screen_text(pilot.app)
            assert "Who read db/main" in text and " 2 " in text
            await pilot.press("escape")
            await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
            assert screen.entry_list.move_to("github/personal")  # never read
            await pilot.pause(0.3)
            assert "last used" not in screen_text(pilot.app)
            await pilot.press("w")
            await wait_until(pilot, lambda: "No program has received" in screen_text(pilot.app))
    run(scenario())
