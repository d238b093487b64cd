"""The edit form: a modal that returns a Draft (or None), validated inline.

Saving is the caller's job, in one `set` request: the form only builds the
Draft, so the same form serves "new" and "edit".
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, Select, Static, TextArea

from credd.errors import BadRequest
from credd.protocol import Field, Revealed
from credd.rules import (
    DEFAULT_KIND,
    KINDS,
    format_date,
    format_duration,
    kind_lines,
    parse_date,
    parse_duration,
)
from credtui.screens.base import CredModal, KeyFooter
from credtui.widgets.secret_input import SecretInput

_ALPHABET = string.ascii_letters + string.digits + "!#$%&()*+,-.:;<=>?@[]^_{|}~"


def generate_password(length: int = 24) -> str:
    """Random characters from letters, digits and punctuation, at least one of each class."""
    while True:
        candidate = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if (any(c.islower() for c in candidate) and any(c.isupper() for c in candidate)
                and any(c.isdigit() for c in candidate)):
            return candidate


@dataclass(repr=False)
class Draft:
    """What the form produced; repr never shows values."""

    name: str = ""
    kind: str = DEFAULT_KIND
    service: str = ""
    tags: list[str] = field(default_factory=list)
    value: str = ""
    fields: list[Field] = field(default_factory=list)
    notes: str = ""
    rotate_after: float | None = None
    expires: float | None = None
    renamed_from: str = ""  # editing changed the name: move the entry first

    def __repr__(self) -> str:
        return f"Draft(name={self.name!r}, kind={self.kind!r}, <values redacted>)"

    @classmethod
    def from_revealed(cls, revealed: Revealed) -> Draft:
        meta = revealed.entry
        fields = [Field(name=k, value=v, secret=False) for k, v in meta.fields.items()]
        fields += [Field(name=k, value=revealed.secret_fields.get(k, ""), secret=True)
                   for k in meta.secret_fields]
        return cls(meta.name, meta.kind, meta.service, list(meta.tags), revealed.value, fields,
                   revealed.notes, meta.rotate_after, meta.expires)

    def to_set(self) -> dict[str, Any]:
        """Keyword arguments of `AsyncClient.set` that replace the entry whole."""
        return dict(kind=self.kind, service=self.service, tags=self.tags,
                    value=self.value or None, fields=self.fields, notes=self.notes or None,
                    rotate_after=self.rotate_after, expires=self.expires)


def _parsed(text: str, what: str, parse: Callable[[str], float]) -> float | None:
    """None for an empty field, else its value; an error names the field."""
    if not text:
        return None
    try:
        return parse(text)
    except BadRequest as exc:
        raise BadRequest(f"{what}: {exc.message}") from None


def _kind_options(current: str) -> list[tuple[str, str]]:
    """The known kinds with what each is for; an entry's own unknown kind stays choosable."""
    options = [(line, kind) for kind, line in kind_lines()]
    return options if current in KINDS else [(current, current), *options]


class FieldRow(Horizontal):
    """One extra field: name, value, secret switch, remove button."""

    def __init__(self, item: Field | None = None) -> None:
        super().__init__(classes="field-row")
        self.item = item or Field(name="", value="", secret=True)

    def compose(self) -> ComposeResult:
        yield Input(self.item.name, placeholder="field", classes="field-name")
        yield SecretInput(self.item.value, placeholder="value", password=self.item.secret,
                          classes="field-value")
        yield Checkbox("secret", self.item.secret, classes="field-secret")
        yield Button("✕", classes="field-remove")

    @on(Checkbox.Changed)
    def secret_changed(self, event: Checkbox.Changed) -> None:
        self.query_one(".field-value", SecretInput).password = event.value

    @on(Button.Pressed, ".field-remove")
    def remove_row(self) -> None:
        self.remove()

    def read(self) -> Field | None:
        name = self.query_one(".field-name", Input).value.strip()
        value = self.query_one(".field-value", SecretInput).value
        if not name and not value:
            return None
        if not name:
            raise BadRequest("every field needs a name")
        return Field(name=name, value=value, secret=self.query_one(".field-secret", Checkbox).value)


class EditScreen(CredModal[Draft | None]):
    """New (`draft.name == ""`) or edit an entry; a changed name renames it on save."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+g,g", "generate", "Generate"),
        Binding("ctrl+r", "toggle_value", "Show value"),
    ]

    def __init__(self, draft: Draft | None = None) -> None:
        super().__init__()
        self.draft = draft or Draft()
        self.editing = bool(self.draft.name)

    def compose(self) -> ComposeResult:
        d = self.draft
        with Vertical(classes="dialog modal-box", id="edit-box"):
            yield Static(f"Edit {d.name}" if self.editing else "New entry", classes="title")
            with VerticalScroll(id="edit-form"):
                yield Label("Name")
                yield Input(d.name, placeholder="e.g. github/work/token", id="edit-name")
                yield Label("Type")
                yield Select(_kind_options(d.kind), value=d.kind, allow_blank=False,
                             id="edit-kind")
                yield Label("Service")
                yield Input(d.service, placeholder="e.g. github.com", id="edit-service")
                yield Label("Tags (comma separated)")
                yield Input(", ".join(d.tags), id="edit-tags")
                yield Label("Value")
                with Horizontal(classes="value-row"):
                    yield SecretInput(d.value, placeholder="secret value", id="edit-value")
                    yield Button("Show", id="edit-show")
                    yield Button("Generate", id="edit-generate")
                yield Label("Fields")
                with Vertical(id="edit-fields"):
                    for item in d.fields:
                        yield FieldRow(item)
                yield Button("+ field", id="edit-add-field")
                yield Label("Notes")
                yield TextArea(d.notes, id="edit-notes", soft_wrap=True)
                yield Label("Rotate every (e.g. 90d, 12w, 1y, 1h30m; empty: never)")
                yield Input(format_duration(d.rotate_after) if d.rotate_after else "",
                            id="edit-rotate")
                yield Label("Expires (YYYY-MM-DD: valid through that day; empty: never)")
                yield Input(format_date(d.expires) if d.expires else "", id="edit-expires")
            yield Label("", id="edit-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="edit-save")
                yield Button("Cancel", id="edit-cancel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#edit-value" if self.editing else "#edit-name").focus()

    @on(Button.Pressed, "#edit-add-field")
    def add_field(self) -> None:
        row = FieldRow()
        self.query_one("#edit-fields").mount(row)
        self.call_after_refresh(row.query_one(".field-name").focus)

    @on(Button.Pressed, "#edit-generate")
    def action_generate(self) -> None:
        value = self.query_one("#edit-value", SecretInput)
        value.value = generate_password()
        self.notify("Generated a 24-character password")

    @on(Button.Pressed, "#edit-show")
    def action_toggle_value(self) -> None:
        value = self.query_one("#edit-value", SecretInput)
        value.password = not value.password
        self.query_one("#edit-show", Button).label = "Show" if value.password else "Hide"

    @on(Button.Pressed, "#edit-cancel")
    def action_cancel(self) -> None:
        self.forget_secrets()
        self.dismiss(None)

    @on(Button.Pressed, "#edit-save")
    def action_save(self) -> None:
        try:
            draft = self.read()
        except BadRequest as exc:
            self.query_one("#edit-error", Label).update(exc.message)
            return
        self.forget_secrets()
        self.dismiss(draft)

    def read(self) -> Draft:
        """The form as a Draft, or BadRequest naming the first problem."""
        def text(selector: str) -> str:
            return self.query_one(selector, Input).value.strip()
        name = text("#edit-name")
        if not name:
            raise BadRequest("the name is required")
        if name.startswith("/") or name.endswith("/") or "//" in name:
            raise BadRequest("a name's '/' segments must not be empty")
        fields = [f for f in (row.read() for row in self.query(FieldRow)) if f is not None]
        if len({f.name for f in fields}) != len(fields):
            raise BadRequest("two fields have the same name")
        return Draft(
            name=name, kind=str(self.query_one("#edit-kind", Select).value),
            service=text("#edit-service"),
            tags=[t.strip() for t in text("#edit-tags").split(",") if t.strip()],
            value=self.query_one("#edit-value", SecretInput).value, fields=fields,
            notes=self.query_one("#edit-notes", TextArea).text,
            rotate_after=_parsed(text("#edit-rotate"), "rotation period", parse_duration),
            expires=self._expiry(text("#edit-expires")),
            renamed_from=self.draft.name if self.editing and name != self.draft.name else "",
        )

    def _expiry(self, text: str) -> float | None:
        """The entry's own expiry while the field shows it unchanged: the form prints whole
        seconds, and saving another change must not move an expiry set to a finer time."""
        before = self.draft.expires
        if before and text == format_date(before):
            return before
        return _parsed(text, "expiry", parse_date)

    def forget_secrets(self) -> None:
        self.draft = Draft()
        if self.is_mounted:
            for widget in self.query(SecretInput):
                widget.value = ""
            self.query_one("#edit-notes", TextArea).text = ""
