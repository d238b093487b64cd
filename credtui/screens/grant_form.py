"""The new-grant form: a modal that makes the grant and returns it (or None).

The form checks what it read with `credd.grants.make_grant`, the rules the
agent applies to `credd grant create` (names and globs, mode, at most 30 days,
uses, commands, a sandbox uid), so a mistake is named before anything is sent;
the agent checks again and its refusal is shown the same way. Durations are
read by `credd.rules.parse_duration`, as the CLI's `--ttl` is.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Select, Static, TextArea

from credd.errors import BadRequest, CreddError
from credd.grants import make_grant
from credd.protocol import Grant, GrantMode
from credd.rules import parse_duration
from credtui.screens.base import CredModal, KeyFooter

MODE_OPTIONS: list[tuple[str, GrantMode]] = [
    ("use: run commands with the values, never see one", "use"),
    ("read: also receive the values", "read"),
    ("write: also change the entries", "write"),
]


@dataclass(frozen=True)
class GrantSpec:
    """What the form asks for: `grant_create`'s arguments."""

    names: list[str]
    mode: GrantMode
    ttl: float | None
    label: str
    uses: int | None
    commands: list[str]
    confirm: bool
    uid: int | None

    def check(self) -> None:
        """BadRequest naming the first rule broken, as the agent would answer."""
        make_grant(**asdict(self), owner_uid=os.geteuid())


def _names(text: str) -> list[str]:
    """Space-separated patterns, quoted as in a shell when one holds a space."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise BadRequest(f"names: {exc}") from None


def _number(text: str, what: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise BadRequest(f"{what} must be a whole number")
    return int(text)


def _ttl(text: str) -> float | None:
    if not text:
        return None  # the agent's default, 8 h
    try:
        return parse_duration(text)
    except BadRequest as exc:
        raise BadRequest(f"lasts: {exc.message}") from None


class GrantFormScreen(CredModal[Grant | None]):
    """Ctrl+S makes the grant; errors stay in the form, naming the field."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Create", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    class Made(Message):
        def __init__(self, grant: Grant) -> None:
            super().__init__()
            self.grant = grant

    class Failed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box", id="grant-box"):
            yield Static("New grant", classes="title")
            with VerticalScroll(id="grant-form"):
                yield Label("Names: entries or globs, space separated (* matches anything, / "
                            "too)")
                yield Input(placeholder="e.g. stripe/* github/token", id="grant-names")
                yield Label("Mode")
                yield Select(MODE_OPTIONS, value="use", allow_blank=False, id="grant-mode")
                yield Label("Lasts (e.g. 2h, 7d; empty: 8h; at most 30d)")
                yield Input(placeholder="8h", id="grant-ttl")
                yield Label("Uses (empty: no limit)")
                yield Input(id="grant-uses")
                yield Label("Label: what it is for")
                yield Input(id="grant-label")
                yield Label("Commands `credd run` may start, one per line (e.g. git push **; "
                            "empty: any)")
                yield TextArea(id="grant-commands")
                yield Checkbox("Confirm each use (you answer here or with credd grant approve)",
                               id="grant-confirm")
                yield Label("Sandbox uid (empty: for credd session)")
                yield Input(id="grant-uid")
            yield Label("", id="grant-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="grant-save")
                yield Button("Cancel", id="grant-cancel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#grant-names").focus()

    def read(self) -> GrantSpec:
        """The form as a checked GrantSpec, or BadRequest naming the first problem."""
        def text(selector: str) -> str:
            return self.query_one(selector, Input).value.strip()
        mode: GrantMode = self.query_one("#grant-mode", Select).value  # type: ignore[assignment]
        spec = GrantSpec(
            names=_names(text("#grant-names")), mode=mode, ttl=_ttl(text("#grant-ttl")),
            label=text("#grant-label"), uses=_number(text("#grant-uses"), "uses"),
            commands=[c.strip() for c in self.query_one(TextArea).text.splitlines()
                      if c.strip()],
            confirm=self.query_one(Checkbox).value, uid=_number(text("#grant-uid"), "uid"))
        spec.check()
        return spec

    @on(Button.Pressed, "#grant-save")
    def action_save(self) -> None:
        try:
            spec = self.read()
        except BadRequest as exc:
            self.query_one("#grant-error", Label).update(exc.message)
            return
        self.query_one("#grant-error", Label).update("")
        self.create(spec)

    @work(exclusive=True, group="grant-create")
    async def create(self, spec: GrantSpec) -> None:
        try:
            grant = await self.app.client.grant_create(**asdict(spec))
        except CreddError as exc:
            self.post_message(self.Failed(exc.message))
        else:
            self.post_message(self.Made(grant))

    def on_grant_form_screen_made(self, message: Made) -> None:
        self.dismiss(message.grant)

    def on_grant_form_screen_failed(self, message: Failed) -> None:
        self.query_one("#grant-error", Label).update(message.text)

    @on(Button.Pressed, "#grant-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
