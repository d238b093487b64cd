"""Access requests: a bound program waits for the owner's yes or no (docs/grants.md).

The agent announces each request with an `access_requested` event and holds
the program until it is answered, refused on lock or revocation, or it times
out (25 s by default). It sends no event when a request ends otherwise, so
while one is on screen the modal asks `grant_list` once a second whether it
still waits: one small request, only while a request is shown.

The answer is one key (`y` approve, `n` deny; Escape leaves it to the grants
screen or `credd grant approve`). The keys arm only after `ARM_SECONDS`, as
browsers' permission prompts do: a key typed for the screen below as the
request pops up must not answer it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.widgets import Label, Static

from credd.errors import CreddError, NotFound
from credd.protocol import AccessRequest
from credtui.screens.base import CredModal, KeyFooter

if TYPE_CHECKING:
    from credtui.app import CredApp

ARM_SECONDS = 0.6


def describe(request: AccessRequest) -> Text:
    """Who asks for what, under which grant; the names are the program's choice, so they
    are shown as data (no markup)."""
    who = request.program or "a program"
    pid = f" (pid {request.pid})" if request.pid else ""
    text = Text()
    text.append(who, style="bold")
    if request.op == "request_access":  # a wider grant: say how wide, and the program's why
        text.append(f"{pid} asks for {request.mode or 'more'} access to ")
    else:
        text.append(f"{pid} asks to {request.op} ")
    text.append(", ".join(request.names) or "covered entries", style="bold")
    text.append(f" under grant {request.grant}.")
    if request.reason:
        text.append("\nIts reason, in its own words: ")
        text.append(request.reason, style="italic")
    return text


class AccessRequestScreen(CredModal[None]):
    """One waiting request; answered here, or gone when it ends elsewhere."""

    BINDINGS = [Binding("y", "answer(True)", "Approve"), Binding("n", "answer(False)", "Deny"),
                Binding("escape", "later", "Later")]

    class Ended(Message):
        def __init__(self, text: str, severity: SeverityLevel = "information") -> None:
            super().__init__()
            self.text, self.severity = text, severity

    def __init__(self, request: AccessRequest) -> None:
        super().__init__()
        self.request = request
        self.armed = False
        self.ended = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box", id="access-box"):
            yield Static("Access request", classes="title")
            yield Label(describe(self.request), id="access-what")
            yield Label("", id="access-left")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._tick()
        self.set_interval(1.0, self._tick)
        self.set_timer(ARM_SECONDS, self._arm)

    def _arm(self) -> None:
        self.armed = True
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.armed or action not in ("answer",)

    def _tick(self) -> None:
        if self.ended:
            return
        left = self.request.expires - time.time()
        if left <= 0:
            self.post_message(self.Ended(f"Access request {self.request.id} timed out: refused",
                                         "warning"))
            return
        self.query_one("#access-left", Label).update(
            f"Refused in {left:.0f} s unless you approve it ({self.request.id}).")
        self.still_waiting()

    @work(exclusive=True, group="access-poll")
    async def still_waiting(self) -> None:
        try:
            pending = (await self.app.client.grants()).pending
        except CreddError:
            return
        if all(r.id != self.request.id for r in pending):
            self.post_message(self.Ended(f"Access request {self.request.id} was answered "
                                         "elsewhere or ended"))

    def action_answer(self, approve: bool) -> None:
        self.armed = False  # one answer
        self.answer(approve)

    @work(exclusive=True, group="access-answer")
    async def answer(self, approve: bool) -> None:
        rid = self.request.id
        try:
            await self.app.client.grant_answer(rid, approve)
        except NotFound:
            self.post_message(self.Ended(f"Access request {rid} had already ended", "warning"))
        except CreddError as exc:
            self.post_message(self.Ended(exc.message, "error"))
        else:
            self.post_message(self.Ended(f"{'Approved' if approve else 'Denied'} {rid}"))

    def on_access_request_screen_ended(self, message: Ended) -> None:
        if self.ended:
            return
        self.ended = True
        self.notify(message.text, severity=message.severity)
        self._close()

    def on_screen_resume(self) -> None:
        self._close()

    def _close(self) -> None:
        """Dismiss once ended and on top: dismiss() pops whatever screen is on top (help)."""
        if self.ended and self.is_current:
            self.dismiss(None)

    def action_later(self) -> None:
        self.ended = True
        self.notify(f"{self.request.id} still waits: answer it in the grants screen (g)")
        self.dismiss(None)


class AccessDesk:
    """Requests in the order they came, shown one at a time above whatever is on screen."""

    def __init__(self, app: CredApp) -> None:
        self.app = app
        self.waiting: deque[AccessRequest] = deque()

    def offer(self, request: AccessRequest) -> None:
        if all(r.id != request.id for r in self.waiting) and not self._showing(request.id):
            self.waiting.append(request)
        self._next()

    def _showing(self, rid: str | None = None) -> bool:
        return any(isinstance(s, AccessRequestScreen) and rid in (None, s.request.id)
                   for s in self.app.screen_stack)

    def _next(self, _: None = None) -> None:
        now = time.time()
        while self.waiting and self.waiting[0].expires <= now:
            self.waiting.popleft()
        if self.waiting and not self._showing():
            self.app.push_screen(AccessRequestScreen(self.waiting.popleft()), self._next)
