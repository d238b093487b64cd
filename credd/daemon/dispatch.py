"""From a frame body to a response: decode strictly, route with one `match`, map errors.

This is the only place where exceptions become `error` responses. A body that
does not decode gets `bad_request` and changes nothing; an unexpected
exception is logged by type and place only (its message could quote data)
and answered `internal`.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from credd import protocol as p
from credd.errors import BadRequest, CreddError

from . import handlers as h
from .state import AgentState

log = logging.getLogger("credd.agent")

#: Requests that do not count as using the vault: they never slide the idle deadline.
_NOT_ACTIVITY = (p.Hello, p.Status, p.Init, p.Unlock, p.Lock, p.Subscribe, p.Stop)


def frame_error(exc: p.FrameError) -> p.Error:
    """The answer to a frame that cannot be read (the server closes the connection after it)."""
    return p.Error(code="bad_request", message=str(exc))


def oversized_reply() -> p.Error:
    return p.Error(code="internal", message="the reply exceeds the frame limit")


async def dispatch(state: AgentState, conn: Any, body: bytes) -> p.Response:
    try:
        req = p.decode_request(body)
    except p.FrameError as exc:
        return p.Error(code="bad_request", message=f"undecodable request: {exc}")
    try:
        if not conn.greeted and not isinstance(req, p.Hello):
            raise BadRequest("the first request on a connection must be hello")
        state.check_deadlines()
        response = await route(state, conn, req)
    except CreddError as exc:
        return p.Error(code=exc.code, message=exc.message, names=exc.names,
                       retry_after=exc.retry_after)
    except Exception as exc:  # a bug: say where, never what the data was
        where = traceback.extract_tb(exc.__traceback__)[-1]
        log.error("internal error %s at %s:%s handling %s", type(exc).__name__,
                  where.filename, where.lineno, p.tag_of(type(req)))
        return p.Error(code="internal", message=f"internal error ({type(exc).__name__}) "
                                                "in the agent; see its log")
    if not isinstance(req, _NOT_ACTIVITY):
        state.touch()
    return response


async def route(state: AgentState, conn: Any, req: p.Request) -> p.Response:
    match req:
        case p.Hello():
            return await h.hello(state, conn, req)
        case p.Status():
            return await h.status(state, conn, req)
        case p.Init():
            return await h.init(state, conn, req)
        case p.Unlock():
            return await h.unlock(state, conn, req)
        case p.Lock():
            return await h.lock(state, conn, req)
        case p.ChangePassphrase():
            return await h.change_passphrase(state, conn, req)
        case p.Get():
            return await h.get(state, conn, req)
        case p.GetMany():
            return await h.get_many(state, conn, req)
        case p.Reveal():
            return await h.reveal(state, conn, req)
        case p.Describe():
            return await h.describe(state, conn, req)
        case p.Set():
            return await h.set_(state, conn, req)
        case p.Delete():
            return await h.delete(state, conn, req)
        case p.Undelete():
            return await h.undelete(state, conn, req)
        case p.Purge():
            return await h.purge(state, conn, req)
        case p.Move():
            return await h.move(state, conn, req)
        case p.List():
            return await h.list_(state, conn, req)
        case p.Trash():
            return await h.trash(state, conn, req)
        case p.History():
            return await h.history(state, conn, req)
        case p.Restore():
            return await h.restore(state, conn, req)
        case p.AddKeySlot():
            return await h.add_key_slot(state, conn, req)
        case p.RemoveKeySlot():
            return await h.remove_key_slot(state, conn, req)
        case p.Audit():
            return await h.audit(state, conn, req)
        case p.Check():
            return await h.check(state, conn, req)
        case p.Rekey():
            return await h.rekey(state, conn, req)
        case p.Subscribe():
            return await h.subscribe(state, conn, req)
        case p.Stop():
            return await h.stop(state, conn, req)
    raise BadRequest(f"unsupported request {p.tag_of(type(req))!r}")
