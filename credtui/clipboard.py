"""Copy to the terminal's clipboard with OSC 52, and clear it again later.

No Textual here: the app hands in a `write` function that sends a control
sequence to the terminal, and a `schedule(delay, callback)` to run the clear.
OSC 52 cannot read the clipboard back in most terminals, so "did someone copy
something else meanwhile?" is only knowable for our own copies: a newer copy
cancels the pending clear of an older one, and when a local clipboard reader
(wl-paste, xclip, pbpaste) is present and we are not over SSH, a clipboard
that no longer holds our value is left alone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

CLEAR = "\x1b]52;c;\a"  # an empty payload clears the selection in xterm-style terminals


def osc52(text: str) -> str:
    """The control sequence that sets the clipboard to `text`."""
    return "\x1b]52;c;" + base64.b64encode(text.encode()).decode() + "\a"


def _local_reader() -> list[str] | None:
    """A command that prints the local clipboard, when that clipboard is ours to read."""
    if os.environ.get("SSH_CONNECTION"):
        return None
    if sys.platform == "darwin":
        return ["pbpaste"] if shutil.which("pbpaste") else None
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-paste"):
        return ["wl-paste", "--no-newline"]
    if os.environ.get("DISPLAY") and shutil.which("xclip"):
        return ["xclip", "-o", "-selection", "clipboard"]
    return None


def _digest(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).digest()


class Clipboard:
    """Copies values and clears each one `clear_after` seconds later, unless replaced."""

    def __init__(self, write: Callable[[str], None],
                 schedule: Callable[[float, Callable[[], None]], object],
                 clear_after: float = 45.0,
                 reader: list[str] | None | bool = True) -> None:
        self._write = write
        self._schedule = schedule
        self.clear_after = clear_after
        self._reader = _local_reader() if reader is True else (reader or None)
        self._generation = 0
        self._digest: bytes | None = None  # a hash of what we copied, never the value

    def copy(self, text: str) -> None:
        self._generation += 1
        generation = self._generation
        self._digest = _digest(text)
        self._write(osc52(text))
        self._schedule(self.clear_after, lambda: self._clear(generation))

    @property
    def pending(self) -> bool:
        """True while a copied value is waiting to be cleared."""
        return self._digest is not None

    def clear_now(self) -> None:
        """Clear at once (on lock and on quit), if the clipboard still holds our value."""
        self._clear(self._generation)

    def _clear(self, generation: int) -> None:
        if generation != self._generation or self._digest is None:
            return  # a newer copy owns the clipboard, or it was cleared already
        digest, self._digest = self._digest, None
        if self._reader is not None and self._read_digest() not in (None, digest):
            return  # someone copied something else meanwhile: leave it
        self._write(CLEAR)

    def _read_digest(self) -> bytes | None:
        try:
            out = subprocess.run(self._reader, capture_output=True, timeout=1.0, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return _digest(out.stdout)
