"""One line at the bottom: lock state, time left before the idle lock, entries, socket."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from credtui.format import countdown


class StatusBar(Static):
    """Painted from plain fields the app updates; counts the idle time down locally."""

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
            shown = f"{self.shown}/" if self.shown is not None and self.shown != self.entries else ""
            text.append(f" · {shown}{self.entries} entries")
        text.append(f" · {self.socket}", style="dim")
        return text
