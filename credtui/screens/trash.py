"""Deleted entries: restore (u / Enter) or purge for good (p, confirmed)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from credd.errors import CreddError
from credd.protocol import EntryMeta
from credd.rules import format_time
from credtui.screens.base import CredModal, KeyFooter
from credtui.screens.confirm import confirm


class TrashScreen(CredModal[None]):
    """The trash, newest deletion first."""

    BINDINGS = [("escape,t", "dismiss_screen", "Close"), ("u", "restore", "Restore"),
                ("p", "purge", "Purge")]

    class Loaded(Message):
        def __init__(self, entries: list[EntryMeta]) -> None:
            super().__init__()
            self.entries = entries

    class Done(Message):
        def __init__(self, text: str, error: bool = False) -> None:
            super().__init__()
            self.text, self.error = text, error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box list-box"):
            yield Static("Trash", classes="title")
            yield OptionList(id="trash-list")
            yield Label("Loading…", id="trash-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="trash")
    async def load(self) -> None:
        try:
            self.post_message(self.Loaded(await self.app.client.trash()))
        except CreddError as exc:
            self.post_message(self.Done(exc.message, error=True))

    def on_trash_screen_loaded(self, message: Loaded) -> None:
        listing = self.query_one(OptionList)
        listing.clear_options()
        for meta in sorted(message.entries, key=lambda m: -(m.deleted or 0)):
            deleted = f"  deleted {format_time(meta.deleted)}" if meta.deleted else ""
            listing.add_option(Option(f"{meta.name}{deleted}", id=meta.name))
        if message.entries:
            listing.highlighted = 0
        self.query_one("#trash-note", Label).update("" if message.entries else "The trash is empty")
        listing.focus()

    def _chosen(self) -> str | None:
        option = self.query_one(OptionList).highlighted_option
        return option.id if option is not None else None

    @on(OptionList.OptionSelected)
    def action_restore(self) -> None:
        if (name := self._chosen()) is not None:
            self.act("undelete", name)

    def action_purge(self) -> None:
        if (name := self._chosen()) is None:
            return
        confirm(self.app, f"Purge {name} and all its history for good?", "Purge",
                lambda: self.act("purge", name))

    @work(exclusive=True, group="trash")
    async def act(self, verb: str, name: str) -> None:
        try:
            await getattr(self.app.client, verb)(name)
            self.post_message(self.Done(f"{'Restored' if verb == 'undelete' else 'Purged'} {name}"))
            self.post_message(self.Loaded(await self.app.client.trash()))
        except CreddError as exc:
            self.post_message(self.Done(exc.message, error=True))

    def on_trash_screen_done(self, message: Done) -> None:
        if message.error:
            self.query_one("#trash-note", Label).update(message.text)
        else:
            self.notify(message.text)

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
