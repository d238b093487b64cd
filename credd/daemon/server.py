"""Accept connections, check the peer, read frames, answer them; with every resource bounded.

- The peer's uid is asked of the kernel right after accept(), before the socket
  is handed to asyncio: a stranger's bytes are never read, only counted and audited.
- A connection is an asyncio.Protocol: frames are cut from its buffer as bytes
  arrive, and a request that needs no other thread is answered in that same
  callback (no task, no stream reader). Requests are answered one at a time, in
  order, pipelined or not: while one runs on the writer thread, reading pauses.
- A frame has `read_timeout` to arrive once its first byte has; a new connection
  has as long to send its first frame. A greeted connection may idle between frames.
  One timer per connection enforces every deadline: moving a deadline is an
  assignment, and the timer re-arms itself when it fires before the deadline.
- At `max_connections`, the connection that has waited longest in a partial or
  first frame is dropped to make room; with none such, the newcomer is refused.
- A reply the client does not take (the transport's buffer passes its
  high-water mark) stops the reading of requests until it drains, so a client
  that never reads holds at most one reply; one that stops draining for
  `read_timeout` is dropped.
- A request may take its connection over (`subscribe`, and those that receive
  descriptors): from then on what the client sends goes to that request
  (`_inbox`), not to dispatch. Descriptors first: asyncio reads with recv(2),
  which would drop them, so reading pauses, the agent answers `ready`, and the
  one byte carrying them is read with recvmsg on a duplicate of the socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, cast

from credd import protocol as p
from credd.errors import BadRequest

from . import events, grant_handlers
from .binding import OWNER, Binding, NotAdmitted, Refused
from .dispatch import dispatch, frame_error, oversized_reply
from .grant_sockets import GrantSockets
from .listener import Listener
from .peer import Peer, credentials, is_allowed
from .state import AgentState

log = logging.getLogger("credd.agent")

ACCEPT_BATCH = 64  # connections taken per wake-up, so a flood cannot starve the clients
Bind = Callable[[Peer], Binding]  # admits a peer (or raises binding.NotAdmitted) and binds it


class Connection(asyncio.Protocol):
    """One client: its buffer, its greeting, its one timer; `dispatch` sees it as `conn`."""

    transport: asyncio.Transport  # from connection_made on, before the server sees it

    def __init__(self, server: Server, peer: Peer, binding: Binding = OWNER) -> None:
        self.server = server
        self.state = server.state
        self.peer = peer
        self.binding = binding  # decided at accept (binding.py); never changed after
        self.sessions: set[str] = set()  # sessions opened here: they end with the connection
        self.greeted = False
        self.subscription: events.Subscription | None = None
        self.task: asyncio.Task[None] | None = None  # a request on the writer thread, or the stream
        self.waiting_since: float | None = None  # set while in a partial or first frame
        self._loop = asyncio.get_running_loop()
        self._timeout = server.state.config.read_timeout
        self._buf = bytearray()
        self._busy = False    # a request runs on the writer thread
        self._paused = False  # the client is not taking its replies
        self._eof = False
        self._taken = False   # a request took the connection over: it closes after its reply
        self._inbox: asyncio.StreamReader | None = None  # what the client sends to that request
        self._drained: asyncio.Future[None] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream socket's
        self.server.connections.add(self)
        self._settle()

    def data_received(self, data: bytes) -> None:
        if self._inbox is not None:
            self._inbox.feed_data(data)
            return
        self._buf += data
        self._pump()

    def eof_received(self) -> bool:
        """Requests already received are still answered; then the connection closes."""
        if self._inbox is not None:
            self._inbox.feed_eof()
        else:
            self._eof = True
            self._settle()
        return True

    def pause_writing(self) -> None:
        self._paused = True
        self.transport.pause_reading()
        self.waiting_since = None
        self._set_deadline(self._loop.time() + self._timeout)

    def resume_writing(self) -> None:
        self._paused = False
        self._deadline = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        grant_handlers.connection_closed(self.state, self)
        if self.subscription is not None:
            self.state.events.unsubscribe(self.subscription)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())
        if self._inbox is not None:
            self._inbox.feed_eof()

    def abort(self) -> None:
        self.transport.abort()

    # ------------------------------------------------------------ requests

    def _pump(self) -> None:
        """Answer every whole frame in the buffer, unless blocked; then set the deadline."""
        buf = self._buf
        try:
            while not (self._busy or self._paused or self.subscription is not None):
                if len(buf) < 4:
                    break
                (length,) = p.HEADER.unpack_from(buf)
                if length > p.MAX_FRAME:  # the stream cannot be resynchronised
                    p.body_length(bytes(buf[:4]))  # raises the FrameError that says so
                end = 4 + length
                if len(buf) < end:
                    break
                body = bytes(buf[4:end])
                del buf[:end]
                self.waiting_since = None
                self._answer(body)
        except p.FrameError as exc:
            self._reply(frame_error(exc))
            self.transport.close()
            return
        except Exception as exc:  # a bug: drop this connection, keep serving the others
            log.error("connection failed: internal error %s", type(exc).__name__)
            self.transport.abort()
            return
        self._settle()

    def _answer(self, body: bytes) -> None:
        reply = dispatch(self.state, self, body)
        if type(reply) is not CoroutineType:  # not isinstance: this is every request's path
            self._reply(cast(p.Response, reply))
            if self.subscription is not None:
                self._stream()
            return
        self._busy = True
        self.transport.pause_reading()
        self.task = self.server.spawn(self._later(cast(Awaitable[p.Response], reply)))

    async def _later(self, pending: Awaitable[p.Response]) -> None:
        try:
            reply = await pending
        finally:
            self._busy = False
        self._reply(reply)
        if self._taken:
            self.transport.close()
            return
        self._resume()

    def _reply(self, response: p.Response) -> None:
        try:
            frame = p.encode(response)
        except p.FrameError:
            frame = p.encode(oversized_reply())
        if not self.transport.is_closing():
            self.transport.write(frame)

    def _resume(self) -> None:
        if self._busy or self._paused or self.subscription is not None:
            return
        if self.transport.is_closing():
            return
        self.transport.resume_reading()
        self._pump()

    def _settle(self) -> None:
        """Between requests: close after EOF, or time the frame the client owes us."""
        if self._paused:
            return  # the write deadline runs
        if self._busy or self.subscription is not None:
            self.waiting_since = self._deadline = None
        elif self._eof:
            self.transport.close()
        elif self._buf or not self.greeted:  # a partial frame, or a stranger: evictable
            if self.waiting_since is None:
                self.waiting_since = self._loop.time()
            self._set_deadline(self.waiting_since + self._timeout)
        else:
            self.waiting_since = self._deadline = None

    # ------------------------------------------------------------ the one timer

    def _set_deadline(self, when: float) -> None:
        self._deadline = when
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        when = self._deadline
        if when is None or self.transport.is_closing():
            return
        if self._loop.time() < when:  # moved since the timer was set
            self._timer = self._loop.call_at(when, self._expire)
            return
        self.transport.abort()

    # ------------------------------------------------------------ events

    def _stream(self) -> None:
        """After `subscribe`: forward events until the client sends anything or closes."""
        self._inbox = asyncio.StreamReader()
        if self._buf:
            self._inbox.feed_data(bytes(self._buf))
            self._buf.clear()
        if self._eof:
            self._inbox.feed_eof()
        self.task = self.server.spawn(self._forward())

    async def _forward(self) -> None:
        assert self.subscription is not None and self._inbox is not None  # set by _stream
        try:
            await events.stream(self.subscription, self._inbox, self._send)
        except ConnectionError:
            pass
        finally:
            self.transport.close()

    # ------------------------------------------------------------ taken over (descriptors)

    async def take_over(self, ready: p.Response, count: int) -> tuple[list[int],
                                                                      asyncio.StreamReader]:
        """For the request now running (its reading is paused): answer `ready`, receive the
        `count` descriptors the client sends next on one byte, and from then on give what
        it sends to the reader returned. The connection closes after the request's reply."""
        if self._buf or self._eof:
            raise BadRequest("nothing may follow this request before the agent answers it")
        self._taken = True
        self._reply(ready)
        fds = await asyncio.wait_for(self._receive_fds(count), self._timeout)
        self._inbox = asyncio.StreamReader()
        self.transport.resume_reading()
        return fds, self._inbox

    async def _receive_fds(self, count: int) -> list[int]:
        """One byte and exactly `count` descriptors, read with recvmsg on a duplicate of the
        socket (the loop forbids a reader on the transport's own descriptor)."""
        own = self.transport.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(own.fileno()))
        sock.setblocking(False)
        arrived: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_reader(sock.fileno(), _wake, arrived)
        try:
            await arrived
            data, ancillary, flags, _ = sock.recvmsg(1, socket.CMSG_SPACE(count * 4),
                                                     socket.MSG_CMSG_CLOEXEC)
        finally:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        fds = _rights(ancillary)
        if not data or len(fds) != count or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise BadRequest(f"expected one byte carrying {count} descriptors (SCM_RIGHTS)")
        return fds

    async def _send(self, frame: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError()
        self.transport.write(frame)
        if self._paused:  # the timer drops the connection if this never comes
            self._drained = self._loop.create_future()
            await self._drained


def _wake(arrived: asyncio.Future[None]) -> None:
    if not arrived.done():
        arrived.set_result(None)


def _rights(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in recvmsg's ancillary data."""
    return [int.from_bytes(data[i:i + 4], sys.byteorder)
            for level, kind, data in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
            for i in range(0, len(data) - len(data) % 4, 4)]


class Server:
    def __init__(self, state: AgentState, listener: Listener) -> None:
        self.state = state
        self.listener = listener
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.grant_sockets = GrantSockets(self)  # sandbox grants' own listeners
        state.grants.watch(self.grant_sockets.sync)
        state.grants.on_expired(lambda grants: grant_handlers.expired(state, grants))
        self._retries: dict[int, asyncio.TimerHandle] = {}  # accepting again after EMFILE

    async def run(self) -> None:
        """Serve until the state asks to stop, then close every connection.

        The listening socket stays open (not accepting: connections wait in its
        backlog) until the agent has closed the vault, so `credd stop`, which waits
        for the socket to stop answering, returns once the agent is really done.
        """
        self._accepting(True)
        watchdog = asyncio.create_task(self.state.watchdog())
        try:
            await self.state.stopping.wait()
        finally:
            self._accepting(False)
            self.grant_sockets.close_all()
        watchdog.cancel()
        await self._farewell()
        for conn in list(self.connections):
            conn.transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(watchdog, *self._tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A connection's task, kept (and cancelled at shutdown) by the server."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _farewell(self, grace: float = 1.0) -> None:
        """Lock, and let subscribers receive the `locked` event before they are closed."""
        self.state.lock("shutdown")
        self.state.events.close_all()
        streams = [c.task for c in self.connections if c.subscription is not None and c.task]
        if streams:
            await asyncio.wait(streams, timeout=grace)

    # ------------------------------------------------------------ accepting

    def _accepting(self, on: bool) -> None:
        """Watch the main listener for connections, or stop at once.

        A reader callback, not a task awaiting `sock_accept`: cancelling that task
        while its accept callback was already queued (a client connecting as `stop`
        is answered) ran the callback on a cancelled future, or on the closed
        socket, and logged an InvalidStateError traceback. `remove_reader` drops a
        queued callback too, so after it nothing touches the socket.
        """
        if on:
            self.listen(self.listener.sock, self._bind)
        else:
            self.unlisten(self.listener.sock)

    def listen(self, listening: socket.socket, bind: Bind) -> None:
        """Accept on `listening`, each peer admitted and bound by `bind` (which raises
        NotAdmitted): the main socket's, or a sandbox grant's (grant_sockets.py)."""
        asyncio.get_running_loop().add_reader(listening.fileno(), self._accept, listening, bind)

    def unlisten(self, listening: socket.socket) -> None:
        retry = self._retries.pop(listening.fileno(), None)
        if retry is not None:
            retry.cancel()
        asyncio.get_running_loop().remove_reader(listening.fileno())

    def _accept(self, listening: socket.socket, bind: Bind) -> None:
        """Take every waiting connection (a bounded batch); check each peer before any read."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: back off, keep serving the rest
                log.warning("accept failed: %s", exc.strerror or exc)
                self.unlisten(listening)
                self._retries[listening.fileno()] = asyncio.get_running_loop().call_later(
                    0.1, self.listen, listening, bind)
                return
            admitted = self._admit(sock, bind)
            if admitted is not None:
                self.spawn(self._connect(sock, *admitted))

    async def _connect(self, sock: socket.socket, peer: Peer, binding: Binding) -> None:
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: Connection(self, peer, binding), sock)
        except OSError:
            sock.close()

    def _bind(self, peer: Peer) -> Binding:
        """The main socket's peers: the owner's uid only, bound by the sessions they run
        inside (binding.py); one whose ancestry cannot be read while sessions exist is
        refused (fail closed)."""
        if not is_allowed(peer):
            raise NotAdmitted(f"uid {peer.uid}")
        return self.state.sessions.binding_for(peer.pid)

    def _admit(self, sock: socket.socket, bind: Bind | None = None
               ) -> tuple[Peer, Binding] | None:
        try:
            peer = credentials(sock)
        except OSError as exc:
            sock.close()
            self._rejected(None, f"credentials unavailable ({exc.strerror or exc})")
            return None
        try:
            binding = (bind or self._bind)(peer)
        except NotAdmitted as exc:
            sock.close()
            self._rejected(peer, str(exc))
            return None
        if len(self.connections) >= self.state.config.max_connections and not self._evict():
            sock.close()
            log.warning("connection refused: %d connections are busy", len(self.connections))
            return None
        return peer, binding

    def _rejected(self, peer: Peer | None, why: str) -> None:
        """Log and audit (the audit trail is the count) a peer that was never read from."""
        pid = peer.pid if peer else None
        log.warning("refused a connection from %s (pid %s, %s)", why, pid,
                    (peer.exe if peer else "") or "unknown program")
        self.state.audit.try_record("peer_rejected", "denied", origin=Refused(peer))

    def _evict(self) -> bool:
        waiting = [c for c in self.connections if c.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        self.connections.discard(oldest)
        oldest.abort()
        return True
