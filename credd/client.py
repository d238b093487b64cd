"""The synchronous thin client: one socket to the agent, typed calls.

    with Client() as c:
        token = c.get("github", "token")

The connection opens on the first call and is reused. Before a byte is sent
the agent's uid is checked (a socket planted by someone else never sees a
passphrase), then `hello` is exchanged. The typed methods are
`credd.client_calls`' (shared with the asyncio client), the protocol is
`credd.client_core`'s; this module only moves their bytes over a blocking
socket. Imports only the standard library, msgspec and credd's
protocol/paths/errors/wire (see tests/test_import_hygiene.py); connect, the
uid check and framing are `credd.wire`'s, which `credd get` uses without
msgspec.

A Client is not thread-safe: give each thread its own.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

from credd import protocol
from credd.client_calls import Calls, whole
from credd.client_core import Core, hello, welcomed
from credd.errors import AgentUnavailable
from credd.wire import connect, recv_frame, send_all, send_fds

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import TypeVar

    from credd.client_core import Event, Plan, Read, Step
    from credd.protocol import Asks, Welcome

    A = TypeVar("A")
    R = TypeVar("R")
    T = TypeVar("T")


class _Connection:
    """One socket after a successful hello: moves the core's bytes, nothing else.

    The socket blocks, with its timeout kept by the kernel (SO_RCVTIMEO,
    SO_SNDTIMEO): a Python-level timeout would add a poll() before every send
    and recv.
    """

    def __init__(self, path: str | None, timeout: float | None, client_name: str) -> None:
        self.sock = connect(path, timeout)
        self.core = Core()
        try:
            self.settimeout(timeout)
            self.welcome: Welcome = welcomed(self.roundtrip(hello(client_name)))
        except BaseException:
            self.close()
            raise

    def roundtrip(self, request: Asks[R]) -> R:
        """Send one request, read its reply (of the type it names; an error raised)."""
        core = self.core
        send_all(self.sock, core.encode(request))
        reply: R = core.take(recv_frame(self.sock, core.frames), "reply")  # `read`, inline:
        return reply                                                      # every method's path

    def drive(self, plan: Plan[T]) -> T:
        """Run a plan: send the requests it yields, read what it asks for, return its
        result."""
        step: Step = next(plan)
        while True:
            if isinstance(step, str):
                reply = self.read(step)
            else:
                send_all(self.sock, self.core.encode(step))
                reply = None
            try:
                step = plan.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result

    def hand_over(self, request: Asks[protocol.Ready], fds: list[int], last: type[T]) -> T:
        """A request answered `ready`: send it, pass `fds` on one byte (SCM_RIGHTS), and
        read the frame that ends it (`protocol.LAST`)."""
        self.roundtrip(request)
        send_fds(self.sock, fds)
        return self.core.last(recv_frame(self.sock, self.core.frames), last)

    def read(self, what: Read) -> Any:
        return self.core.take(recv_frame(self.sock, self.core.frames), what)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(None)
        seconds = int(timeout or 0)
        micros = int(((timeout or 0) - seconds) * 1e6) if timeout else 0
        if timeout and not (seconds or micros):
            micros = 1  # zero would mean "wait forever"
        value = _TIMEVAL.pack(seconds, micros)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)

    def close(self) -> None:
        self.sock.close()


_TIMEVAL = struct.Struct("@ll")


class Client(Calls):
    """A connection to the agent with one typed method per request (`Calls`)."""

    def __init__(self, socket_path: str | None = None, *, client_name: str = "credd-python",
                 timeout: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self.client_name = client_name
        self.timeout = timeout
        self._conn: _Connection | None = None

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = _Connection(self.socket_path, self.timeout, self.client_name)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._conn else "not connected"
        return f"Client({self.socket_path!r}, {state})"

    def _ask(self, request: Asks[R], keep: Callable[[R], T]) -> T:
        """One request, what `keep` takes of its reply: the path of every method but
        `list`, kept lean (see credd.client_calls)."""
        return keep(self._use(_Connection.roundtrip, request))

    def _drive(self, plan: Plan[T]) -> T:
        return self._use(_Connection.drive, plan)

    def _use(self, talk: Callable[[_Connection, A], T], arg: A) -> T:
        """`talk(connection, arg)`, on the connection opened if need be. A connection
        the core says is no longer sound is dropped and the next call reconnects;
        nothing is retried, since a request may have run."""
        conn = self._conn or self._connection()
        try:
            result = talk(conn, arg)
        except BaseException as exc:
            if not conn.core.reusable(exc):
                self.close()
            raise
        if conn.core.ended:
            self.close()
        return result

    def call(self, request: Asks[R]) -> R:
        """Send one request, return its reply, of the type the request names
        (`protocol.REPLY`); an `error` reply is raised as its exception."""
        return self._ask(request, whole)

    def hello(self) -> Welcome:
        return self._connection().welcome

    def fileno(self) -> int:
        """The connection's socket (opened if need be), for a caller that must notice the
        agent going away while it waits on something else (`credd session`)."""
        return self._connection().sock.fileno()

    def hand_over(self, request: Asks[protocol.Ready], fds: list[int], last: type[T]) -> T:
        """Send a request that hands descriptors to the agent (`verify_backup`,
        `restore_backup`), on a connection of its own, which the agent closes after the
        frame that ends it, of type `last`."""
        conn = _Connection(self.socket_path, self.timeout, self.client_name)
        try:
            return conn.hand_over(request, fds, last)
        finally:
            conn.close()

    def subscribe(self) -> Iterator[Event]:
        """Events (locked, unlocked, entry_changed) on a connection of their own.

        The subscription is made before this returns (errors surface here);
        the iterator then blocks between events, ends when the agent goes
        away, and closing it closes the connection.
        """
        conn = _Connection(self.socket_path, self.timeout, self.client_name)
        try:
            conn.roundtrip(protocol.Subscribe())
            conn.settimeout(None)
        except BaseException:
            conn.close()
            raise
        return self._events(conn)

    @staticmethod
    def _events(conn: _Connection) -> Iterator[Event]:
        try:
            while True:
                try:
                    event = conn.read("event")
                except AgentUnavailable:
                    return
                yield event
        finally:
            conn.close()
