"""Choose which reason of the due report to list entries for (`U`)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from credd.rules import REASONS
from credtui.screens.base import CredModal, KeyFooter


class PickReasonScreen(CredModal[str | None]):
    """Returns a reason, "" for every entry again, or None (cancelled)."""

    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, counts: dict[str, int], current: str | None) -> None:
        super().__init__()
        self.counts, self.current = counts, current

    def compose(self) -> ComposeResult:
        options = [Option(f"{about}  ({self.counts.get(reason, 0)})", id=reason)
                   for reason, about in REASONS.items()]
        if self.current is not None:
            options.append(Option("every entry again", id=""))
        with Vertical(classes="dialog modal-box list-box"):
            yield Static("Show only the entries that are:", classes="title")
            yield OptionList(*options)
        yield KeyFooter()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
