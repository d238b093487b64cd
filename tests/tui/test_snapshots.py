"""Snapshots of the main screens at 80×24 and 120×36, against a real agent.

Deterministic by construction: a fixed socket path (shown in the status bar),
entries whose states do not depend on the clock (ages read "today", the
expiry lies in 2001), no cursor blink, and no secret value on screen.
Update with `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import os
import shutil

import pytest
from textual.widgets import Input

from tests.conftest import local_zone
from tests.tui.conftest import screen_is, seed

SNAP_DIR = f"/tmp/credtui-snap-{os.getuid()}"
SIZES = [(80, 24), (120, 36)]
ENTRIES = [
    dict(name="aws/prod/key", kind="api_key", service="aws", tags=["prod"], value="AKIAEXAMPLE",
         fields=[{"name": "region", "value": "eu-west-1", "secret": False},
                 {"name": "secret_key", "value": "wJalrEXAMPLE", "secret": True}]),
    dict(name="db/main", kind="connection_string", service="postgres", value="postgres://db",
         expires=1_000_000_000.0),
    dict(name="github/personal", kind="password", service="github.com", value="pw"),
    dict(name="github/work/token", kind="access_token", service="github.com", tags=["work"],
         value="ghp_example"),
]


@pytest.fixture(autouse=True)
def fixed_socket(isolated_env, monkeypatch):
    """The status bar shows the socket path, so it must not be a random temp dir."""
    shutil.rmtree(SNAP_DIR, ignore_errors=True)
    isolated_env["CREDD_SOCK"] = f"{SNAP_DIR}/agent.sock"
    monkeypatch.setenv("CREDD_SOCK", isolated_env["CREDD_SOCK"])
    yield
    shutil.rmtree(SNAP_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def utc():
    """Dates print in local time: pin the zone so the expiry in 2001 reads the same anywhere."""
    with local_zone("UTC"):
        yield


@pytest.fixture
def snap_agent(unlocked_agent):
    seed(unlocked_agent, ENTRIES)
    return unlocked_agent


async def _settle(pilot, screen_name: str) -> None:
    for _ in range(200):
        if screen_is(pilot.app, screen_name) and (
                screen_name != "BrowseScreen" or pilot.app.screen.entry_list.entries):
            break
        await pilot.pause(0.05)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.2)


def _browse_then(*keys: str, screen: str = "BrowseScreen", cursor: str | None = None):
    async def run_before(pilot) -> None:
        await _settle(pilot, "BrowseScreen")
        if cursor:
            pilot.app.screen.entry_list.move_to(cursor)
        if keys:
            await pilot.press(*keys)
            await _settle(pilot, screen)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestSnapshots:
    def test_unlock(self, snap_agent, make_app, snap_compare, size):
        with snap_agent.client() as c:
            c.lock()

        async def run_before(pilot) -> None:
            await _settle(pilot, "UnlockScreen")
        assert snap_compare(make_app(snap_agent), terminal_size=size, run_before=run_before)

    def test_browse(self, snap_agent, make_app, snap_compare, size):
        assert snap_compare(make_app(snap_agent), terminal_size=size, run_before=_browse_then())

    def test_detail(self, snap_agent, make_app, snap_compare, size):
        assert snap_compare(make_app(snap_agent), terminal_size=size,
                            run_before=_browse_then(cursor="db/main"))

    def test_edit(self, snap_agent, make_app, snap_compare, size):
        assert snap_compare(make_app(snap_agent), terminal_size=size,
                            run_before=_browse_then("e", screen="EditScreen", cursor="aws/prod/key"))

    def test_help(self, snap_agent, make_app, snap_compare, size):
        assert snap_compare(make_app(snap_agent), terminal_size=size,
                            run_before=_browse_then("question_mark", screen="HelpScreen"))
