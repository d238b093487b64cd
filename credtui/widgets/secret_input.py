"""A masked Input whose messages never show the value in a repr (devtools, logs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.repr import Result
from textual.widgets import Input


# __rich_repr__ for the messages below
def _redacted(self: Input.Changed | Input.Submitted) -> Result:
    yield "input", self.input
    yield "value", "<redacted>"


class SecretInput(Input):
    """`password=True` by default; toggle `password` to show the text while typing."""

    @dataclass
    class Changed(Input.Changed):
        __rich_repr__ = _redacted

        def __repr__(self) -> str:
            return "SecretInput.Changed(value=<redacted>)"

    @dataclass
    class Submitted(Input.Submitted):
        __rich_repr__ = _redacted

        def __repr__(self) -> str:
            return "SecretInput.Submitted(value=<redacted>)"

    def __init__(self, value: str | None = None, placeholder: str = "", *,
                 password: bool = True, **kwargs: Any) -> None:
        super().__init__(value, placeholder, password=password, **kwargs)

    def __repr__(self) -> str:
        return f"SecretInput(id={self.id!r})"
