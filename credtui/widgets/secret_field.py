"""The masked block of an entry's secret values: revealed on request, hidden again soon.

The values live only in this widget's rendered text, and only while revealed;
`hide()` (timer, lock, entry change) drops them. The widget's repr never
includes them, and nothing here logs.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.timer import Timer
from textual.widgets import Static

from credd.protocol import EntryMeta, Revealed

MASK = "••••••••"


class SecretField(Static):
    """Shows `••••••••` per secret; `show(revealed)` reveals for `seconds`, then masks."""

    def __init__(self, *, seconds: float = 30.0, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.seconds = seconds
        self.revealed = False
        self._meta: EntryMeta | None = None
        self._timer: Timer | None = None

    def set_meta(self, meta: EntryMeta | None) -> None:
        """A different (or changed) entry: hide whatever was shown."""
        self._meta = meta
        self.hide()

    def show(self, revealed: Revealed) -> None:
        self._cancel()
        self.revealed = True
        self.update(self._content(revealed))
        self.add_class("-revealed")
        self._timer = self.set_timer(self.seconds, self.hide, name="auto-hide")

    def hide(self) -> None:
        self._cancel()
        self.revealed = False
        self.remove_class("-revealed")
        self.update(self._content(None))

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _content(self, revealed: Revealed | None) -> Text:
        meta = self._meta
        text = Text()
        if meta is None:
            return text
        rows: list[tuple[str, str]] = []
        if meta.has_value:
            rows.append(("value", revealed.value if revealed else MASK))
        for name in meta.secret_fields:
            rows.append((name, revealed.secret_fields.get(name, "") if revealed else MASK))
        if meta.has_notes:
            rows.append(("notes", revealed.notes if revealed else MASK))
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            text.append(f"{key.ljust(width)}  ", style="bold")
            text.append(value + "\n")
        if rows:
            hint = f"hides in {self.seconds:g}s · r hide" if revealed else "r reveal · c copy"
            text.append(hint, style="dim")
        return text

    def __repr__(self) -> str:
        return f"SecretField(id={self.id!r}, revealed={self.revealed})"
