"""Choose which field of an entry to copy (`C`)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from credd.protocol import EntryMeta
from credtui.screens.base import CredModal, KeyFooter


class PickFieldScreen(CredModal[str | None]):
    """Returns a field name, "" for the primary value, or None."""

    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, meta: EntryMeta) -> None:
        super().__init__()
        self.meta = meta

    def compose(self) -> ComposeResult:
        options = [Option("value", id="")] if self.meta.has_value else []
        options += [Option(f"{name}  (secret)", id=name) for name in self.meta.secret_fields]
        options += [Option(name, id=name) for name in self.meta.fields]
        with Vertical(classes="dialog modal-box list-box"):
            yield Static(f"Copy which field of {self.meta.name}?", classes="title")
            yield OptionList(*options)
        yield KeyFooter()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
