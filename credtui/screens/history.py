"""An entry's earlier versions, with restore (the current version goes to history)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from credd.errors import CreddError
from credd.protocol import HistoryReply
from credd.rules import format_time
from credtui.screens.base import CredModal, KeyFooter
from credtui.screens.confirm import confirm


class HistoryScreen(CredModal[None]):
    """Enter on a version asks, then restores it."""

    BINDINGS = [("escape,h", "dismiss_screen", "Close"), ("r", "restore", "Restore")]

    class Loaded(Message):
        def __init__(self, reply: HistoryReply) -> None:
            super().__init__()
            self.reply = reply

    class Done(Message):
        def __init__(self, text: str, error: bool = False) -> None:
            super().__init__()
            self.text, self.error = text, error

    def __init__(self, name: str) -> None:
        super().__init__()
        self.entry_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box list-box"):
            yield Static(f"History of {self.entry_name}", classes="title")
            yield OptionList(id="versions")
            yield Label("Loading…", id="history-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="history")
    async def load(self) -> None:
        try:
            self.post_message(self.Loaded(await self.app.client.history(self.entry_name)))
        except CreddError as exc:
            self.post_message(self.Done(exc.message, error=True))

    def on_history_screen_loaded(self, message: Loaded) -> None:
        versions = self.query_one(OptionList)
        versions.clear_options()
        reply = message.reply
        versions.add_option(Option(f"v{reply.current}  current", id="current", disabled=True))
        for v in sorted(reply.versions, key=lambda v: -v.version):
            replaced = f"  replaced {format_time(v.replaced)}" if v.replaced else ""
            versions.add_option(Option(f"v{v.version}  written {format_time(v.updated)}{replaced}",
                                       id=str(v.version)))
        note = "Enter restores the highlighted version" if reply.versions else "No earlier versions"
        self.query_one("#history-note", Label).update(note)
        if reply.versions:
            versions.highlighted = 1
        versions.focus()

    @on(OptionList.OptionSelected)
    def action_restore(self) -> None:
        option = self.query_one(OptionList).highlighted_option
        if option is None or option.id in (None, "current"):
            return
        version = int(option.id)
        confirm(self.app, f"Restore v{version} of {self.entry_name}?", "Restore",
                lambda: self.restore(version))

    @work(exclusive=True, group="history")
    async def restore(self, version: int) -> None:
        try:
            await self.app.client.restore(self.entry_name, version)
        except CreddError as exc:
            self.post_message(self.Done(exc.message, error=True))
        else:
            self.post_message(self.Done(f"Restored v{version} of {self.entry_name}"))

    def on_history_screen_done(self, message: Done) -> None:
        if message.error:
            self.query_one("#history-note", Label).update(message.text)
        else:
            self.notify(message.text)
            self.dismiss(None)

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
