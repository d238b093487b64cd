"""The search box: filters as you type; Enter jumps to the list, Escape clears."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class SearchBar(Input):
    """An Input that reports `Submitted` (Enter) and `Cleared` (Escape) as its own messages."""

    BINDINGS = [Binding("escape", "clear_search", "Clear", show=False)]

    class Cleared(Message):
        """Escape: the query was emptied and focus should go back to the list."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(placeholder="/ search name, service, tags", **kwargs)

    def action_clear_search(self) -> None:
        self.value = ""
        self.post_message(self.Cleared())
