"""The synchronous thin client: one socket to the agent, typed calls.

    with Client() as c:
        token = c.get("github", "token")

The connection opens on the first call and is reused. Before a byte is sent
the agent's uid is checked (a socket planted by someone else never sees a
passphrase), then `hello` is exchanged. `call()` is the one place where an
`error` response becomes an exception from `credd.errors`; the methods below
are thin typed wrappers. Imports only the standard library, msgspec and
credd's protocol/paths/errors (see tests/test_import_hygiene.py); the socket
layer (connect, uid check, framing) is `credd.wire`'s, which `credd get`
uses without msgspec.

A Client is not thread-safe: give each thread its own.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Iterator, TypeVar, Union

import msgspec

from credd import protocol
from credd.wire import (
    RESTART_HINT, START_HINT, connect, error_from_reply, version_mismatch,
)
from credd.errors import AgentUnavailable, BadRequest, CreddError, ProtocolError
from credd.protocol import (
    AuditRecord, CheckReport, EntryChanged, EntryMeta, HistoryReply, Locked, Revealed,
    StatusReply, Unlocked, Welcome,
)

R = TypeVar("R")
Event = Union[Locked, Unlocked, EntryChanged]

# The agent is authenticated by uid, so replies get msgspec's typed decode
# without the canonical re-encode check the agent applies to requests.
_response_decoder = msgspec.msgpack.Decoder(protocol.Response)
_event_decoder = msgspec.msgpack.Decoder(Union[protocol.Event, protocol.Error])


def _decode(decoder: msgspec.msgpack.Decoder, body: bytes) -> Any:
    # No need to pause the collector for a 100,000-entry list: protocol records are
    # gc=False structs holding strings and tuples, so decoding them triggers no passes.
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"the agent sent a reply this client cannot read ({exc}); "
                            f"{RESTART_HINT}") from None


class _Page(msgspec.Struct, tag="entries", tag_field="type", forbid_unknown_fields=True,
            kw_only=True):
    """`protocol.Entries` with its entries left encoded: the cursor is read without them."""

    entries: msgspec.Raw
    next: str | None = None
    total: int = 0


_page_decoder = msgspec.msgpack.Decoder(Union[_Page, protocol.Error])
_entries_decoder = msgspec.msgpack.Decoder(list[EntryMeta])


def _raise_error(reply: protocol.Error) -> None:
    raise error_from_reply(reply.code, reply.message, reply.names, reply.retry_after)


def _unavailable(exc: OSError) -> AgentUnavailable:
    if isinstance(exc, (TimeoutError, BlockingIOError)):  # SO_RCVTIMEO/SO_SNDTIMEO ran out
        return AgentUnavailable(f"the agent did not answer in time; {RESTART_HINT}")
    return AgentUnavailable(f"lost the connection to the agent ({exc.strerror or exc}); "
                            f"is it still running? {START_HINT}")


class _Connection:
    """One socket after a successful hello; owns framing, nothing else.

    The socket blocks, with its timeout kept by the kernel (SO_RCVTIMEO,
    SO_SNDTIMEO): a Python-level timeout would add a poll() before every send
    and recv. A reply is read with one recv when it fits, not header then body.
    """

    def __init__(self, path: str | None, timeout: float | None, client_name: str) -> None:
        self.sock = connect(path, timeout)
        self._rest = b""  # bytes received past the last frame (events can arrive together)
        try:
            self.settimeout(timeout)
            self._send_frame(protocol.encode(protocol.Hello(protocol=protocol.PROTOCOL_VERSION,
                                                            client=client_name)))
            welcome = self.read(_response_decoder)
            if isinstance(welcome, protocol.Error):
                _raise_error(welcome)
            if not isinstance(welcome, Welcome):
                raise ProtocolError(f"the agent answered hello with {type(welcome).__name__}")
            if welcome.protocol != protocol.PROTOCOL_VERSION:
                raise version_mismatch(welcome.version, welcome.protocol)
        except BaseException:
            self.close()
            raise
        self.welcome = welcome

    def send(self, message: Any) -> None:
        try:
            frame = protocol.encode(message)
        except protocol.FrameError as exc:
            raise BadRequest(str(exc)) from None
        self._send_frame(frame)

    def _send_frame(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            raise _unavailable(exc) from None

    def read(self, decoder: msgspec.msgpack.Decoder) -> Any:
        return _decode(decoder, self._frame())

    def _frame(self) -> bytes | bytearray:
        """One frame body; the length is checked before anything is allocated for it."""
        data = self._rest
        while len(data) < 4:
            data += self._recv(_RECV_SIZE)
        length = int.from_bytes(data[:4], "big")
        if length == 0 or length > protocol.MAX_FRAME:
            raise ProtocolError(f"the agent sent a frame of {length} bytes "
                                f"(limit {protocol.MAX_FRAME})")
        end = 4 + length
        if len(data) >= end:
            self._rest = data[end:]
            return data[4:end]
        self._rest = b""
        body = bytearray(length)
        have = len(data) - 4
        body[:have] = data[4:]
        view = memoryview(body)
        while have < length:
            have += self._recv_into(view[have:])
        return body

    def _recv(self, size: int) -> bytes:
        try:
            data = self.sock.recv(size)
        except OSError as exc:
            raise _unavailable(exc) from None
        if not data:
            raise _closed()
        return data

    def _recv_into(self, view: memoryview) -> int:
        try:
            n = self.sock.recv_into(view)
        except OSError as exc:
            raise _unavailable(exc) from None
        if not n:
            raise _closed()
        return n

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


_RECV_SIZE = 64 * 1024
_TIMEVAL = struct.Struct("@ll")


def _closed() -> AgentUnavailable:
    return AgentUnavailable(f"the agent closed the connection; see its log, "
                            f"or restart it: {START_HINT}")


class Client:
    """A connection to the agent with one typed method per request."""

    def __init__(self, socket_path: str | None = None, *, client_name: str = "credd-python",
                 timeout: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self.client_name = client_name
        self.timeout = timeout
        self._conn: _Connection | None = None

    # -- connection

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = _Connection(self.socket_path, self.timeout, self.client_name)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._conn else "not connected"
        return f"Client({self.socket_path!r}, {state})"

    def call(self, request: Any, expect: type[R] | tuple[type, ...] | None = None) -> R:
        """Send one request, return its reply; an `error` reply is raised as its exception.

        A broken connection is dropped (the next call reconnects) and raised as
        AgentUnavailable; it is never retried, since the request may have run.
        """
        conn = self._connection()
        try:
            conn.send(request)
            reply = conn.read(_response_decoder)
        except BadRequest:
            raise  # nothing was sent; the connection is still good
        except BaseException:
            self.close()
            raise
        if isinstance(reply, protocol.Error):
            _raise_error(reply)
        if expect is not None and not isinstance(reply, expect):
            self.close()
            raise ProtocolError(f"the agent answered {protocol.tag_of(type(request))!r} with "
                                f"{protocol.tag_of(type(reply))!r}; {RESTART_HINT}")
        return reply

    # -- agent and vault

    def hello(self) -> Welcome:
        return self._connection().welcome

    def status(self) -> StatusReply:
        return self.call(protocol.Status(), StatusReply)

    def init(self, passphrase: str, *, kdf_memory_kib: int | None = None,
             kdf_iterations: int | None = None, kdf_lanes: int | None = None) -> str:
        """Create the vault; returns the recovery key (shown to the user once)."""
        request = protocol.Init(passphrase=passphrase, kdf_memory_kib=kdf_memory_kib,
                                kdf_iterations=kdf_iterations, kdf_lanes=kdf_lanes)
        return self.call(request, protocol.RecoveryKey).recovery_key

    def unlock(self, passphrase: str | None = None, *, key: bytes | None = None,
               recovery_key: str | None = None, idle_timeout: float | None = None,
               max_lifetime: float | None = None) -> StatusReply:
        request = protocol.Unlock(passphrase=passphrase, key=key, recovery_key=recovery_key,
                                  idle_timeout=idle_timeout, max_lifetime=max_lifetime)
        return self.call(request, StatusReply)

    def lock(self) -> None:
        self.call(protocol.Lock(), protocol.Ok)

    def change_passphrase(self, old: str, new: str) -> None:
        self.call(protocol.ChangePassphrase(old=old, new=new), protocol.Ok)

    def add_key_slot(self, key: bytes, label: str = "keyring") -> None:
        self.call(protocol.AddKeySlot(key=key, label=label), protocol.Ok)

    def remove_key_slot(self, label: str = "keyring") -> None:
        self.call(protocol.RemoveKeySlot(label=label), protocol.Ok)

    def audit(self, limit: int = 100) -> list[AuditRecord]:
        return self.call(protocol.Audit(limit=limit), protocol.AuditLog).records

    def check(self) -> CheckReport:
        return self.call(protocol.Check(), CheckReport)

    def rekey(self) -> str:
        """Re-encrypt every entry under a new data key; returns the NEW recovery key
        (the old one stops working, and keyring slots must be added again)."""
        return self.call(protocol.Rekey(), protocol.RecoveryKey).recovery_key

    def stop(self) -> None:
        self.call(protocol.Stop(), protocol.Ok)
        self.close()

    # -- entries

    def get(self, name: str, field: str | None = None) -> str:
        return self.call(protocol.Get(name=name, field=field), protocol.Secret).value

    def get_many(self, refs: list[str]) -> dict[str, str]:
        """Values of many `credd://NAME/FIELD` refs; NotFound.names lists every missing one."""
        return self.call(protocol.GetMany(refs=list(refs)), protocol.Secrets).values

    def reveal(self, name: str, version: int | None = None) -> Revealed:
        return self.call(protocol.Reveal(name=name, version=version), Revealed)

    def describe(self, name: str) -> EntryMeta:
        return self._entry(protocol.Describe(name=name))

    def set(self, name: str, **fields: Any) -> EntryMeta:
        """Write an entry; keyword arguments are those of `protocol.Set`."""
        try:
            request = protocol.Set(name=name, **fields)
        except TypeError as exc:
            raise BadRequest(str(exc)) from None
        return self._entry(request)

    def delete(self, name: str) -> EntryMeta:
        return self._entry(protocol.Delete(name=name))

    def undelete(self, name: str) -> EntryMeta:
        return self._entry(protocol.Undelete(name=name))

    def purge(self, name: str) -> None:
        self.call(protocol.Purge(name=name), protocol.Ok)

    def move(self, old: str, new: str) -> EntryMeta:
        return self._entry(protocol.Move(old=old, new=new))

    def restore(self, name: str, version: int) -> EntryMeta:
        return self._entry(protocol.Restore(name=name, version=version))

    def history(self, name: str) -> HistoryReply:
        return self.call(protocol.History(name=name), HistoryReply)

    def list(self, **filters: Any) -> list[EntryMeta]:
        """Every entry matching the filters of `protocol.List`, following `next` pages.

        Pipelined: a page's cursor is read first (skipping its entries), the next
        page is asked for, and only then are this page's entries decoded, so the
        agent encodes one page while the client decodes the one before.
        """
        try:
            request = protocol.List(**filters)
        except TypeError as exc:
            raise BadRequest(str(exc)) from None
        conn = self._connection()
        entries: list[EntryMeta] = []
        try:
            conn.send(request)
            while True:
                page = conn.read(_page_decoder)
                if isinstance(page, protocol.Error):
                    _raise_error(page)  # nothing else was asked: the connection is still good
                if page.next:
                    conn.send(msgspec.structs.replace(request, cursor=page.next))
                entries.extend(_decode(_entries_decoder, page.entries))
                if not page.next:
                    return entries
        except (AgentUnavailable, ProtocolError):
            self.close()
            raise
        except CreddError:  # an error reply: nothing is outstanding
            raise
        except BaseException:
            self.close()
            raise

    def trash(self) -> list[EntryMeta]:
        return self.call(protocol.Trash(), protocol.Entries).entries

    def _entry(self, request: Any) -> EntryMeta:
        return self.call(request, protocol.EntryReply).entry

    # -- events

    def subscribe(self) -> Iterator[Event]:
        """Events (locked, unlocked, entry_changed) on a connection of their own.

        The subscription is made before this returns (errors surface here);
        the iterator then blocks between events, ends when the agent goes
        away, and closing it closes the connection.
        """
        conn = _Connection(self.socket_path, self.timeout, self.client_name)
        try:
            conn.send(protocol.Subscribe())
            reply = conn.read(_response_decoder)
            if isinstance(reply, protocol.Error):
                _raise_error(reply)
            if not isinstance(reply, protocol.Ok):
                raise ProtocolError(f"the agent answered subscribe with {type(reply).__name__}")
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
                    event = conn.read(_event_decoder)
                except AgentUnavailable:
                    return
                if isinstance(event, protocol.Error):
                    _raise_error(event)
                yield event
        finally:
            conn.close()
