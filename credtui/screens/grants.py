"""Grants in force and access requests waiting for an answer (`credd grant ls`).

Each grant shows its scope, mode, expiry (how long is left, and when), uses
left, its last use, its label, and where it is served (sessions, or a sandbox
uid on its socket). The last use is the newest audit record of a request
made under the grant (`credd audit --grant G`): the grant record counts uses
but keeps no time. One `audit` request per grant, each bounded by
`LAST_USE_WINDOW` records, asked when the screen loads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from credd.errors import CreddError
from credd.grants import spent
from credd.protocol import AccessRequest, Audit, AuditRecord, Grant
from credd.rules import format_duration, format_time
from credtui.screens.access import AccessRequestScreen, describe
from credtui.screens.base import CredModal, KeyFooter
from credtui.screens.confirm import confirm
from credtui.screens.grant_form import GrantFormScreen

#: Records asked for per grant: its changes (made, answered, sessions) match too, and the
#: newest request made under it is nearly always among its last few.
LAST_USE_WINDOW = 20


def rounded(seconds: float) -> str:
    """A time left or an age to the minute (`1h59m`), in seconds under a minute."""
    if seconds < 60:
        return f"{max(0, int(seconds))}s"
    return format_duration(round(seconds / 60) * 60)


def _row(text: Text, key: str, value: str) -> None:
    text.append(f"\n  {key:<8} ", style="dim")
    text.append(value)


def grant_text(grant: Grant, last: AuditRecord | None, now: float) -> Text:
    """A grant as a few labelled lines (the names are the owner's, shown as data)."""
    text = Text()
    text.append(grant.id, style="bold")
    text.append(f"  {grant.mode}")
    if grant.label:
        text.append(f"  {grant.label}", style="bold")
    _row(text, "names", ", ".join(grant.names))
    _row(text, "ends", _ends(grant, now))
    uses = (f"{grant.uses - grant.used} left of {grant.uses}" if grant.uses is not None
            else f"no limit, {grant.used} so far")
    used = (f"last used {rounded(now - last.time)} ago by {last.program or 'a program'}"
            if last else "no recent use")
    _row(text, "uses", f"{uses} · {used}")
    _row(text, "for", "credd session" if grant.uid is None else
         f"uid {grant.uid} on {grant.socket or '(no socket: see the agent log)'}")
    if grant.commands:
        _row(text, "commands", ", ".join(grant.commands))
    if grant.confirm:
        _row(text, "confirm", "each use waits for your answer")
    return text


def _ends(grant: Grant, now: float) -> str:
    if grant.revoked is not None:
        return f"revoked {format_time(grant.revoked)}"
    if grant.expires <= now:
        return f"expired {format_time(grant.expires)}"
    left = f"in {rounded(grant.expires - now)} · {format_time(grant.expires)}"
    return f"used up (it would end {left})" if spent(grant) else left


def last_use(grant: Grant, records: Sequence[AuditRecord]) -> AuditRecord | None:
    """The newest request made under the grant (not a change made to it by the owner)."""
    return max((r for r in records if r.grant == grant.id), key=lambda r: r.time, default=None)


class GrantsScreen(CredModal[None]):
    """`n` makes a grant, `d` revokes one, Enter answers a waiting request."""

    BINDINGS = [
        Binding("escape,g", "dismiss_screen", "Close"),
        Binding("n", "new", "New"),
        Binding("d", "revoke", "Revoke"),
        Binding("a", "all", "All"),
    ]

    class Loaded(Message):
        def __init__(self, grants: list[tuple[Grant, AuditRecord | None]],
                     pending: list[AccessRequest]) -> None:
            super().__init__()
            self.grants, self.pending = grants, pending

    def __init__(self) -> None:
        super().__init__()
        self.show_all = False
        self._pending: list[AccessRequest] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog modal-box list-box", id="grants-box"):
            yield Static("Grants", classes="title")
            yield OptionList(id="grants-list")
            yield Label("Loading…", id="grants-note")
        yield KeyFooter()

    def on_screen_resume(self) -> None:
        """Opened, or back on top after the form, a confirmation or a request: load again."""
        self.load()

    # ------------------------------------------------------------ workers

    @work(exclusive=True, group="grants")
    async def load(self) -> None:
        client = self.app.client
        try:
            reply = await client.grants(all=self.show_all)
            grants = []
            for grant in reply.grants:
                found = await client.call(Audit(grant=grant.id, limit=LAST_USE_WINDOW))
                grants.append((grant, last_use(grant, found.records)))
        except CreddError as exc:
            self.notify(exc.message, title="Grants", severity="error")
        else:
            self.post_message(self.Loaded(grants, reply.pending))

    @work(exclusive=True, group="grants-revoke")
    async def revoke(self, grant_id: str) -> None:
        try:
            await self.app.client.grant_revoke(grant_id)
        except CreddError as exc:
            self.notify(exc.message, title="Not revoked", severity="error")
            return
        self.notify(f"Revoked {grant_id}: what is bound to it is refused from its next request")
        self.load()  # the confirmation closed before the revocation was done

    # ------------------------------------------------------------ handlers (paint)

    def on_grants_screen_loaded(self, message: Loaded) -> None:
        listing = self.query_one(OptionList)
        kept = listing.highlighted_option.id if listing.highlighted_option else None
        listing.clear_options()
        self._pending = message.pending
        now = time.time()
        for request in message.pending:
            prompt = Text.assemble(("waiting", "bold reverse"), f" {request.id}  ",
                                   describe(request))
            prompt.append(f" {rounded(request.expires - now)} left · Enter answers")
            listing.add_option(Option(prompt, id=request.id))
        for grant, last in message.grants:
            listing.add_option(Option(grant_text(grant, last, now), id=grant.id))
        ids = [r.id for r in message.pending] + [g.id for g, _ in message.grants]
        if ids:
            listing.highlighted = ids.index(kept) if kept in ids else 0
        count = f"{len(message.grants)} grant{'' if len(message.grants) == 1 else 's'}"
        self.query_one("#grants-note", Label).update(
            f"{count}{', ended ones too' if self.show_all else ' in force'}" if ids else
            "No grants in force. Press n to lend access to a session or a sandbox uid.")
        listing.focus()

    def changed(self) -> None:
        """A grant changed or a request came (the app forwards the agent's events)."""
        self.load()

    # ------------------------------------------------------------ actions

    def _chosen(self) -> str | None:
        option = self.query_one(OptionList).highlighted_option
        return option.id if option is not None else None

    def action_new(self) -> None:
        def made(grant: Grant | None) -> None:
            if grant is not None:
                where = f"; uid {grant.uid} reaches it on {grant.socket}" if grant.socket else ""
                self.notify(f"Made {grant.id}{where}")
        self.app.push_screen(GrantFormScreen(), made)

    def action_revoke(self) -> None:
        chosen = self._chosen()
        if chosen is None or not chosen.startswith("g_"):
            self.notify("Highlight a grant to revoke", severity="warning")
            return
        confirm(self.app, f"Revoke {chosen}, and every grant made inside it? What is bound to "
                "it is refused from its next request.", "Revoke", lambda: self.revoke(chosen))

    def action_all(self) -> None:
        self.show_all = not self.show_all
        self.load()

    @on(OptionList.OptionSelected)
    def answer(self, event: OptionList.OptionSelected) -> None:
        """Enter on a waiting request opens it, to answer with one key."""
        rid = event.option.id
        request = next((r for r in self._pending if r.id == rid), None)
        if request is not None:
            self.app.push_screen(AccessRequestScreen(request))

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
