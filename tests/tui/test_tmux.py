"""End to end: the installed `credtui` in a real terminal (tmux), against a real agent.

The passphrase reaches the terminal through a tmux paste buffer fed on stdin,
never through a command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.tools import needs

CREDTUI = Path(sys.executable).parent / "credtui"

pytestmark = [needs("tmux"), pytest.mark.skipif(not CREDTUI.exists(),
                                                reason="needs an installed credtui")]


class Tmux:
    """One private tmux server running one window."""

    def __init__(self, env: dict[str, str]) -> None:
        self.name = f"credtui-e2e-{os.getpid()}"
        self.env = env

    def __call__(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], env=self.env, input=input,
                              capture_output=True, text=True, check=True, timeout=10).stdout

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


@pytest.fixture
def tmux(credd_env):
    env = dict(credd_env, TERM="xterm-256color")
    env.pop("TMUX", None)
    t = Tmux(env)
    yield t
    subprocess.run(["tmux", "-L", t.name, "kill-server"], env=env, capture_output=True)


def test_unlock_filter_reveal_and_outside_lock(browsing, tmux):
    with browsing.client() as c:
        c.lock()
    tmux("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", str(CREDTUI))
    tmux.wait_for(lambda s: "credd is locked" in s, what="the unlock screen")

    tmux.paste(TEST_PASSPHRASE)
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "github/work/token" in s and "unlocked" in s, what="the list")
    assert TEST_PASSPHRASE not in tmux.screen()
    time.sleep(0.3)  # keys sent while the screens switch may go to the old one

    tmux.keys("/")
    tmux.wait_for(lambda s: "search name" in s, what="the search box")  # still shows placeholder
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
