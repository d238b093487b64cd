"""The one check a bound connection's request passes before its handler runs.

dispatch.py calls `check` for every request of a connection bound to grants
(the owner's skip it: one attribute test). In order:

1. the request type: what the grants' mode allows (grants.py), else `denied`
   with a message that says what to do instead;
2. the grants themselves, as the vault holds them now: revoked or expired
   is `denied` (a binding holds the grant as it was at accept);
3. for a use (a request that could return a value, or `run`): each grant
   that wants confirmation waits for the owner (approvals.py), and each that
   counts uses spends one, written to the vault before the handler runs.

Which names a request may touch is the store's business: handlers see the
store through `scope.Scoped`, so uncovered names are simply not there.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from credd import protocol as p
from credd.errors import Denied
from credd.grants import USES, Grant
from credd.refs import path_of

from .binding import Binding
from .grant_book import save
from .grant_handlers import program_of
from .peer import Peer
from .state import AgentState

_FREE = frozenset({p.Hello, p.Status})  # asked of a grant that ended too: they say so


class Bound(Protocol):
    peer: Peer
    binding: Binding


def check(state: AgentState, conn: Bound, req: p.Request) -> Coroutine[Any, Any, None] | None:
    """Raise Denied for what the binding does not allow; a coroutine to await first when
    the request must wait (the owner's approval, a use written to the vault)."""
    policy = conn.binding.policy
    kind = type(req)
    if not policy.allows(kind):
        _refused(state, conn, req)
        raise Denied(policy.refusal(kind))
    if kind in _FREE or not state.unlocked:
        return None  # locked: the handler says so, and no grant is known to check
    try:
        grants = state.grants.current(conn.binding.grants)
    except Denied:
        _refused(state, conn, req)
        raise
    if p.tag_of(kind) not in USES or not _covered(conn.binding, req):
        return None
    if not any(g.confirm or g.uses is not None for g in grants):
        return None
    return _use(state, conn, req, grants)


async def _use(state: AgentState, conn: Bound, req: p.Request, grants: list[Grant]) -> None:
    """Wait for the owner where a grant says `confirm`; then count the use, durably."""
    if any(g.confirm for g in grants):
        try:
            await state.approvals.ask(grants[0].id, p.tag_of(type(req)), _names(req),
                                      program_of(conn.peer), conn.peer.pid)
        except Denied:
            _refused(state, conn, req)
            raise
        grants = state.grants.current(conn.binding.grants)  # revoked while it waited?
    used = state.grants.spend(grants)
    if used:
        await state.write(save, state.records(), used)


def _covered(binding: Binding, req: p.Request) -> bool:
    """False for a request whose every name or reference the grants do not cover: it is
    answered `not_found` like an absent name, with no use spent and no owner asked."""
    names = _names(req)
    return not names or any(_reachable(binding, name) for name in names)


def _reachable(binding: Binding, ref: str) -> bool:
    """Whether a covered entry can answer `ref`: the whole name, or (credd.refs.locate's
    rule) NAME/FIELD, the field of the entry NAME."""
    path = path_of(ref)
    head, sep, tail = path.rpartition("/")
    return binding.policy.covers(path) or bool(sep and head and tail
                                                and binding.policy.covers(head))


def _names(req: p.Request) -> list[str]:
    """What a use asks for, as the owner is shown it."""
    name = getattr(req, "name", None)
    return [name] if isinstance(name, str) else list(getattr(req, "refs", []))


def _refused(state: AgentState, conn: Bound, req: p.Request) -> None:
    state.audit.try_record(p.tag_of(type(req)), "denied", origin=conn)
