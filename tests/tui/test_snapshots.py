"""Snapshots of every screen at 80×24 and 200×60, against a real agent.

Deterministic by construction: the app is given the socket as a path
relative to the test's own runtime directory (a short one from pytest's
tmp_path_factory: two runs on a host never share it), so the status bar and the
no-agent screen always draw `credd/agent.sock`; entries whose states do not
depend on the clock (ages read "today", the expiry lies in 2001); no earlier
versions and an empty trash (their lists show dates); no cursor blink; no
secret value on screen. Update with `pytest tests/tui/test_snapshots.py
--snapshot-update`, and look at every SVG that changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from tests.conftest import FAST_KDF, local_zone
from tests.tui.conftest import screen_is, screen_text, seed
from tests.tui.layout import missing
from tests.tui.tour import SIZES

SOCKET = "credd/agent.sock"
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


@pytest.fixture
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest's own tmp path for the runtime dir (private to the run, short)."""
    return tmp_path_factory.mktemp("snap")


@pytest.fixture(autouse=True)
def relative_socket(isolated_env, monkeypatch) -> None:
    """Run from the runtime dir, so `credd/agent.sock` is this test's agent socket."""
    monkeypatch.chdir(Path(isolated_env["XDG_RUNTIME_DIR"]))


def _app():
    from credtui.app import CredApp
    return CredApp(SOCKET, init_kdf=FAST_KDF, clipboard="osc52", status_every=30.0)


@pytest.fixture(autouse=True)
def utc():
    """Dates print in local time: pin the zone so the expiry in 2001 reads the same anywhere."""
    with local_zone("UTC"):
        yield


@pytest.fixture(autouse=True)
def one_fingerprint(monkeypatch):
    """Every vault has its own fingerprint key: draw one fixed fingerprint instead."""
    monkeypatch.setattr("credtui.widgets.entry_detail.fingerprint", lambda shown: "fp:0000-0000")


@pytest.fixture
def snap_agent(unlocked_agent):
    seed(unlocked_agent, ENTRIES)
    return unlocked_agent


def _browse_settled(app) -> bool:
    """Browse's list has the agent's due report, and its detail pane what the agent knows
    of the entry shown (both come after the list)."""
    browse = next((s for s in app.screen_stack if type(s).__name__ == "BrowseScreen"), None)
    if browse is None:
        return True
    detail = browse.detail
    return browse.entry_list.has_report and (detail.meta is None or detail.inspected)


async def _settle(pilot, screen: str, text: str) -> None:
    """Wait until `screen` shows `text` (wrapped or not) and Browse has what the agent sends
    after the list, then stop the cursors blinking."""
    for _ in range(300):
        if screen_is(pilot.app, screen) and not missing(screen_text(pilot.app), [text]) \
                and _browse_settled(pilot.app):
            break
        await pilot.pause(0.05)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.3)


def _then(*keys: str, screen: str = "BrowseScreen", text: str, cursor: str | None = None):
    """From Browse (entries loaded): put the cursor on `cursor`, press `keys`, settle."""
    async def run_before(pilot) -> None:
        await _settle(pilot, "BrowseScreen", "github/work/token")
        if cursor:
            pilot.app.screen.entry_list.move_to(cursor)
        await pilot.press(*keys)
        await _settle(pilot, screen, text)
    return run_before


def _at(screen: str, text: str):
    async def run_before(pilot) -> None:
        await _settle(pilot, screen, text)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestSnapshots:
    def test_no_agent(self, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_at("NoAgentScreen", "No credd agent is running"))

    def test_create_vault(self, agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_at("InitScreen", "Create your credd vault"))

    def test_unlock(self, snap_agent, snap_compare, size):
        with snap_agent.client() as c:
            c.lock()
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_at("UnlockScreen", "credd is locked"))

    def test_empty_vault(self, unlocked_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_at("BrowseScreen", "No entries yet."))

    def test_browse(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_at("BrowseScreen", "github/work/token"))

    def test_detail(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_then(cursor="db/main", text="EXPIRED"))

    def test_new_entry(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size,
                            run_before=_then("n", screen="EditScreen", text="New entry"))

    def test_edit(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size, run_before=_then(
            "e", screen="EditScreen", text="Edit aws/prod/key", cursor="aws/prod/key"))

    def test_history(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size, run_before=_then(
            "h", screen="HistoryScreen", text="No earlier versions", cursor="aws/prod/key"))

    def test_trash(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size, run_before=_then(
            "t", screen="TrashScreen", text="The trash is empty"))

    def test_help(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size, run_before=_then(
            "question_mark", screen="HelpScreen", text="credtui keys"))

    def test_confirm(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size, run_before=_then(
            "d", screen="ConfirmScreen", text="Move db/main to the trash?", cursor="db/main"))

    def test_pick_field(self, snap_agent, snap_compare, size):
        assert snap_compare(_app(), terminal_size=size, run_before=_then(
            "C", screen="PickFieldScreen", text="Copy which field of aws/prod/key?",
            cursor="aws/prod/key"))
