"""From a frame body to a response: decode strictly, route by type, map errors.

This is the only place where exceptions become `error` responses. A body that
does not decode gets `bad_request` and changes nothing; an unexpected
exception is logged by type and place only (its message could quote data)
and answered `internal`.

It is also the one place that decides where a read runs: on the event loop,
unless it touches a remote mount (one that may wait on a network), in which
case the same handler runs on a reader thread (`_REMOTE_READS`); and where a
connection bound to grants is held to them: `gate.check` runs before the
handler (what the grants allow, whether they are still in force, approvals and
counted uses), and handlers see only the names the grants cover (scope.py).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any, cast

from credd import protocol as p
from credd.errors import BadRequest, CreddError, LockedError

from . import backup_handlers as bh
from . import gate, inject_handler, run_handler
from . import grant_handlers as g
from . import handlers as h
from . import lifecycle_handlers as lh
from . import migrate_handlers as mh
from . import token_handlers as th
from .router import Router
from .state import AgentState

log = logging.getLogger("credd.agent")

#: Requests that do not count as using the vault: they never slide the idle deadline.
_NOT_ACTIVITY = frozenset({p.Hello, p.Status, p.Init, p.Unlock, p.Lock, p.Subscribe, p.Stop})


def frame_error(exc: p.FrameError) -> p.Error:
    """The answer to a frame that cannot be read (the server closes the connection after it)."""
    return p.Error(code="bad_request", message=str(exc))


def oversized_reply() -> p.Error:
    return p.Error(code="internal", message="the reply exceeds the frame limit")


def dispatch(state: AgentState, conn: Any, body: bytes
             ) -> p.Response | Coroutine[Any, Any, p.Response]:
    """The reply to one frame body; a coroutine of it when the handler waits (on the writer
    thread), so the many requests that do not are answered without a task."""
    try:
        req = p.decode_request(body)
    except p.FrameError as exc:
        return p.Error(code="bad_request", message=f"undecodable request: {exc}")
    try:
        if not conn.greeted and type(req) is not p.Hello:
            raise BadRequest("the first request on a connection must be hello")
        state.check_deadlines()
        handler = ROUTES.get(type(req))
        if handler is None:
            raise BadRequest(f"unsupported request {p.tag_of(type(req))!r}")
        if conn.binding.grant is not None:
            waiting = gate.check(state, conn, req)
            if waiting is not None:
                return _finish(state, req, _after(waiting, handler, state, conn, req))
        if _remote(state, req):
            return _finish(state, req, _on_reader(state, handler, conn, req))
        response = handler(state, conn, req)
    except Exception as exc:
        return _error_reply(exc, req)
    if type(response) is CoroutineType:
        return _finish(state, req, response)
    if type(req) not in _NOT_ACTIVITY:
        state.touch()
    return response


async def _finish(state: AgentState, req: p.Request, pending: Coroutine) -> p.Response:
    try:
        response = await pending
    except Exception as exc:
        return _error_reply(exc, req)
    if type(req) not in _NOT_ACTIVITY:
        state.touch()
    return response


#: Reads that may touch a mount, and the names (or list prefixes: True) each touches.
_REMOTE_READS: dict[type, Callable[[Any], tuple[list[str], bool]]] = {
    p.Get: lambda r: ([r.name], False), p.Reveal: lambda r: ([r.name], False),
    p.Describe: lambda r: ([r.name], False), p.History: lambda r: ([r.name], False),
    p.GetMany: lambda r: (r.refs, False), p.List: lambda r: ([r.prefix], True),
    p.Trash: lambda r: ([""], True), p.Inspect: lambda r: ([r.name], False),
    p.Fingerprint: lambda r: ([r.name], False),
}


def _remote(state: AgentState, req: p.Request) -> bool:
    """Whether `req` reads from a mount that may wait on its network."""
    names_of = _REMOTE_READS.get(type(req))
    if names_of is None:
        return False
    try:
        router = state.store()  # on the loop: a changed mount table is loaded here
    except CreddError:
        return False  # locked or no vault: the handler says so, on the loop
    if not isinstance(router, Router) or not router.remote_mounts:
        return False
    names, prefix = names_of(req)
    return any(router.remote(name, prefix=prefix) for name in names)


async def _on_reader(state: AgentState, handler: Callable[[AgentState, Any, Any], Any],
                     conn: Any, req: p.Request) -> p.Response:
    """The handler on a reader thread. A lock landing meanwhile wins: whatever the thread
    found (a value, or an error from a mount closed under it) is not sent."""
    epoch = state.epoch
    try:
        response: p.Response = await state.read(handler, state, conn, req)
    except Exception:
        if state.epoch == epoch:
            raise
    if state.epoch != epoch:
        state.pages.clear()  # a list page the thread cached after the lock had cleared them
        raise LockedError("the vault was locked while this request was being answered")
    return response


async def _after(waiting: Coroutine[Any, Any, None], handler: Callable[..., Any],
                 state: AgentState, conn: Any, req: p.Request) -> p.Response:
    """The handler's reply once what the gate waits for (an approval, a use) is done."""
    await waiting
    if _remote(state, req):
        return await _on_reader(state, handler, conn, req)
    response = handler(state, conn, req)
    if type(response) is CoroutineType:
        response = await response
    return response


def _error_reply(exc: Exception, req: p.Request) -> p.Error:
    if isinstance(exc, CreddError):
        return p.Error(code=cast("p.ErrorCode", exc.code), message=exc.message,
                       names=exc.names, retry_after=exc.retry_after)
    where = traceback.extract_tb(exc.__traceback__)[-1]  # a bug: say where, never what the data was
    log.error("internal error %s at %s:%s handling %s", type(exc).__name__,
              where.filename, where.lineno, p.tag_of(type(req)))
    return p.Error(code="internal", message=f"internal error ({type(exc).__name__}) "
                                            "in the agent; see its log")


#: One handler per request type; handlers that wait are coroutine functions.
ROUTES: dict[type, Callable[[AgentState, Any, Any], Any]] = {
    p.Hello: h.hello, p.Status: h.status, p.Init: h.init, p.Unlock: h.unlock, p.Lock: h.lock,
    p.ChangePassphrase: h.change_passphrase, p.Get: h.get, p.GetMany: h.get_many,
    p.Reveal: h.reveal, p.Describe: h.describe, p.Set: lh.set_, p.Delete: h.delete,
    p.Undelete: h.undelete, p.Purge: h.purge, p.Move: h.move, p.List: h.list_,
    p.Trash: h.trash, p.History: h.history, p.Restore: h.restore,
    p.AddKeySlot: h.add_key_slot, p.RemoveKeySlot: h.remove_key_slot, p.Slots: h.slots,
    p.Audit: h.audit, p.AuditWho: h.audit_who, p.AuditVerify: h.audit_verify, p.Check: h.check,
    p.Rekey: h.rekey, p.Subscribe: h.subscribe, p.Stop: h.stop,
    p.VerifyBackup: bh.verify_backup, p.RestoreBackup: bh.restore_backup,
    p.TokenCreate: th.token_create, p.TokenList: th.token_list, p.TokenRevoke: th.token_revoke,
    p.Due: lh.due, p.Fingerprint: lh.fingerprint, p.Inspect: lh.inspect, p.Policy: lh.policy,
    p.Rotate: lh.rotate, p.RotateFinish: lh.rotate_finish, p.RotateAbandon: lh.rotate_abandon,
    p.GetPending: lh.get_pending, p.RecordVerification: lh.record_verification,
    p.Incident: lh.incident,
    p.Migrate: mh.migrate,
    p.GrantCreate: g.grant_create, p.GrantList: g.grant_list, p.GrantRevoke: g.grant_revoke,
    p.GrantAnswer: g.grant_answer, p.SessionOpen: g.session_open,
    p.SessionClose: g.session_close,
    p.Run: run_handler.run, p.Inject: inject_handler.inject,
}
