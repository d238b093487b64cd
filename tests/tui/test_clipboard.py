"""credtui.clipboard against real clipboards: tmux's buffers, X11 (Xvfb + xclip/xsel), OSC 52.

Time is a Scheduler the test runs by hand; everything else is the real
thing: a private tmux server, a private X server, the real tools.
"""

from __future__ import annotations

import base64
import os
import select
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from credtui.clipboard import (
    CLEAR,
    XCLIP,
    XSEL,
    Clipboard,
    ClipboardError,
    Osc52,
    TmuxBuffer,
    Tool,
    detect,
    osc52,
)
from tests.tools import need

VALUE = "s3cret-välue"


class Scheduler:
    """Collects scheduled callbacks so a test decides when time passes."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> None:
        self.pending.append((delay, callback))

    def run_all(self) -> None:
        pending, self.pending = self.pending, []
        for _, callback in pending:
            callback()


def _osc_clipboard() -> tuple[Clipboard, list[str], Scheduler]:
    out: list[str] = []
    later = Scheduler()
    return Clipboard([Osc52(out.append)], later, clear_after=45), out, later


class TestOsc52:
    def test_is_base64_of_utf8(self):
        seq = osc52("pässword")
        assert seq.startswith("\x1b]52;c;") and seq.endswith("\a")
        assert base64.b64decode(seq[7:-1]).decode() == "pässword"

    def test_copy_then_clear_after_the_delay(self):
        clip, out, later = _osc_clipboard()
        clip.copy(VALUE)
        assert out == [osc52(VALUE)] and later.pending[0][0] == 45 and clip.pending
        later.run_all()
        assert out[-1] == CLEAR and not clip.pending

    def test_says_it_cannot_check_or_promise_the_clear(self):
        clip, _, _ = _osc_clipboard()
        copied = clip.copy(VALUE)
        message = copied.message("github/token")
        assert not copied.readable
        assert "OSC 52" in message and "cannot be checked" in message
        assert "may not work" in message and "clear it yourself" in message
        assert "if it still holds it" not in message          # no promise it cannot keep

    def test_newer_copy_cancels_the_older_clear(self):
        clip, out, later = _osc_clipboard()
        clip.copy("one")
        clip.copy("two")
        later.run_all()
        assert out == [osc52("one"), osc52("two"), CLEAR]


class TestFallback:
    def test_a_failing_tool_falls_back_and_is_named(self):
        out: list[str] = []
        broken = Tool("a broken clipboard", ["false"], ["false"])
        copied = Clipboard([broken, Osc52(out.append)], Scheduler()).copy(VALUE)
        assert out == [osc52(VALUE)]
        assert "OSC 52" in copied.where and "false failed with exit status 1" in copied.message("x")

    def test_nothing_works(self):
        with pytest.raises(ClipboardError, match="false failed"):
            Clipboard([Tool("broken", ["false"], ["false"])], Scheduler()).copy(VALUE)

    def test_osc52_is_always_last(self):
        assert isinstance(detect(print, environ={})[-1], Osc52)


# ---------------------------------------------------------------- tmux, for real

@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """argv prefix for a private tmux server with one detached session."""
    need("tmux", "the tmux-buffer clipboard")
    # a dying server keeps its name a while
    name = f"credtui-clip-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    subprocess.run(["tmux", "-L", name, "new-session", "-d", "-s", "main"], env=env, check=True,
                   timeout=10)
    socket = subprocess.run(["tmux", "-L", name, "display-message", "-p", "#{socket_path}"],
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    yield ["tmux", "-S", socket]
    subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)


def _tmux(tmux: list[str], *args: str, input: str | None = None) -> str:
    return subprocess.run([*tmux, *args], input=input, capture_output=True, text=True,
                          check=True, timeout=10).stdout


def _buffers(tmux: list[str]) -> list[str]:
    return _tmux(tmux, "list-buffers", "-F", "#{buffer_name}").split()


class TestTmuxBuffer:
    def test_copy_is_what_prefix_bracket_pastes_then_deleted(self, tmux):
        _tmux(tmux, "load-buffer", "-", input="what the user had")
        later = Scheduler()
        copied = Clipboard([TmuxBuffer(tmux)], later).copy(VALUE)
        assert _tmux(tmux, "show-buffer") == VALUE         # the newest automatic buffer
        assert copied.readable and "tmux paste buffer" in copied.message("x")
        assert "if it still holds it" in copied.message("x")
        later.run_all()
        assert _tmux(tmux, "show-buffer") == "what the user had"
        assert len(_buffers(tmux)) == 1

    def test_a_buffer_changed_meanwhile_is_left_alone(self, tmux):
        later = Scheduler()
        Clipboard([TmuxBuffer(tmux)], later).copy(VALUE)
        name = _buffers(tmux)[0]
        _tmux(tmux, "set-buffer", "-b", name, "the user's own text")
        later.run_all()
        assert _tmux(tmux, "show-buffer", "-b", name) == "the user's own text"

    def test_a_newer_copy_deletes_the_older_buffer_at_once(self, tmux):
        """tmux keeps every buffer: a cancelled clear must not leave the older secret there."""
        later = Scheduler()
        clip = Clipboard([TmuxBuffer(tmux)], later)
        clip.copy("first-secret")
        clip.copy("second-secret")
        assert [_tmux(tmux, "show-buffer", "-b", n) for n in _buffers(tmux)] == ["second-secret"]
        later.run_all()
        assert _buffers(tmux) == []

    def test_detected_inside_tmux_after_any_desktop_clipboard(self):
        found = detect(print, environ={"TMUX": "/tmp/x,1,0"})
        assert [type(b) for b in found] == [TmuxBuffer, Osc52]
        if shutil.which("xclip"):
            assert detect(print, environ={"TMUX": "/tmp/x,1,0", "DISPLAY": ":9"})[0] is XCLIP


# ---------------------------------------------------------------- X11, for real

@pytest.fixture
def x_display(monkeypatch) -> Iterator[str]:
    """A private Xvfb; DISPLAY points at it."""
    need("Xvfb", "a private X server for the X11 clipboard")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp"],
                            pass_fds=[write], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 10)
        assert ready, "Xvfb did not start"
        display = ":" + os.read(read, 16).decode().strip()
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        yield display
    finally:
        os.close(read)
        proc.terminate()
        proc.wait(10)


def _x_tool(name: str) -> Tool:
    need(name, "the X11 clipboard")
    need("xclip", "reading the X11 clipboard back")
    return {"xclip": XCLIP, "xsel": XSEL}[name]


def _x_read() -> str:
    return subprocess.run(["xclip", "-selection", "clipboard", "-out"], capture_output=True,
                          text=True, timeout=5).stdout


def _x_write(text: str) -> None:
    subprocess.run(["xclip", "-selection", "clipboard", "-in"], input=text, text=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5, check=True)


@pytest.mark.parametrize("name", ["xclip", "xsel"])
class TestX11:
    def test_copy_reads_back_then_clears(self, x_display, name):
        later = Scheduler()
        copied = Clipboard([_x_tool(name)], later).copy(VALUE)
        assert _x_read() == VALUE
        assert copied.readable and "X11 clipboard" in copied.message("x")
        later.run_all()
        assert _x_read() == ""

    def test_clipboard_changed_meanwhile_is_left_alone(self, x_display, name):
        later = Scheduler()
        Clipboard([_x_tool(name)], later).copy(VALUE)
        _x_write("copied from a browser")
        later.run_all()
        assert _x_read() == "copied from a browser"
