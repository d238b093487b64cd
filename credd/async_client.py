"""The asyncio twin of `credd.client` for credtui: the same calls, as coroutines.

A separate module because importing asyncio costs ~38 ms, which the `credd get`
fast path must not pay. Framing is `credd.protocol`'s and the
connect (with its uid check of the agent) is `credd.wire`'s; error responses become
exceptions through `credd.errors.from_code`, in one place (`call`). Requests on
one connection are serialized by a lock, so concurrent workers never read each
other's replies; `events()` uses its own subscribed connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar, Union

import msgspec

from credd import __version__ as _version
from credd import protocol as p
from credd.wire import connect
from credd.errors import AgentUnavailable, BadRequest, ProtocolError, VersionMismatch, from_code
from credd.paths import socket_path as _default_socket

R = TypeVar("R")

# The agent is authenticated by uid, so replies get msgspec's typed decode
# without the canonical re-encode check the agent applies to requests (as the
# sync client does): listing 100,000 entries stays cheap.
_response_decoder = msgspec.msgpack.Decoder(p.Response)
_event_decoder = msgspec.msgpack.Decoder(Union[p.Event, p.Error])


def _decode(decoder: msgspec.msgpack.Decoder, body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"the agent sent a reply this client cannot read ({exc})") from None


class _Connection:
    """One framed stream to the agent, already past the hello."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: str, client_name: str, timeout: float) -> tuple[_Connection, p.Welcome]:
        # the sync connect checks the agent's uid before a byte is sent; a Unix
        # connect does not block, so borrowing it costs the event loop nothing
        sock = connect(path, timeout)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=p.MAX_FRAME + 4)
        conn = cls(reader, writer)
        reply = await asyncio.wait_for(
            conn.roundtrip(p.Hello(protocol=p.PROTOCOL_VERSION, client=client_name)), timeout)
        if isinstance(reply, p.Error):
            raise from_code(reply.code, reply.message, names=reply.names, retry_after=reply.retry_after)
        if not isinstance(reply, p.Welcome) or reply.protocol != p.PROTOCOL_VERSION:
            await conn.close()
            raise VersionMismatch(f"agent speaks protocol {getattr(reply, 'protocol', '?')}, "
                                  f"this client {p.PROTOCOL_VERSION} ({_version}); restart the agent")
        return conn, reply

    async def send(self, message: p._Message) -> None:
        try:
            frame = p.encode(message)
        except p.FrameError as exc:
            raise BadRequest(str(exc)) from None
        self.writer.write(frame)
        await self.writer.drain()

    async def read_body(self) -> bytes:
        try:
            header = await self.reader.readexactly(p.HEADER.size)
            return await self.reader.readexactly(p.body_length(header))
        except (asyncio.IncompleteReadError, ConnectionError):
            raise AgentUnavailable("the agent closed the connection") from None
        except p.FrameError as exc:
            raise ProtocolError(str(exc)) from None

    async def roundtrip(self, message: p._Message) -> p.Response:
        await self.send(message)
        return _decode(_response_decoder, await self.read_body())

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass


class AsyncClient:
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

    async def call(self, request: p._Message, expect: type[R]) -> R:
        """Send one request and return its reply, raising the mapped error for an `error`."""
        async with self._lock:
            if self._conn is None:
                self._conn, self.welcome = await _Connection.open(
                    self.socket_path, self.client_name, self.timeout)
            try:
                reply = await asyncio.wait_for(self._conn.roundtrip(request), self.timeout)
            except BaseException as exc:
                conn, self._conn = self._conn, None  # the stream's position is unknown now
                await conn.close()
                if isinstance(exc, (OSError, asyncio.TimeoutError)):
                    raise AgentUnavailable(f"lost the agent on {self.socket_path} "
                                           f"({type(exc).__name__})") from None
                raise
        if isinstance(reply, p.Error):
            raise from_code(reply.code, reply.message, names=reply.names, retry_after=reply.retry_after)
        if not isinstance(reply, expect):
            raise ProtocolError(f"expected a {p.tag_of(expect)} reply, got {p.tag_of(type(reply))}")
        return reply

    # ------------------------------------------------------------ agent and vault

    async def hello(self) -> p.Welcome:
        await self.status()
        assert self.welcome is not None
        return self.welcome

    async def status(self) -> p.StatusReply:
        return await self.call(p.Status(), p.StatusReply)

    async def init(self, passphrase: str, *, kdf_memory_kib: int | None = None,
                   kdf_iterations: int | None = None, kdf_lanes: int | None = None) -> str:
        reply = await self.call(p.Init(passphrase=passphrase, kdf_memory_kib=kdf_memory_kib,
                                       kdf_iterations=kdf_iterations, kdf_lanes=kdf_lanes),
                                p.RecoveryKey)
        return reply.recovery_key

    async def unlock(self, passphrase: str | None = None, *, key: bytes | None = None,
                     recovery_key: str | None = None, idle_timeout: float | None = None,
                     max_lifetime: float | None = None) -> p.StatusReply:
        return await self.call(p.Unlock(passphrase=passphrase, key=key, recovery_key=recovery_key,
                                        idle_timeout=idle_timeout, max_lifetime=max_lifetime),
                               p.StatusReply)

    async def lock(self) -> None:
        await self.call(p.Lock(), p.Ok)

    async def change_passphrase(self, old: str, new: str) -> None:
        await self.call(p.ChangePassphrase(old=old, new=new), p.Ok)

    async def add_key_slot(self, key: bytes, label: str = "keyring") -> None:
        await self.call(p.AddKeySlot(key=key, label=label), p.Ok)

    async def remove_key_slot(self, label: str = "keyring") -> None:
        await self.call(p.RemoveKeySlot(label=label), p.Ok)

    async def audit(self, limit: int = 100) -> list[p.AuditRecord]:
        return (await self.call(p.Audit(limit=limit), p.AuditLog)).records

    async def check(self) -> p.CheckReport:
        return await self.call(p.Check(), p.CheckReport)

    async def rekey(self) -> str:
        """Re-encrypt every entry under a new data key; returns the NEW recovery key."""
        return (await self.call(p.Rekey(), p.RecoveryKey)).recovery_key

    async def stop(self) -> None:
        await self.call(p.Stop(), p.Ok)

    # ------------------------------------------------------------ entries

    async def get(self, name: str, field: str | None = None) -> str:
        return (await self.call(p.Get(name=name, field=field), p.Secret)).value

    async def get_many(self, refs: list[str]) -> dict[str, str]:
        return (await self.call(p.GetMany(refs=list(refs)), p.Secrets)).values

    async def reveal(self, name: str, version: int | None = None) -> p.Revealed:
        return await self.call(p.Reveal(name=name, version=version), p.Revealed)

    async def describe(self, name: str) -> p.EntryMeta:
        return (await self.call(p.Describe(name=name), p.EntryReply)).entry

    async def set(self, name: str, **fields: Any) -> p.EntryMeta:
        return (await self.call(p.Set(name=name, **fields), p.EntryReply)).entry

    async def delete(self, name: str) -> p.EntryMeta:
        return (await self.call(p.Delete(name=name), p.EntryReply)).entry

    async def undelete(self, name: str) -> p.EntryMeta:
        return (await self.call(p.Undelete(name=name), p.EntryReply)).entry

    async def purge(self, name: str) -> None:
        await self.call(p.Purge(name=name), p.Ok)

    async def move(self, old: str, new: str) -> p.EntryMeta:
        return (await self.call(p.Move(old=old, new=new), p.EntryReply)).entry

    async def list(self, **filters: Any) -> list[p.EntryMeta]:
        """Every matching entry, following the agent's `next` cursor across pages."""
        entries: list[p.EntryMeta] = []
        cursor = None
        while True:
            page = await self.call(p.List(cursor=cursor, **filters), p.Entries)
            entries.extend(page.entries)
            if not page.next:
                return entries
            cursor = page.next

    async def trash(self) -> list[p.EntryMeta]:
        return (await self.call(p.Trash(), p.Entries)).entries

    async def history(self, name: str) -> p.HistoryReply:
        return await self.call(p.History(name=name), p.HistoryReply)

    async def restore(self, name: str, version: int) -> p.EntryMeta:
        return (await self.call(p.Restore(name=name, version=version), p.EntryReply)).entry

    # ------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[p.Locked | p.Unlocked | p.EntryChanged]:
        """Agent events, on a connection of their own, until the agent goes away."""
        conn, _ = await _Connection.open(self.socket_path, self.client_name, self.timeout)
        try:
            reply = await asyncio.wait_for(conn.roundtrip(p.Subscribe()), self.timeout)
            if isinstance(reply, p.Error):
                raise from_code(reply.code, reply.message)
            while True:
                event = _decode(_event_decoder, await conn.read_body())
                if isinstance(event, p.Error):
                    raise from_code(event.code, event.message)
                yield event
        finally:
            await conn.close()
