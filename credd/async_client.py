"""The asyncio twin of `credd.client` for credtui: the same calls, as coroutines.

A separate module because importing asyncio costs ~38 ms, which the `credd get`
fast path must not pay. The typed methods are `credd.client_calls`' and the
protocol `credd.client_core`'s, shared with the sync client; the connect (with
its uid check of the agent) and the framing are `credd.wire`'s. This module
only moves bytes over asyncio streams. Calls on one connection are serialized
by a lock, so concurrent workers never read each other's replies; `events()`
uses its own subscribed connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from credd import protocol as p
from credd.client_calls import Calls, whole
from credd.client_core import Core, hello, welcomed
from credd.paths import socket_path as _default_socket
from credd.wire import RECV_SIZE, connect, lost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from typing import TypeVar

    from credd.client_core import Event, Plan, Read, Step

    A = TypeVar("A")
    R = TypeVar("R")
    T = TypeVar("T")


class _Connection:
    """One framed stream to the agent, already past the hello."""

    welcome: p.Welcome

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float | None) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout  # per read; None while waiting for events
        self.core = Core()

    @classmethod
    async def open(cls, path: str, client_name: str, timeout: float) -> _Connection:
        # the sync connect checks the agent's uid before a byte is sent; a Unix
        # connect does not block, so borrowing it costs the event loop nothing
        sock = connect(path, timeout)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=p.MAX_FRAME + 4)
        conn = cls(reader, writer, timeout)
        try:
            conn.welcome = welcomed(await conn.roundtrip(hello(client_name)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def roundtrip(self, request: p.Asks[R]) -> R:
        """Send one request, read its reply (of the type it names; an error raised)."""
        await self.send(request)
        reply: R = await self.read("reply")
        return reply

    async def drive(self, plan: Plan[T]) -> T:
        """Run a plan: send the requests it yields, read what it asks for, return its
        result."""
        step: Step = next(plan)
        while True:
            if isinstance(step, str):
                reply = await self.read(step)
            else:
                await self.send(step)
                reply = None
            try:
                step = plan.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result

    async def send(self, request: p.Asks[Any]) -> None:
        self.writer.write(self.core.encode(request))
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except OSError as exc:  # TimeoutError included
            raise lost(exc) from None

    async def read(self, what: Read) -> Any:
        frames = self.core.frames
        while (body := frames.next_body()) is None:
            try:
                async with asyncio.timeout(self.timeout):
                    data = await self.reader.read(RECV_SIZE)
            except OSError as exc:  # TimeoutError included
                raise lost(exc) from None
            if not data:
                raise lost()
            frames.feed(data)
        return self.core.take(body, what)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass


class AsyncClient(Calls):
    """Talks to the agent over its Unix socket; connects lazily, reconnects after a drop."""

    def __init__(self, socket_path: str | None = None, *, client_name: str = "credtui",
                 timeout: float = 30.0) -> None:
        self.socket_path = socket_path or _default_socket()
        self.client_name = client_name
        self.timeout = timeout
        self.welcome: p.Welcome | None = None
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = await _Connection.open(self.socket_path, self.client_name, self.timeout)
            self.welcome = self._conn.welcome
        return self._conn

    async def _ask(self, request: p.Asks[R],  # type: ignore[override]
                   keep: Callable[[R], T]) -> T:
        """`Client._ask`, as a coroutine (Calls is typed by the blocking view)."""
        return keep(await self._use(_Connection.roundtrip, request))

    async def _drive(self, plan: Plan[T]) -> T:  # type: ignore[override]
        return await self._use(_Connection.drive, plan)

    async def _use(self, talk: Callable[[_Connection, A], Awaitable[T]], arg: A) -> T:
        """`talk(connection, arg)`, one at a time (see `Client._use`)."""
        async with self._lock:
            conn = await self._connection()
            try:
                result = await talk(conn, arg)
            except BaseException as exc:
                if not conn.core.reusable(exc):
                    await self.close()
                raise
            if conn.core.ended:
                await self.close()
            return result

    async def call(self, request: p.Asks[R]) -> R:
        """Send one request, return its reply, of the type the request names
        (`protocol.REPLY`); an `error` reply is raised as its exception."""
        return await self._ask(request, whole)

    async def hello(self) -> p.Welcome:
        async with self._lock:
            return (await self._connection()).welcome

    async def events(self) -> AsyncIterator[Event]:
        """Agent events, on a connection of their own, until the agent goes away
        (AgentUnavailable)."""
        conn = await _Connection.open(self.socket_path, self.client_name, self.timeout)
        try:
            await conn.roundtrip(p.Subscribe())
            conn.timeout = None
            while True:
                yield await conn.read("event")
        finally:
            await conn.close()
