"""credtui shows a mounted entry with its mount (a real agent, a files mount)."""

from __future__ import annotations

import re

from tests.tui.conftest import make_app, run, running, screen_text, wait_until  # noqa: F401
from tests.tui.test_app import _browse


def test_the_detail_names_the_mount(unlocked_agent, make_app, run, run_credd, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "db_password").write_text("pw")
    run_credd("mount", "add", "run", "--backend", "files", "--dir", str(secrets), check=True)
    with unlocked_agent.client() as c:
        c.set("local/a", value="v")

    async def scenario():
        async with running(make_app(unlocked_agent), size=(100, 30)) as pilot:
            screen = await _browse(pilot)
            assert [e.name for e in screen.entry_list.entries] == ["local/a", "run/db_password"]
            await pilot.press("slash", *"db_pass", "enter")
            assert screen.entry_list.highlighted.name == "run/db_password"
            # the key column is as wide as the longest key (`fingerprint` once the agent
            # sent it), so any run of spaces
            await wait_until(pilot, lambda: re.search(r"\bmount +run\b",
                                                      screen_text(pilot.app)),
                             what="the mount row")
    run(scenario())
