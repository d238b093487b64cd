"""Every key, in one place (also reachable with ctrl+p, the command palette)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from credtui.screens.base import CredModal, KeyFooter

KEYS = [
    ("Browse", [
        ("/", "search name, service and tags (substring, then fuzzy)"),
        ("enter", "in search: select the first match; in the list: select"),
        ("escape", "clear the search"),
        ("↑ ↓ pgup pgdn", "move in the list (also j / k)"),
        ("r", "reveal or hide the secret values (hidden again after 30 s)"),
        ("c", "copy the value; the message says where to and whether it will be cleared"),
        ("C", "copy a field you choose"),
        ("n / e / d", "new entry / edit / delete to the trash"),
        ("h", "history of the entry, with restore"),
        ("w", "who read the entry: programs and grants, from the audit trail"),
        ("t", "trash, with restore and purge"),
        ("f", "folder tree: by '/' folders, by service, or hidden"),
        ("u", "show only entries due for rotation or expired"),
        ("U", "show only the entries `credd due` lists for one reason (reused, short ...)"),
    ]),
    ("Edit form", [
        ("ctrl+s", "save"),
        ("ctrl+g", "generate a password"),
        ("ctrl+r", "show or hide the value"),
        ("escape", "cancel"),
    ]),
    ("Everywhere", [
        ("ctrl+l", "lock the vault now"),
        ("ctrl+p", "command palette"),
        ("?", "this help"),
        ("q / ctrl+q", "quit"),
    ]),
]


def key_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for section, rows in KEYS:
        table.add_row(f"[u]{section}[/u]", "")
        for key, what in rows:
            table.add_row(key, what)
    return table


class HelpScreen(CredModal[None]):
    BINDINGS = [("escape,question_mark,q", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box", id="help-box"):
            yield Static("credtui keys", classes="title")
            with VerticalScroll():
                yield Static(key_table())
        yield KeyFooter()
