"""Accept connections, check the peer, read frames, answer them; with every resource bounded.

- The peer's uid is asked of the kernel right after accept(), before the socket
  is handed to asyncio: a stranger's bytes are never read, only counted and audited.
- A frame has `read_timeout` to arrive once its first byte has; a new connection
  has as long to send its first frame. A greeted connection may idle between frames.
- At `max_connections`, the connection that has waited longest in a partial or
  first frame is dropped to make room; with none such, the newcomer is refused.
- Replies are written and drained before the next request is read, so a client
  that never reads holds at most one reply; one that stops draining for
  `read_timeout` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from credd import protocol as p

from . import events
from .dispatch import dispatch, frame_error, oversized_reply
from .listener import Listener
from .peer import Peer, credentials, is_allowed
from .state import AgentState

log = logging.getLogger("credd.agent")


class Connection:
    def __init__(self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.greeted = False
        self.subscription: events.Subscription | None = None
        self.waiting_since: float | None = time.monotonic()  # None: idle between frames, or busy
        self.task = asyncio.current_task()

    def abort(self) -> None:
        self.writer.transport.abort()


class Server:
    def __init__(self, state: AgentState, listener: Listener) -> None:
        self.state = state
        self.listener = listener
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        """Serve until the state asks to stop, then close every connection."""
        background = [asyncio.create_task(self._accept_loop()),
                      asyncio.create_task(self.state.watchdog())]
        await self.state.stopping.wait()
        for task in background:
            task.cancel()
        self.listener.sock.close()
        await self._farewell()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*background, *self._tasks, return_exceptions=True)

    async def _farewell(self, grace: float = 1.0) -> None:
        """Lock, and let subscribers receive the `locked` event before they are closed."""
        self.state.lock("shutdown")
        self.state.events.close_all()
        streams = [c.task for c in self.connections if c.subscription is not None and c.task]
        if streams:
            await asyncio.wait(streams, timeout=grace)

    # ------------------------------------------------------------ accepting

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self.listener.sock)
            except OSError as exc:  # EMFILE and friends: back off, keep serving the rest
                log.warning("accept failed: %s", exc.strerror or exc)
                await asyncio.sleep(0.1)
                continue
            peer = self._admit(sock)
            if peer is None:
                continue
            task = asyncio.create_task(self._serve(sock, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _admit(self, sock: socket.socket) -> Peer | None:
        try:
            peer = credentials(sock)
        except OSError as exc:
            sock.close()
            self._rejected(None, f"credentials unavailable ({exc.strerror or exc})")
            return None
        if not is_allowed(peer):
            sock.close()
            self._rejected(peer, f"uid {peer.uid}")
            return None
        if len(self.connections) >= self.state.config.max_connections and not self._evict():
            sock.close()
            log.warning("connection refused: %d connections are busy", len(self.connections))
            return None
        return peer

    def _rejected(self, peer: Peer | None, why: str) -> None:
        """Log and audit (the audit trail is the count) a peer that was never read from."""
        pid = peer.pid if peer else None
        log.warning("refused a connection from %s (pid %s, %s)", why, pid,
                    (peer.exe if peer else "") or "unknown program")
        self.state.audit.try_record("peer_rejected", "denied", peer=peer)

    def _evict(self) -> bool:
        waiting = [c for c in self.connections if c.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since)
        self.connections.discard(oldest)
        oldest.abort()
        return True

    # ------------------------------------------------------------ one connection

    async def _serve(self, sock: socket.socket, peer: Peer) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except OSError:
            sock.close()
            return
        conn = Connection(peer, reader, writer)
        self.connections.add(conn)
        try:
            while True:
                body = await self._read_frame(conn)
                if body is None:
                    return
                if not await self._send(conn, await dispatch(self.state, conn, body)):
                    return
                if conn.subscription is not None:
                    await events.stream(conn.subscription, reader, lambda f: self._write(conn, f))
                    return
        except p.FrameError as exc:  # oversized: the stream cannot be resynchronised
            await self._send(conn, frame_error(exc))
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception as exc:  # a bug: drop this connection, keep serving the others
            log.error("connection failed: internal error %s", type(exc).__name__)
        finally:
            self.connections.discard(conn)
            if conn.subscription is not None:
                self.state.events.unsubscribe(conn.subscription)
            writer.close()

    async def _read_frame(self, conn: Connection) -> bytes | None:
        """One frame body (b"" for an empty frame), or None at a clean EOF."""
        timeout = self.state.config.read_timeout
        if not conn.greeted:  # a stranger to the protocol: evictable, and on a clock
            conn.waiting_since = conn.waiting_since or time.monotonic()
        async with asyncio.timeout(None if conn.greeted else timeout):
            first = await conn.reader.read(1)
        if not first:
            return None
        conn.waiting_since = conn.waiting_since or time.monotonic()
        async with asyncio.timeout(timeout):
            header = first + await conn.reader.readexactly(3)
            (length,) = p.HEADER.unpack(header)
            body = await conn.reader.readexactly(p.body_length(header)) if length else b""
        conn.waiting_since = None
        return body

    async def _send(self, conn: Connection, response: p.Response) -> bool:
        try:
            frame = p.encode(response)
        except p.FrameError:
            frame = p.encode(oversized_reply())
        try:
            await self._write(conn, frame)
        except (TimeoutError, ConnectionError):
            conn.abort()
            return False
        return True

    async def _write(self, conn: Connection, frame: bytes) -> None:
        conn.writer.write(frame)
        async with asyncio.timeout(self.state.config.read_timeout):
            await conn.writer.drain()
