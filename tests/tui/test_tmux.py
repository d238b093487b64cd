"""End to end: the installed `credtui` in a real terminal (tmux), against a real agent.

The passphrase reaches the terminal through a tmux paste buffer fed on stdin,
never through a command line. The server runs without its status line, so the
pane is the whole window (80×24 is 80×24).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.tools import needs
from tests.tui.layout import missing
from tests.tui.tour import (
    SIZES,
    TOUR,
    VALUE,
    AskAccess,
    Back,
    Key,
    Secret,
    Shows,
    StartAgent,
    Text,
    ask_access,
)

CREDTUI = Path(sys.executable).parent / "credtui"

pytestmark = [needs("tmux"), pytest.mark.skipif(not CREDTUI.exists(),
                                                reason="needs an installed credtui")]


def _footer(screen: str) -> str:
    return (screen.splitlines() or [""])[-1]


# Textual's names → tmux's (anything else is sent as it is)
_TMUX_KEYS = {"escape": "Escape", "enter": "Enter", "tab": "Tab", "question_mark": "?",
              "ctrl+l": "C-l", "ctrl+s": "C-s", "space": "Space",
              "down": "Down", "shift+tab": "BTab"}


class Tmux:
    """One private tmux server running one window."""

    def __init__(self, env: dict[str, str], conf: Path) -> None:
        self.name = f"credtui-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one server per test
        self.env = env
        self.conf = conf

    def __call__(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(["tmux", "-f", str(self.conf), "-L", self.name, *args], env=self.env,
                              input=input, capture_output=True, text=True, check=True,
                              timeout=10).stdout

    def start(self, size: tuple[int, int], *command: str) -> None:
        self("new-session", "-d", "-s", "main", "-x", str(size[0]), "-y", str(size[1]), *command)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "main")

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "") -> float:
        start = time.monotonic()
        while True:
            text = self.screen()
            if predicate(text):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")
            time.sleep(0.05)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "main", *keys)

    def paste(self, text: str) -> None:
        self("load-buffer", "-b", "typed", "-", input=text)
        self("paste-buffer", "-b", "typed", "-d", "-p", "-t", "main")

    def press(self, key: str) -> None:
        self.keys(_TMUX_KEYS.get(key, key))


@pytest.fixture
def tmux(credd_env, tmp_path):
    env = dict(credd_env, TERM="xterm-256color")
    for outside in ("TMUX", "DISPLAY", "WAYLAND_DISPLAY"):  # no clipboard but the test's tmux
        env.pop(outside, None)
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g status off\nset -g escape-time 10\n")
    t = Tmux(env, conf)
    yield t
    subprocess.run(["tmux", "-L", t.name, "kill-server"], env=env, capture_output=True)


def test_unlock_filter_reveal_and_outside_lock(browsing, tmux):
    with browsing.client() as c:
        c.lock()
    tmux.start((100, 30), str(CREDTUI))
    tmux.wait_for(lambda s: "credd is locked" in s, what="the unlock screen")

    tmux.paste(TEST_PASSPHRASE)
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "github/work/token" in s and "r Reveal" in _footer(s),
                  what="the list, its keys ready")
    assert TEST_PASSPHRASE not in tmux.screen()

    tmux.keys("/")
    tmux.wait_for(lambda s: "r Reveal" not in _footer(s),    # the search box takes letters now
                  what="the search box focused")
    tmux.keys("-l", "gwt")
    tmux.wait_for(lambda s: "aws/prod/key" not in s, what="the filter")
    tmux.keys("Enter")
    time.sleep(0.3)  # as a person would: Enter moves the focus to the list
    tmux.keys("r")
    tmux.wait_for(lambda s: SENTINEL in s, what="the revealed value")

    browsing.signal(signal.SIGUSR1)
    took = tmux.wait_for(lambda s: "credd is locked" in s, timeout=5, what="the outside lock")
    assert took < 1.5
    assert SENTINEL not in tmux.screen()

    tmux.keys("C-c")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_screen_fits_in_a_real_terminal(make_agent, tmux, size):
    """The tour of tests/tui/tour.py, read back with `capture-pane -p`."""
    agent = make_agent(start=False)
    tmux.start(size, str(CREDTUI))
    asking = []
    try:
        for stop in TOUR:
            for step in stop.steps:
                match step:
                    case AskAccess():
                        asking.append(ask_access(agent.env))
                    case Shows(text):
                        tmux.wait_for(lambda s: text in s, what=text)
                    case Key(name):
                        tmux.press(name)
                    case Text(text):
                        tmux.keys("-l", text)
                    case Secret(text):
                        tmux.paste(text)
                    case StartAgent():
                        agent.start()
                    case Back(shows):
                        tmux.press("escape")
                        tmux.wait_for(lambda s: shows in _footer(s), what="browse again")
                # as a person types: a key sent mid-switch may reach the old screen
                time.sleep(0.15)
            texts = [t.format(socket=agent.socket) for t in stop.texts]
            tmux.wait_for(lambda s: not missing(s, texts), timeout=20,
                          what=f"{stop.name}: {missing(tmux.screen(), texts)}")
            screen = tmux.screen()
            assert "…" not in screen, f"{stop.name}: an ellipsis where the text fits\n{screen}"
            assert len(screen.splitlines()) == size[1]
        assert TEST_PASSPHRASE not in tmux.screen() and VALUE not in tmux.screen()
    finally:
        tmux.keys("C-c")
        for proc in asking:
            proc.kill()
            proc.wait()


def test_copy_inside_tmux_goes_to_a_tmux_buffer_and_is_deleted(browsing, tmux):
    """No X11, no Wayland: the value goes where `prefix ]` pastes it, and only there."""
    tmux.start((100, 30), str(CREDTUI), "--clipboard-seconds", "2")
    tmux.wait_for(lambda s: "aws/prod/key" in s and "unlocked" in s, what="the list")
    time.sleep(0.3)
    tmux.keys("c")                                     # the first entry: aws/prod/key
    tmux.wait_for(lambda s: "tmux paste buffer" in s, what="where the copy went")
    assert tmux("show-buffer") == "AKIAEXAMPLE"
    assert not missing(tmux.screen(), ["cleared in 2s if it still holds it"])
    assert "AKIAEXAMPLE" not in tmux.screen()
    deadline = time.monotonic() + 10
    while tmux("list-buffers") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tmux("list-buffers") == "", "the copied value is still in a tmux buffer"
    tmux.keys("C-c")
