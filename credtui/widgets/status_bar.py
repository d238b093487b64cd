"""One line at the bottom: lock state, time left before the idle lock, entries, socket.

Each field has one owner: the app paints the agent's state, the idle
countdown and the socket; the browse screen paints the counts from its list,
which follows every change as it happens (the agent's own count comes with
the status poll and would be stale between polls).
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from credtui.format import countdown

ELLIPSIS = "…"


def entries_text(shown: int | None, total: int) -> str:
    """'1 entry', '12 entries', or '3/12 entries' while a filter hides some."""
    noun = "entry" if total == 1 else "entries"
    return f"{shown}/{total} {noun}" if shown is not None and shown != total else f"{total} {noun}"


def fit_path(path: str, room: int) -> str:
    """`path` whole if it fits in `room` cells, else its tail after an ellipsis, else nothing."""
    if len(path) <= room:
        return path
    return ELLIPSIS + path[-(room - 1):] if room >= 12 else ""


class StatusBar(Static):
    """Painted from plain fields; the socket path gives way first when the line is short."""

    state = reactive("connecting")
    idle_left: reactive[float | None] = reactive(None)
    entries: reactive[int | None] = reactive(None)
    shown: reactive[int | None] = reactive(None)
    socket = reactive("")

    def render(self) -> Text:
        text = Text()
        mark = {"unlocked": "● unlocked", "locked": "○ locked"}.get(self.state, self.state)
        text.append(mark, style="bold")
        if self.state == "unlocked" and self.idle_left is not None:
            text.append(f" · locks in {countdown(self.idle_left)}")
        if self.entries is not None:
            text.append(f" · {entries_text(self.shown, self.entries)}")
        socket = fit_path(self.socket, self.content_size.width - len(text) - 3)
        if socket:
            text.append(f" · {socket}", style="dim")
        return text
