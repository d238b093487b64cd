"""Handlers of the grant and session requests (docs/grants.md).

The owner makes, lists and revokes grants and answers access requests. A
bound connection (gate.py let it through) may make only grants that narrow
its own, sees and revokes only its own and those made inside them, and opens
sessions only on grants that narrow its own. A new grant is audited (fail
closed) and written to the vault before it exists; a revocation takes effect
at once, then is written. Subscribers hear of every change.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from credd import protocol as p
from credd.errors import BadRequest, Denied, NotFound
from credd.grants import DEFAULT_TTL, Grant, ended, make_grant, narrowing

from .binding import Binding
from .grant_book import save
from .peer import Peer
from .state import AgentState


class Caller(Protocol):
    peer: Peer
    binding: Binding
    sessions: set[str]  # the sessions this connection opened: they end with it


def program_of(peer: Peer) -> str:
    """The asking program as a person names it (`credd session`, `pytest`), for grants and
    access requests: a label for people, never decided on (peer.py)."""
    return peer.program or "unknown program"


# ---------------------------------------------------------------- grants

async def grant_create(state: AgentState, conn: Caller, req: p.GrantCreate) -> p.GrantReply:
    binding = conn.binding
    ttl, now = req.ttl, time.time()
    if ttl is None and not binding.owner:  # by default, as long as the grants it narrows
        ttl = min(DEFAULT_TTL, *(g.expires - now for g in binding.grants))
    grant = make_grant(req.names, req.mode, ttl, now=now, label=req.label, uses=req.uses,
                       commands=req.commands, confirm=req.confirm, inject=req.inject,
                       uid=req.uid, parent=binding.grant_id or None, owner_uid=os.geteuid(),
                       created_by=f"{program_of(conn.peer)} (pid {conn.peer.pid})")
    if not binding.owner:
        if grant.uid is not None:
            raise Denied("only the owner can open a socket for another uid (`--uid`)")
        _narrows(state, binding, grant, "a grant made inside a grant")
    records = state.records()
    _audit(state, conn, "grant_create", grant.id, strict=True)
    epoch = state.epoch
    await state.write(save, records, [grant])
    if epoch == state.epoch:  # locked meanwhile: the next unlock reads it from the vault
        state.grants.put(grant)
    state.events.publish(p.GrantChanged(grant=grant.id, action="create"))
    return p.GrantReply(grant=state.grants.get(grant.id) or grant)


def grant_list(state: AgentState, conn: Caller, req: p.GrantList) -> p.GrantsReply:
    state.records()  # locked: grants are not known
    grants = state.grants.all() if req.all else state.grants.active()
    if conn.binding.owner:
        return p.GrantsReply(grants=grants, pending=state.approvals.pending())
    family = _family(state, conn.binding)
    return p.GrantsReply(grants=[g for g in grants if g.id in family])


async def grant_revoke(state: AgentState, conn: Caller, req: p.GrantRevoke) -> p.GrantReply:
    records = state.records()
    held = state.grants.get(req.id)
    if held is None or not (conn.binding.owner or req.id in _family(state, conn.binding)):
        raise NotFound(f"no grant {req.id!r}; see `credd grant ls`")
    revoked = state.grants.revoke(req.id)  # in force now, before it is written
    state.approvals.refuse(g.id for g in revoked)
    state.reapers.end({g.id for g in revoked})  # what `run` started under them ends
    for grant in revoked:
        _audit(state, conn, "grant_revoke", grant.id)
        state.events.publish(p.GrantChanged(grant=grant.id, action="revoke"))
    if revoked:
        await state.write(save, records, revoked)
    return p.GrantReply(grant=next((g for g in revoked if g.id == req.id), held))


def grant_answer(state: AgentState, conn: Caller, req: p.GrantAnswer) -> p.Ok:
    request = state.approvals.answer(req.request, req.approve)
    _audit(state, conn, "grant_answer", request.grant, "approved" if req.approve else "denied")
    return p.Ok()


def expired(state: AgentState, grants: list[Grant]) -> None:
    """Grants that just expired: in the audit trail and to subscribers, once each; what
    `run` started under them ends (their subreapers also watch the expiry themselves)."""
    state.reapers.end({g.id for g in grants})
    for grant in grants:
        state.audit.try_record("grant_expire", "ok", subject=grant.id)
        state.events.publish(p.GrantChanged(grant=grant.id, action="expire"))


# ---------------------------------------------------------------- sessions

def session_open(state: AgentState, conn: Caller, req: p.SessionOpen) -> p.SessionReply:
    """The asking process (the kernel's word for the connection's peer) becomes the root of
    a session bound to the grant; it ends with `session_close` or with this connection."""
    state.records()
    grant = state.grants.get(req.grant)
    if grant is None:
        raise NotFound(f"no grant {req.grant!r}; see `credd grant ls`")
    if not conn.binding.owner:
        _narrows(state, conn.binding, grant, "a session inside a grant")
    why = ended(grant, time.time())
    if why:
        raise Denied(f"{why}; ask the owner for a new one (`credd grant create`)")
    if grant.uid is not None:
        raise BadRequest(f"grant {grant.id} is for uid {grant.uid}, through its own socket; "
                         "a session takes a grant made without --uid")
    if conn.peer.pid is None:
        raise Denied("sessions need the kernel to name the peer's process (`credd session` "
                     "runs on Linux)")
    try:
        session = state.sessions.add(conn.peer.pid, Binding(grant=grant))
    except (ProcessLookupError, FileNotFoundError):
        raise Denied("the process asking for the session is gone (`credd session` asks "
                     "for itself)") from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    conn.sessions.add(session)
    _audit(state, conn, "session_open", grant.id)
    return p.SessionReply(session=session, grant=grant)


def session_close(state: AgentState, conn: Caller, req: p.SessionClose) -> p.Ok:
    if req.session not in conn.sessions:
        raise NotFound(f"no session {req.session!r} was opened on this connection")
    _end(state, conn, req.session, "session_close")
    return p.Ok()


def connection_closed(state: AgentState, conn: Caller) -> None:
    """The connection that opened sessions is gone. A session it did not close first lost
    its root (killed: a clean end closes it), so its orphans may live on outside the tree,
    where no walk finds them. Opened by the owner, they would be served as the owner: the
    vault locks. Opened by a bound connection, they are still bound as it was (its own
    session, or its uid's socket), so nothing more is needed, and a sandbox cannot lock
    the owner's vault at will."""
    if not conn.sessions:
        return
    stopping = state.stopping.is_set()  # the agent closes every connection as it stops
    for session in list(conn.sessions):
        _end(state, conn, session, "session_close" if stopping else "session_abandoned")
    if conn.binding.owner and not stopping:
        state.lock("session")


def _end(state: AgentState, conn: Caller, session: str, op: str) -> None:
    binding = state.sessions.get(session)
    state.sessions.remove(session)
    conn.sessions.discard(session)
    _audit(state, conn, op, binding.grant_id if binding else "")


# ---------------------------------------------------------------- helpers

def _narrows(state: AgentState, binding: Binding, grant: Grant, what: str) -> None:
    """Denied, naming how, if `grant` would widen the binding's grants (as they are now)."""
    why = narrowing(state.grants.current(binding.grants), grant)
    if why:
        raise Denied(f"{what} can only narrow it: {why}")


def _family(state: AgentState, binding: Binding) -> set[str]:
    """What a bound connection may see and revoke: its grants and those made inside them."""
    return state.grants.family(g.id for g in binding.grants)


def _audit(state: AgentState, conn: Caller, op: str, grant: str, outcome: str = "ok", *,
           strict: bool = False) -> None:
    """A grant's change in the audit trail; `strict` (fail closed) for what widens access."""
    if strict:
        state.audit.record(op, outcome, origin=conn, subject=grant)
    else:
        state.audit.try_record(op, outcome, origin=conn, subject=grant)
