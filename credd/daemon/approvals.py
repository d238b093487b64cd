"""Access requests: a use of a `confirm` grant waits here for the owner's answer.

The bound request is held (its connection reads nothing more) until the owner
answers with `grant_answer` (`credd grant approve/deny`, the TUI), the request
times out, the grant is revoked, or the vault locks; only an approval lets it
go on. Subscribers (the TUI) hear of each request as it comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from credd import protocol as p
from credd.errors import Denied, NotFound
from credd.grants import new_id

from .events import EventHub


class Approvals:
    """Pending access requests; `timeout` (`credd serve --approval-timeout`, 25 s by
    default: under the clients' 30 s, so the refusal reaches them) bounds each wait."""

    def __init__(self, events: EventHub, timeout: float) -> None:
        self.events = events
        self.timeout = timeout
        self._pending: dict[str, tuple[p.AccessRequest, asyncio.Future[bool]]] = {}

    async def ask(self, grant: str, op: str, names: Iterable[str], program: str,
                  pid: int | None) -> None:
        """Wait for the owner's answer; Denied unless it is yes within the timeout."""
        now = time.time()
        request = p.AccessRequest(id=new_id("r_"), grant=grant, op=op,
                                  names=tuple(names)[:64], program=program, pid=pid, time=now,
                                  expires=now + self.timeout)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = (request, answer)
        self.events.publish(p.AccessRequested(request=request))
        try:
            approved = await asyncio.wait_for(answer, self.timeout)
        except TimeoutError:
            raise Denied(f"the owner did not answer access request {request.id} within "
                         f"{self.timeout:.0f} s (`credd grant approve {request.id}`)") from None
        finally:
            self._pending.pop(request.id, None)
        if not approved:
            raise Denied(f"the owner denied access request `{request.id}`")

    def answer(self, request_id: str, approve: bool) -> p.AccessRequest:
        """Answer a pending request; NotFound when there is none by that id (any more)."""
        held = self._pending.get(request_id)
        if held is None:
            raise NotFound(f"no pending access request {request_id!r} (it may have timed out); "
                           "see `credd grant ls`")
        request, answer = held
        if not answer.done():
            answer.set_result(approve)
        return request

    def pending(self) -> list[p.AccessRequest]:
        return [request for request, _ in self._pending.values()]

    def refuse(self, grants: Iterable[str] | None = None) -> None:
        """Deny what waits on `grants` (all, when None): revoked, or the vault locked."""
        chosen = None if grants is None else set(grants)
        for request, answer in list(self._pending.values()):
            if (chosen is None or request.grant in chosen) and not answer.done():
                answer.set_result(False)
