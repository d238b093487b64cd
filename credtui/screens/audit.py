"""Who received an entry's value, from the audit trail (`credd audit who`)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, Static

from credd.errors import CreddError
from credd.protocol import AuditWho, Reader
from credd.rules import format_time
from credtui.screens.base import CredModal, KeyFooter


class WhoReadScreen(CredModal[None]):
    """Every program and grant that received the value, the most recent first."""

    BINDINGS = [("escape,w", "dismiss(None)", "Close")]

    class Loaded(Message):
        def __init__(self, readers: list[Reader] | None, error: str = "") -> None:
            super().__init__()
            self.readers, self.error = readers, error

    def __init__(self, name: str) -> None:
        super().__init__()
        self.entry_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box list-box"):
            yield Static(f"Who read {self.entry_name}", classes="title")
            yield Static("Loading…", id="readers")
            yield Label("from the audit trail · escape close", id="who-note")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="who")
    async def load(self) -> None:
        try:
            reply = await self.app.client.call(AuditWho(name=self.entry_name))
        except CreddError as exc:
            self.post_message(self.Loaded(None, exc.message))
        else:
            self.post_message(self.Loaded(reply.readers))

    def on_who_read_screen_loaded(self, message: Loaded) -> None:
        shown = self.query_one("#readers", Static)
        if message.readers is None:
            shown.update(Text(message.error, style="bold red"))
        else:
            shown.update(readers_table(message.readers))


def readers_table(readers: list[Reader]) -> Table | Text:
    if not readers:
        return Text("No program has received its value.", style="dim")
    table = Table(box=None, padding=(0, 2, 0, 0))
    for column in ("program", "grant", "count", "last"):
        table.add_column(column, style="bold" if column == "program" else "")
    for r in readers:
        table.add_row(r.program or "?", r.grant or "-", str(r.count), format_time(r.last))
    return table
