"""Every screen lays out at 80×24 and 200×60 with nothing cut, driven with Pilot.

The same tour runs in a real terminal in test_tmux.py; the helpers that read
the screen back are checked here against screens drawn by hand.
"""

from __future__ import annotations

import pytest

from credtui.widgets.status_bar import entries_text, fit_path
from tests.tui.conftest import running, screen_text, wait_until
from tests.tui.layout import flows, missing
from tests.tui.tour import (
    SIZES,
    TOUR,
    AskAccess,
    Back,
    Key,
    Secret,
    Shows,
    StartAgent,
    Text,
    ask_access,
)

_CHARS = {" ": "space", "/": "slash", "?": "question_mark", "-": "minus", ".": "full_stop",
          "*": "asterisk"}


async def _do(pilot, agent, step, asking) -> None:
    match step:
        case AskAccess():
            asking.append(ask_access(agent.env))
        case Shows(text):
            await wait_until(pilot, lambda: text in screen_text(pilot.app), what=text)
        case Key(name):
            await pilot.press(name)
        case Text(text) | Secret(text):
            await pilot.press(*[_CHARS.get(ch, ch) for ch in text])
        case StartAgent():
            agent.start()
        case Back(shows):
            await pilot.press("escape")
            await wait_until(pilot,
                             lambda: shows in (screen_text(pilot.app).splitlines() or [""])[-1],
                             what="browse again")
    await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_screen_fits(make_agent, make_app, run, size):
    agent = make_agent(start=False)

    asking: list = []

    async def scenario():
        app = make_app(agent)
        async with running(app, size=size) as pilot:
            for stop in TOUR:
                for step in stop.steps:
                    await _do(pilot, agent, step, asking)
                texts = [t.format(socket=agent.socket) for t in stop.texts]
                await wait_until(pilot, lambda: not missing(screen_text(app), texts), timeout=15,
                                 what=f"{stop.name}: {missing(screen_text(app), texts)}")
                assert "…" not in screen_text(app), f"{stop.name}: an ellipsis\n{screen_text(app)}"
    try:
        run(scenario())
    finally:
        for proc in asking:
            proc.kill()
            proc.wait()


class TestReadingTheScreen:
    """The reader itself: a clipped text must be reported, a wrapped one must not."""

    BOX = ("        ╭──────────────────────────────╮        \n"
           "        │  Locked after being idle.    │  xx    \n"
           "        │  Enter your passphrase to    │  yy    \n"
           "        │  unlock the vault.           │        \n"
           "        ╰──────────────────────────────╯        \n")

    def test_wrapped_in_a_box_reads_whole(self):
        text = "Locked after being idle. Enter your passphrase to unlock the vault."
        assert not missing(self.BOX, [text])
        assert text in flows(self.BOX)

    def test_clipped_or_elided_is_missing(self):
        clipped = self.BOX.replace("unlock the vault.", "unlock the vau   ")
        assert missing(clipped, ["Enter your passphrase to unlock the vault."])
        elided = self.BOX.replace("unlock the vault.", "unlock the vau…  ")
        assert missing(elided, ["unlock the vault."])

    def test_columns_beside_a_box_do_not_mix_in(self):
        assert missing(self.BOX, ["idle. xx"]) == ["idle. xx"]


class TestStatusBarText:
    def test_counts(self):
        assert entries_text(None, 1) == "1 entry"
        assert entries_text(1, 1) == "1 entry"
        assert entries_text(0, 1) == "0/1 entry"
        assert entries_text(3, 12) == "3/12 entries"

    def test_socket_path_gives_way(self):
        path = "/run/user/1000/credd/agent.sock"
        assert fit_path(path, 40) == path
        assert fit_path(path, 20) == "…" + path[-19:] and len(fit_path(path, 20)) == 20
        assert fit_path(path, 5) == ""


class TestListColumns:
    def test_whole_where_there_is_room_squeezed_where_not(self, browsing, make_app, run):
        """connection_string and access_token fit at 200 columns; at 80 the names keep theirs."""
        async def scenario():
            for size, elided in (((200, 60), False), ((80, 24), True)):
                async with running(make_app(browsing), size=size) as pilot:
                    await wait_until(pilot, lambda: "github/work/token" in screen_text(pilot.app))
                    text = screen_text(pilot.app)
                    assert ("connection_string" not in text) is elided, text
                    assert ("…" in text) is elided, text
                    assert "github/work/token" in text and "aws/prod/key" in text
        run(scenario())
