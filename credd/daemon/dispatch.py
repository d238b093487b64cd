"""From a frame body to a response: decode strictly, route by type, map errors.

This is the only place where exceptions become `error` responses. A body that
does not decode gets `bad_request` and changes nothing; an unexpected
exception is logged by type and place only (its message could quote data)
and answered `internal`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any

from credd import protocol as p
from credd.errors import BadRequest, CreddError

from . import handlers as h, token_handlers as th
from .state import AgentState

log = logging.getLogger("credd.agent")

#: Requests that do not count as using the vault: they never slide the idle deadline.
_NOT_ACTIVITY = frozenset({p.Hello, p.Status, p.Init, p.Unlock, p.Lock, p.Subscribe, p.Stop})


def frame_error(exc: p.FrameError) -> p.Error:
    """The answer to a frame that cannot be read (the server closes the connection after it)."""
    return p.Error(code="bad_request", message=str(exc))


def oversized_reply() -> p.Error:
    return p.Error(code="internal", message="the reply exceeds the frame limit")


def dispatch(state: AgentState, conn: Any, body: bytes) -> p.Response | Coroutine[Any, Any, p.Response]:
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


def _error_reply(exc: Exception, req: p.Request) -> p.Error:
    if isinstance(exc, CreddError):
        return p.Error(code=exc.code, message=exc.message, names=exc.names,
                       retry_after=exc.retry_after)
    where = traceback.extract_tb(exc.__traceback__)[-1]  # a bug: say where, never what the data was
    log.error("internal error %s at %s:%s handling %s", type(exc).__name__,
              where.filename, where.lineno, p.tag_of(type(req)))
    return p.Error(code="internal", message=f"internal error ({type(exc).__name__}) "
                                            "in the agent; see its log")


#: One handler per request type; handlers that wait are coroutine functions.
ROUTES: dict[type, Callable[[AgentState, Any, Any], Any]] = {
    p.Hello: h.hello, p.Status: h.status, p.Init: h.init, p.Unlock: h.unlock, p.Lock: h.lock,
    p.ChangePassphrase: h.change_passphrase, p.Get: h.get, p.GetMany: h.get_many,
    p.Reveal: h.reveal, p.Describe: h.describe, p.Set: h.set_, p.Delete: h.delete,
    p.Undelete: h.undelete, p.Purge: h.purge, p.Move: h.move, p.List: h.list_,
    p.Trash: h.trash, p.History: h.history, p.Restore: h.restore,
    p.AddKeySlot: h.add_key_slot, p.RemoveKeySlot: h.remove_key_slot, p.Audit: h.audit,
    p.Check: h.check, p.Rekey: h.rekey, p.Subscribe: h.subscribe, p.Stop: h.stop,
    p.TokenCreate: th.token_create, p.TokenList: th.token_list, p.TokenRevoke: th.token_revoke,
}
