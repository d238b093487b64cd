"""Copy a value to the best clipboard there is; clear it later only if it still holds ours.

Where a copy goes, first that works:

    macOS                       pbcopy / pbpaste
    Wayland ($WAYLAND_DISPLAY)  wl-copy / wl-paste
    X11 ($DISPLAY)              xclip or xsel
    tmux ($TMUX)                a tmux paste buffer: `prefix ]` pastes it
    anywhere else               OSC 52: a control sequence asking the terminal to set its clipboard

A tool gets the value on stdin, never in its argv (any local user can read a
process's argv in /proc). A tool that can read the clipboard back lets the
clear check, by SHA-256, that the clipboard still holds our value, so what
someone copied since is left alone. OSC 52 can neither be read back nor known
to have arrived (tmux drops it unless `set-clipboard on`; many terminals
ignore it), and not every terminal honours the empty OSC 52 sent to clear it:
`Copied.message` says so rather than promise a clear.

No Textual here: the app hands in `write` (bytes to its terminal) and
`schedule(delay, callback)`. The tools run synchronously with short
timeouts: a copy costs a few milliseconds of subprocess, once per keypress.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

CLEAR = "\x1b]52;c;\a"  # an empty payload clears the selection in xterm-style terminals
COPY_TIMEOUT = 2.0
READ_TIMEOUT = 1.0
SETTLE = (0.0, 0.02, 0.05, 0.1, 0.2)  # pauses before each read-back of a fresh copy


class ClipboardError(Exception):
    """A clipboard tool failed; the message names the tool, never the value."""


def osc52(text: str) -> str:
    """The control sequence that sets the clipboard to `text`."""
    return "\x1b]52;c;" + base64.b64encode(text.encode()).decode() + "\a"


def digest(data: str | bytes) -> bytes:
    """What we remember of a copied value: its hash, never the value."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).digest()


def _run(argv: Sequence[str], stdin: bytes = b"", *, read: bool = False) -> bytes:
    """Run a clipboard tool; its output only when `read` (copiers fork and keep pipes open)."""
    out = subprocess.PIPE if read else subprocess.DEVNULL
    try:
        done = subprocess.run(argv, input=stdin, stdout=out, stderr=subprocess.DEVNULL,
                              timeout=READ_TIMEOUT if read else COPY_TIMEOUT, check=True)
    except subprocess.CalledProcessError as exc:
        raise ClipboardError(f"{argv[0]} failed with exit status {exc.returncode}") from None
    except subprocess.TimeoutExpired:
        raise ClipboardError(f"{argv[0]} did not answer") from None
    except OSError as exc:
        raise ClipboardError(f"{argv[0]} could not run ({exc.strerror})") from None
    return done.stdout or b""


class Slot(Protocol):
    """Where one copy sits: it can say whether it still holds a value, and be cleared."""

    def holds(self, value_digest: bytes) -> bool | None:
        """Whether it still holds the value hashed; None when that cannot be known."""

    def clear(self) -> None: ...


class Backend(Protocol):
    """One place a copy can go."""

    where: str       # "the X11 clipboard (xclip)", for the message
    readable: bool   # the clear can check what the clipboard holds

    def copy(self, text: str) -> Slot: ...


@dataclass
class Tool:
    """A clipboard command pair: `copy_argv` reads the value on stdin, `paste_argv` prints it.

    A copy counts once it reads back: the copiers fork a process that takes
    the selection a moment after they exit (xsel, wl-copy), and a display
    that refuses them must send us on to the next backend, not claim success.
    A system clipboard has one slot: the next copy replaces this one.
    """

    where: str
    copy_argv: list[str]
    paste_argv: list[str]
    clear_argv: list[str] | None = None  # None: copy an empty value
    readable: bool = True

    def copy(self, text: str) -> Tool:
        _run(self.copy_argv, text.encode())
        mine = digest(text)
        for pause in SETTLE:
            time.sleep(pause)
            if self.holds(mine):
                return self
        raise ClipboardError(f"{self.copy_argv[0]} did not keep the value")

    def holds(self, value_digest: bytes) -> bool | None:
        try:
            return digest(_run(self.paste_argv, read=True)) == value_digest
        except ClipboardError:
            return None

    def clear(self) -> None:
        _run(self.clear_argv or self.copy_argv)


@dataclass
class TmuxSlot:
    """One tmux paste buffer, by name."""

    tmux: list[str]
    name: str

    def holds(self, value_digest: bytes) -> bool | None:
        try:
            held = _run([*self.tmux, "show-buffer", "-b", self.name], read=True)
            return digest(held) == value_digest
        except ClipboardError:
            return False  # deleted meanwhile

    def clear(self) -> None:
        _run([*self.tmux, "delete-buffer", "-b", self.name])


class TmuxBuffer:
    """A tmux paste buffer, in the server of the session we run in ($TMUX).

    An automatic buffer, so `prefix ]` pastes it. tmux does not say which
    name it gave the buffer: the newest buffers are read back to find ours,
    so a clear deletes exactly that one, and only while it holds our value.
    tmux keeps every buffer until deleted, so each copy is a slot of its own
    and a newer copy does not replace an older one: the Clipboard clears it.
    """

    where = "a tmux paste buffer (prefix ] pastes it)"
    readable = True

    def __init__(self, tmux: Sequence[str] = ("tmux",)) -> None:
        self.tmux = list(tmux)

    def copy(self, text: str) -> TmuxSlot:
        _run([*self.tmux, "load-buffer", "-"], text.encode())
        listed = _run([*self.tmux, "list-buffers", "-F", "#{buffer_name}"], read=True)
        names = listed.decode().split()
        mine = digest(text)
        for name in names[:8]:  # newest first
            slot = TmuxSlot(self.tmux, name)
            if slot.holds(mine):
                return slot
        raise ClipboardError("tmux did not keep the buffer")


class Osc52:
    """The terminal's clipboard through a control sequence: no read back, no receipt."""

    where = "the terminal's clipboard (OSC 52)"
    readable = False

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def copy(self, text: str) -> Osc52:
        self.write(osc52(text))
        return self

    def holds(self, value_digest: bytes) -> bool | None:
        return None

    def clear(self) -> None:
        self.write(CLEAR)


PBCOPY = Tool("the macOS clipboard (pbcopy)", ["pbcopy"], ["pbpaste"])
WL_COPY = Tool("the Wayland clipboard (wl-copy)", ["wl-copy"], ["wl-paste", "--no-newline"],
               ["wl-copy", "--clear"])
XCLIP = Tool("the X11 clipboard (xclip)", ["xclip", "-selection", "clipboard", "-in"],
             ["xclip", "-selection", "clipboard", "-out"])
XSEL = Tool("the X11 clipboard (xsel)", ["xsel", "--clipboard", "--input"],
            ["xsel", "--clipboard", "--output"], ["xsel", "--clipboard", "--delete"])


def detect(write: Callable[[str], None], environ: dict[str, str] | None = None) -> list[Backend]:
    """The backends this session offers, best first; OSC 52 is always last."""
    env = os.environ if environ is None else environ
    offered = [(sys.platform == "darwin", PBCOPY), (bool(env.get("WAYLAND_DISPLAY")), WL_COPY),
               (bool(env.get("DISPLAY")), XCLIP), (bool(env.get("DISPLAY")), XSEL)]
    found: list[Backend] = [tool for wanted, tool in offered
                            if wanted and shutil.which(tool.copy_argv[0])]
    if env.get("TMUX") and shutil.which("tmux"):
        found.append(TmuxBuffer())
    found.append(Osc52(write))
    return found


@dataclass(frozen=True)
class Copied:
    """Where a copy went and what its clear can promise: the truth for the user."""

    where: str
    readable: bool
    clear_after: float
    failed: tuple[str, ...] = ()  # better clipboards that did not work this time

    def message(self, what: str) -> str:
        seconds = f"{self.clear_after:g}s"
        if self.readable:
            text = f"Copied {what} to {self.where}; cleared in {seconds} if it still holds it."
        else:
            text = (f"Sent {what} to {self.where}. Whether it arrived cannot be checked, and "
                    f"the clear sent in {seconds} may not work: clear it yourself.")
        return text + "".join(f" ({f})" for f in self.failed)


class Clipboard:
    """Copies values and clears each one `clear_after` seconds later, unless replaced."""

    def __init__(self, backends: Sequence[Backend],
                 schedule: Callable[[float, Callable[[], None]], object],
                 clear_after: float = 45.0) -> None:
        self.backends = list(backends)
        self._schedule = schedule
        self.clear_after = clear_after
        self._generation = 0
        self._pending: tuple[Slot, bytes] | None = None  # where, and a hash of what

    def copy(self, text: str) -> Copied:
        """Copy with the first backend that works; raise ClipboardError if none does."""
        failed: list[str] = []
        for backend in self.backends:
            try:
                slot = backend.copy(text)
            except ClipboardError as exc:
                failed.append(str(exc))
                continue
            if self._pending is not None and self._pending[0] is not slot:
                self.clear_now()  # this copy did not replace the older one: clear that now
            self._generation += 1
            generation = self._generation
            self._pending = (slot, digest(text))
            self._schedule(self.clear_after, functools.partial(self._clear, generation))
            return Copied(backend.where, backend.readable, self.clear_after, tuple(failed))
        raise ClipboardError("; ".join(failed) or "no clipboard")

    @property
    def pending(self) -> bool:
        """True while a copied value is waiting to be cleared."""
        return self._pending is not None

    def clear_now(self) -> None:
        """Clear at once (on lock and on quit), if the clipboard still holds our value."""
        self._clear(self._generation)

    def _clear(self, generation: int) -> None:
        if generation != self._generation or self._pending is None:
            return  # a newer copy owns the clipboard, or it was cleared already
        (slot, value_digest), self._pending = self._pending, None
        if slot.holds(value_digest) is False:
            return  # someone copied something else meanwhile: leave it
        try:
            slot.clear()
        except ClipboardError:
            pass  # the tool went away (display closed): nothing left to clear with
