"""The detail pane: an entry's metadata, and its secrets masked below."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from credd.protocol import EntryMeta, Inspection, Revealed
from credd.rules import (
    DEFAULT_ROTATION,
    Periods,
    explain,
    format_date,
    format_time,
    reason_text,
    rotation_text,
)
from credtui.format import age, fingerprint
from credtui.widgets.secret_field import SecretField

#: Reasons with a line of their own (compromised, state, pending, checked), not repeated as
#: `due`.
_APART = frozenset({"compromised", "expired", "expiring", "rotation_due", "pending",
                    "check_failed"})


class EntryDetail(VerticalScroll, can_focus=False):
    """Metadata of the highlighted entry plus a SecretField."""

    def __init__(self, *, reveal_seconds: float = 30.0, clock: Callable[[], float] = time.time,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reveal_seconds = reveal_seconds
        self.clock = clock
        self.meta: EntryMeta | None = None
        self.periods: Periods = DEFAULT_ROTATION  # the agent's (Browse sets them)
        self._seen: Inspection | None = None      # what the agent knows of self.meta

    def compose(self) -> ComposeResult:
        yield Static("No entry selected", id="detail-meta")
        yield SecretField(seconds=self.reveal_seconds, id="detail-secret")

    @property
    def secret(self) -> SecretField:
        return self.query_one(SecretField)

    def show_entry(self, meta: EntryMeta | None) -> None:
        self.meta, self._seen = meta, None
        self._paint()
        self.secret.set_meta(meta)

    def show_inspection(self, seen: Inspection) -> None:
        """Fingerprints, the last check and the reasons, once the agent sent them."""
        if self.meta is not None and seen.entry.name == self.meta.name:
            self._seen = seen
            self._paint()

    @property
    def inspected(self) -> bool:
        """Whether what the agent knows of the entry shown has arrived."""
        return self._seen is not None

    def set_periods(self, periods: Periods) -> None:
        """The agent's rotation periods (a revealed value stays revealed)."""
        self.periods = periods
        self._paint()

    def _paint(self) -> None:
        self.query_one("#detail-meta", Static).update(self._describe(self.meta))

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
        if meta.last_used is not None:  # w shows who read it
            rows.append(("last used", age(now - meta.last_used)))
        rows.append(("rotate", rotation_text(meta, self.periods).partition(", next")[0]))
        if meta.expires is not None:
            rows.append(("expires", format_date(meta.expires)))
        if meta.pending is not None:
            rows.append(("pending", f"new value since {format_time(meta.pending)}"))
        if meta.compromised is not None:
            rows.append(("COMPROMISED", f"marked {format_time(meta.compromised)}: rotate it"))
        rows.append(("state", explain(meta, now, self.periods)[1]))
        rows += self._lifecycle(now)
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            if value:
                text.append(f"{key.ljust(width)}  ", style="bold")
                text.append(f"{value}\n")
        return text

    def _lifecycle(self, now: float) -> list[tuple[str, str]]:
        """The rows only the agent can tell: fingerprints, the last check, other reasons."""
        seen = self._seen
        if seen is None:
            return []
        rows = [("fingerprint", fingerprint(seen.fingerprint))] if seen.fingerprint else []
        rows += [(f"fp {k}", fingerprint(fp)) for k, fp in seen.field_fingerprints.items()]
        last = seen.verification
        if last is not None:
            rows.append(("checked", f"{last.outcome} {format_time(last.time)}"))
        rows += [("due", reason_text(r, now)) for r in seen.reasons if r.reason not in _APART]
        return rows
