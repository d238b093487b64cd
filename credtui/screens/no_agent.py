"""No agent answers: say where we looked, and offer to start one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from textual import on
from textual.app import ComposeResult
from textual.containers import Center, Horizontal, Vertical
from textual.widgets import Button, Label, Static

from credtui.screens.base import CredScreen, KeyFooter
from credtui.widgets.status_bar import StatusBar


def start_agent() -> None:
    """`credd serve`, detached from this terminal, with our environment (CREDD_SOCK etc.)."""
    exe = shutil.which("credd")
    command = [exe, "serve"] if exe else [sys.executable, "-m", "credd", "serve"]
    subprocess.Popen(command, env=dict(os.environ), stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


class NoAgentScreen(CredScreen):
    """Shown while no agent answers on the socket; the app's status poll moves on from here."""

    BINDINGS = [("s", "start", "Start agent"), ("r", "retry", "Retry")]

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.socket_path = socket_path

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="no-agent-box", classes="dialog"):
            yield Static("No credd agent is running", classes="title")
            yield Label(f"Nothing answers on {self.socket_path}.")
            yield Label("Start one here, or run `eval \"$(credd agent)\"` in a shell.")
            yield Label("", id="no-agent-note")
            with Horizontal(classes="buttons"):
                yield Button("Start an agent", variant="primary", id="start")
                yield Button("Retry", id="retry")
                yield Button("Quit", id="quit")
        yield StatusBar()
        yield KeyFooter()

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        try:
            start_agent()
        except OSError as exc:
            self.query_one("#no-agent-note", Label).update(f"Could not start credd: {exc.strerror}")
            return
        self.query_one("#no-agent-note", Label).update("Starting the agent…")
        for delay in (0.3, 0.8, 1.5, 3.0):
            self.set_timer(delay, self.app.refresh_status)

    @on(Button.Pressed, "#retry")
    def action_retry(self) -> None:
        self.app.refresh_status()

    @on(Button.Pressed, "#quit")
    def quit(self) -> None:
        self.app.exit()
