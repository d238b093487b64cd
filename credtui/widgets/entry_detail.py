"""The detail pane: an entry's metadata, and its secrets masked below."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from credd.protocol import EntryMeta, Revealed
from credd.rules import explain, format_date, format_duration
from credtui.format import age
from credtui.widgets.secret_field import SecretField


class EntryDetail(VerticalScroll, can_focus=False):
    """Metadata of the highlighted entry plus a SecretField."""

    def __init__(self, *, reveal_seconds: float = 30.0, clock: Callable[[], float] = time.time,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reveal_seconds = reveal_seconds
        self.clock = clock
        self.meta: EntryMeta | None = None

    def compose(self) -> ComposeResult:
        yield Static("No entry selected", id="detail-meta")
        yield SecretField(seconds=self.reveal_seconds, id="detail-secret")

    @property
    def secret(self) -> SecretField:
        return self.query_one(SecretField)

    def show_entry(self, meta: EntryMeta | None) -> None:
        self.meta = meta
        self.query_one("#detail-meta", Static).update(self._describe(meta))
        self.secret.set_meta(meta)

    def reveal(self, revealed: Revealed) -> None:
        if self.meta is not None and revealed.entry.name == self.meta.name:
            self.secret.show(revealed)

    def _describe(self, meta: EntryMeta | None) -> Text:
        if meta is None:
            return Text("No entry selected", style="dim")
        now = self.clock()
        text = Text(meta.name + "\n", style="bold")
        rows = [("type", meta.kind), ("mount", meta.mount), ("service", meta.service),
                ("tags", ", ".join(meta.tags))]
        rows += list(meta.fields.items())
        rows.append(("updated", f"{age(now - meta.updated)} · v{meta.version}"))
        if meta.last_used is not None:
            rows.append(("last used", f"{age(now - meta.last_used)} · w: who"))
        if meta.rotate_after:
            rows.append(("rotate", f"every {format_duration(meta.rotate_after)}"))
        if meta.expires is not None:
            rows.append(("expires", format_date(meta.expires)))
        rows.append(("state", explain(meta, now)[1]))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            if value:
                text.append(f"{key.ljust(width)}  ", style="bold")
                text.append(f"{value}\n")
        return text
