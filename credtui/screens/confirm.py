"""A yes/no question as a modal that returns a bool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label

from credtui.screens.base import CredModal, KeyFooter


def confirm(app: App[Any], question: str, yes: str, then: Callable[[], object]) -> None:
    """Ask `question`; run `then()` only if the answer is yes."""
    def answered(answer: bool | None) -> None:
        if answer:
            then()
    app.push_screen(ConfirmScreen(question, yes), answered)


class ConfirmScreen(CredModal[bool]):
    """`y`/Enter on Yes confirms, `n`/Escape declines."""

    BINDINGS = [("y", "answer(True)", "Yes"), ("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box"):
            yield Label(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("Cancel", id="no")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#no").focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
