"""The unlock screen: a masked passphrase field; a wrong one explains and keeps the text."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.message import Message
from textual.widgets import Label, Static

from credd.errors import BadPassphrase, CreddError, RateLimited
from credtui.screens.base import CredScreen, KeyFooter
from credtui.widgets.secret_input import SecretInput
from credtui.widgets.status_bar import StatusBar

_REASONS = {"idle": "Locked after being idle.", "lifetime": "Locked: the unlock lifetime ran out.",
            "signal": "Locked by a signal.", "request": "Locked on request.",
            "shutdown": "The agent stopped."}


class UnlockScreen(CredScreen):
    """Passphrase in, unlocked agent out (the app switches to Browse on the `unlocked` event)."""

    AUTO_FOCUS = "#passphrase"

    class Failed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="unlock-box", classes="dialog"):
            yield Static("credd is locked", classes="title")
            reason = _REASONS.get(self.reason, "")
            yield Label(f"{reason} Enter your passphrase to unlock the vault.".strip(),
                        id="unlock-reason")
            yield SecretInput(placeholder="passphrase", id="passphrase")
            yield Label("", id="unlock-error", classes="error")
        yield StatusBar()
        yield KeyFooter()

    @on(SecretInput.Submitted, "#passphrase")
    def submit(self, event: SecretInput.Submitted) -> None:
        if event.value:
            self.query_one("#unlock-error", Label).update("Unlocking…")
            self.unlock(event.value)

    @work(exclusive=True, group="unlock", description="unlock")
    async def unlock(self, passphrase: str) -> None:
        try:
            await self.app.client.unlock(passphrase)
        except RateLimited as exc:
            wait = exc.retry_after or 1
            self.post_message(self.Failed(f"Too many attempts: try again in {wait:.0f}s"))
        except BadPassphrase as exc:
            then = f" (next try allowed in {exc.retry_after:.1f}s)" if exc.retry_after else ""
            self.post_message(self.Failed(f"Wrong passphrase{then}"))
        except CreddError as exc:
            self.post_message(self.Failed(exc.message))
        else:
            self.app.refresh_status()

    def on_unlock_screen_failed(self, message: Failed) -> None:
        self.query_one("#unlock-error", Label).update(message.text)
        box = self.query_one("#unlock-box")
        box.add_class("-shake")
        self.set_timer(0.4, lambda: box.remove_class("-shake"))
        self.query_one("#passphrase", SecretInput).focus()

    def forget_secrets(self) -> None:
        if self.is_mounted:
            self.query_one("#passphrase", SecretInput).value = ""
