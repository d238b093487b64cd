"""CredApp: owns the AsyncClient, follows the agent's events, and picks the screen.

Kept small: the screens do the work. Top-level screens (no agent, create
vault, unlock, browse) replace each other with `show()`, which first tells
every screen to forget what it revealed; modals stack above Browse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from credd import protocol as p
from credd.async_client import AsyncClient
from credd.errors import AgentUnavailable, CreddError
from credtui.clipboard import Clipboard, ClipboardError, Osc52, detect
from credtui.messages import (
    AccessRequested,
    AgentGone,
    AgentLocked,
    AgentStatus,
    AgentUnlocked,
    EntryChanged,
    GrantChanged,
)
from credtui.screens.access import AccessDesk
from credtui.screens.base import CredScreen, Forgets
from credtui.screens.browse import BrowseScreen
from credtui.screens.grants import GrantsScreen
from credtui.screens.help import HelpScreen
from credtui.screens.init import InitScreen
from credtui.screens.no_agent import NoAgentScreen
from credtui.screens.unlock import UnlockScreen
from credtui.widgets.status_bar import StatusBar

_SCREEN_FOR_STATE: dict[str, type[CredScreen]] = {
    "no_vault": InitScreen, "locked": UnlockScreen, "unlocked": BrowseScreen}


class CredApp(App[None], inherit_bindings=False):
    """The credtui application; its keys are all listed here, in footer order."""

    CSS_PATH = "credtui.tcss"
    TITLE = "credtui"
    BINDINGS = [
        Binding("ctrl+l", "lock", "Lock", priority=True),
        Binding("question_mark", "help", "Help"),
        # ctrl+q works in a passphrase field too, so it is the one the footers show
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("q", "quit", "Quit", show=False),
        Binding("ctrl+c", "help_quit", show=False, system=True),  # Textual's: says ctrl+q quits
        # Priority, so the focus moves as Tab is read: Textual runs other bindings only once
        # the key has bubbled up from the focused widget, and keys read in the meantime would
        # reach the field Tab leaves (a value typed ahead landing in Tags). No widget here
        # takes Tab itself (TextArea's tab_behavior is "focus").
        Binding("tab", "focus_next", show=False, priority=True),
        Binding("shift+tab", "focus_previous", show=False, priority=True),
    ]

    def __init__(self, socket_path: str | None = None, *, reveal_seconds: float = 30.0,
                 clip_seconds: float = 45.0, clock: Callable[[], float] = time.time,
                 init_kdf: dict[str, int] | None = None, status_every: float = 15.0,
                 clipboard: Literal["auto", "osc52"] = "auto") -> None:
        super().__init__()
        self.client = AsyncClient(socket_path)
        self.reveal_seconds = reveal_seconds
        self.clock = clock
        self.init_kdf = init_kdf or {}
        self.status_every = status_every
        self.agent_status: p.StatusReply | None = None
        self.idle_deadline: float | None = None   # monotonic time of the idle lock
        write = self._write_terminal
        self.clip = Clipboard(detect(write) if clipboard == "auto" else [Osc52(write)],
                              self.set_timer, clip_seconds)
        self._agent_up = False
        self.access = AccessDesk(self)

    # ------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        self.refresh_status()
        self.follow_events()
        self.set_interval(self.status_every, self.refresh_status)
        self.set_interval(1.0, self._paint_status)  # the idle countdown, between polls

    async def on_unmount(self) -> None:
        if self.clip.pending:
            self.clip.clear_now()
        await self.client.close()

    def _write_terminal(self, sequence: str) -> None:
        if self._driver is not None:
            self._driver.write(sequence)
            self._driver.flush()

    # ------------------------------------------------------------ workers (I/O only)

    @work(exclusive=True, group="status")
    async def refresh_status(self) -> None:
        try:
            status = await self.client.status()
        except AgentUnavailable:
            status = None
        except CreddError:
            return
        self.post_message(AgentStatus(status))

    @work(exclusive=True, group="pending")
    async def fetch_pending(self) -> None:
        """Requests that began before we listened (the app started, or the events
        connection came back): the agent announces each only once."""
        try:
            pending = (await self.client.grants()).pending
        except CreddError:
            return
        for request in pending:
            self.post_message(AccessRequested(request))

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        """Turn the agent's events into messages; reconnect while the agent is away."""
        while True:
            try:
                async for event in self.client.events():
                    self._agent_up = True
                    match event:
                        case p.Locked(reason=reason):
                            self.post_message(AgentLocked(reason))
                        case p.Unlocked():
                            self.post_message(AgentUnlocked())
                        case p.EntryChanged(name=name, action=action, new_name=new_name):
                            self.post_message(EntryChanged(name, action, new_name))
                        case p.GrantChanged(grant=grant, action=action):
                            self.post_message(GrantChanged(grant, action))
                        case p.AccessRequested(request=request):
                            self.post_message(AccessRequested(request))
            except AgentUnavailable:
                if self._agent_up:
                    self._agent_up = False
                    self.post_message(AgentGone("the agent stopped"))
            except CreddError:
                pass
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------ handlers (paint only)

    async def on_agent_status(self, message: AgentStatus) -> None:
        if not self.screen_stack:
            return  # shutting down
        status = message.status
        old, self.agent_status = self.agent_status, status
        if (old.state if old else None) != (status.state if status else None):
            self.refresh_bindings()  # Lock is offered only while unlocked
            if status and status.state == "unlocked":
                self.fetch_pending()
        self.idle_deadline = (time.monotonic() + status.idle_left
                              if status and status.idle_left is not None else None)
        wanted = _SCREEN_FOR_STATE[status.state] if status else NoAgentScreen
        if type(self.screen) is not wanted and not self._in_modal_flow():
            await self.show(NoAgentScreen(self.client.socket_path) if wanted is NoAgentScreen
                            else wanted())
        self._paint_status()

    async def on_agent_locked(self, message: AgentLocked) -> None:
        self.idle_deadline = None
        if self.clip.pending:
            self.clip.clear_now()
        await self.show(UnlockScreen(reason=message.reason))
        self.refresh_status()

    async def on_agent_unlocked(self, _: AgentUnlocked) -> None:
        if isinstance(self.screen, UnlockScreen):
            await self.show(BrowseScreen())
        self.refresh_status()

    async def on_agent_gone(self, _: AgentGone) -> None:
        await self.show(NoAgentScreen(self.client.socket_path))

    def on_entry_changed(self, message: EntryChanged) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, BrowseScreen):
                screen.post_message(EntryChanged(message.name, message.action, message.new_name))

    def on_grant_changed(self, _: GrantChanged) -> None:
        self._grants_changed()

    def on_access_requested(self, message: AccessRequested) -> None:
        self.access.offer(message.request)
        self._grants_changed()

    def _grants_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, GrantsScreen):
                screen.changed()

    # ------------------------------------------------------------ navigation

    def _in_modal_flow(self) -> bool:
        """Browse and its modals while unlocked, or a recovery key on screen: leave them be."""
        if isinstance(self.screen, InitScreen) and self.screen.created:
            return True
        unlocked = self.agent_status is not None and self.agent_status.state == "unlocked"
        return unlocked and any(isinstance(s, BrowseScreen) for s in self.screen_stack)

    async def show(self, screen: CredScreen) -> None:
        """Replace the top-level screen, dropping modals and every revealed value first."""
        for old in self.screen_stack:
            if isinstance(old, Forgets):
                old.forget_secrets()
        while len(self.screen_stack) > 2:
            await self.pop_screen()
        if len(self.screen_stack) == 2:
            await self.switch_screen(screen)
        else:
            await self.push_screen(screen)
        self._paint_status()

    def _paint_status(self) -> None:
        """The app's part of every status bar (the counts are the browse screen's)."""
        status = self.agent_status
        idle_left = (max(0.0, self.idle_deadline - time.monotonic())
                     if self.idle_deadline is not None else None)
        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.socket = self.client.socket_path
                bar.state = status.state.replace("_", " ") if status else "no agent"
                bar.idle_left = idle_left

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer Lock only while unlocked: on the other screens it would do nothing."""
        if action == "lock":
            return self.agent_status is not None and self.agent_status.state == "unlocked"
        return True

    @work(exclusive=True, group="lock")
    async def action_lock(self) -> None:
        try:
            await self.client.lock()
        except CreddError as exc:
            self.notify(exc.message, title="Lock failed", severity="error")

    def copy_secret(self, value: str, what: str) -> None:
        """Copy `value`, and say where it went and whether its clear can be trusted."""
        try:
            copied = self.clip.copy(value)
        except ClipboardError as exc:
            self.notify(str(exc), title="Could not copy", severity="error")
            return
        self.notify(copied.message(what), timeout=10,
                    severity="information" if copied.readable else "warning")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette: our actions, and no screenshot (it could capture a revealed value)."""
        for command in super().get_system_commands(screen):
            if "screenshot" not in command.title.lower():
                yield command
        for binding in getattr(screen, "PALETTE", ()):
            yield SystemCommand(binding.description, f"key {binding.key}",
                                lambda action=binding.action: screen.run_action(action))
        yield SystemCommand("Lock", "Lock the vault now (ctrl+l)", self.action_lock)

    def _fatal_error(self) -> None:
        """Textual's crash report shows local variables; ours never does (they may be secrets)."""
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None)
        rendered = self.console.render(traceback, self.console.options)
        self._exit_renderables.append(Segments(rendered))
        self._close_messages_no_wait()
