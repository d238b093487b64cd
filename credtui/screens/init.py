"""Create a vault: passphrase twice, then the recovery key, shown once, with a copy button."""

from __future__ import annotations

from rich.repr import Result
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Center, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Label, Static

from credd.errors import CreddError
from credd.rules import MIN_PASSPHRASE as MIN_LENGTH  # the agent's rule (init refuses shorter)
from credtui.screens.base import CredScreen, KeyFooter
from credtui.widgets.secret_input import SecretInput
from credtui.widgets.status_bar import StatusBar


class InitScreen(CredScreen):
    """No vault yet: make one. `created` is True while the recovery key is on screen."""

    AUTO_FOCUS = "#new-passphrase"

    class Created(Message):
        def __init__(self, recovery_key: str) -> None:
            super().__init__()
            self.recovery_key = recovery_key

        def __repr__(self) -> str:
            return "InitScreen.Created(recovery_key=<redacted>)"

        def __rich_repr__(self) -> Result:
            yield "recovery_key", "<redacted>"

    class Failed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self) -> None:
        super().__init__()
        self.created = False
        self._recovery_key = ""

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="init-box", classes="dialog"):
            yield Static("Create your credd vault", classes="title")
            yield Static("Choose a passphrase (at least 8 characters).", id="init-help")
            yield SecretInput(placeholder="passphrase", id="new-passphrase")
            yield SecretInput(placeholder="passphrase again", id="new-passphrase2")
            yield Label("", id="init-error", classes="error")
            yield Static("", id="recovery-key")
            with Horizontal(id="init-buttons", classes="buttons"):
                yield Button("Create vault", variant="primary", id="create")
                yield _hidden(Button("Copy", id="copy-recovery"))
                yield _hidden(Button("I saved it", variant="success", id="saved"))
        yield StatusBar()
        yield KeyFooter()

    @on(SecretInput.Submitted, "#new-passphrase")
    def next_field(self) -> None:
        self.query_one("#new-passphrase2").focus()

    @on(SecretInput.Submitted, "#new-passphrase2")
    @on(Button.Pressed, "#create")
    def create(self) -> None:
        first = self.query_one("#new-passphrase", SecretInput).value
        second = self.query_one("#new-passphrase2", SecretInput).value
        if len(first) < MIN_LENGTH:
            self.query_one("#init-error", Label).update(f"Use at least {MIN_LENGTH} characters.")
        elif first != second:
            self.query_one("#init-error", Label).update("The two passphrases differ.")
        else:
            self.query_one("#init-error", Label).update("Creating the vault…")
            self.init_vault(first)

    @work(exclusive=True, group="init", description="init")
    async def init_vault(self, passphrase: str) -> None:
        try:
            kdf = self.app.init_kdf
            key = await self.app.client.init(passphrase, kdf_memory_kib=kdf.get("kdf_memory_kib"),
                                             kdf_iterations=kdf.get("kdf_iterations"),
                                             kdf_lanes=kdf.get("kdf_lanes"))
        except CreddError as exc:
            self.post_message(self.Failed(exc.message))
        else:
            self.post_message(self.Created(key))

    def on_init_screen_failed(self, message: Failed) -> None:
        self.query_one("#init-error", Label).update(message.text)

    def on_init_screen_created(self, message: Created) -> None:
        self.created = True
        self._recovery_key = message.recovery_key
        for widget in self.query(SecretInput):
            widget.disabled = True
            widget.display = False  # the passphrase is done with; the key gets the room
        self.query_one("#create").display = False
        self.query_one("#init-help", Static).update(
            "Vault created. This recovery key unlocks it if you forget the passphrase. "
            "It is shown only now: store it somewhere safe.")
        self.query_one("#init-error", Label).update("")
        self.query_one("#recovery-key", Static).update(message.recovery_key)
        self.query_one("#copy-recovery").display = True
        self.query_one("#saved").display = True
        self.query_one("#saved").focus()

    @on(Button.Pressed, "#copy-recovery")
    def copy_key(self) -> None:
        self.app.copy_secret(self._recovery_key, "the recovery key")

    @on(Button.Pressed, "#saved")
    def saved(self) -> None:
        passphrase = self.query_one("#new-passphrase", SecretInput).value
        self.forget_secrets()
        self.unlock(passphrase)

    @work(exclusive=True, group="init", description="unlock")
    async def unlock(self, passphrase: str) -> None:
        try:
            await self.app.client.unlock(passphrase)
        except CreddError as exc:
            self.post_message(self.Failed(exc.message))
        self.created = False
        self.app.refresh_status()

    def forget_secrets(self) -> None:
        self._recovery_key = ""
        if self.is_mounted:
            self.query_one("#recovery-key", Static).update("")
            for widget in self.query(SecretInput):
                widget.value = ""


def _hidden(widget: Button) -> Button:
    """Shown once the vault exists; hidden at compose time, not by a query in on_mount
    (a screen replaced right after it mounts has no children left to query)."""
    widget.display = False
    return widget
