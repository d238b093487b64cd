"""The client's side of the protocol, without I/O: requests to bytes, bytes to replies.

Both clients are this core under a thin transport (`credd.client` over a
blocking socket, `credd.async_client` over asyncio streams). The core:

- encodes a request and remembers what it asks for (`protocol.REPLY`), so
  replies are matched to requests in order, pipelined or not;
- takes frame bodies (framed by `wire.FrameReader`, fed by the transport) and
  decodes each into the reply of the oldest waiting request, raising an
  `error` reply as its exception (hints are the classes' own) and any reply
  of another type than the request's as ProtocolError;
- says whether a connection may carry another request (`reusable`).

A conversation of several requests is a plan: a generator that yields the
requests to send and what to read next (`"page"` for a list page), is sent
back what was read, and returns the result; a transport runs it with
`drive`. One request needs no plan (`roundtrip` in each transport): most
methods are one request, and generators per call made a `get` 4-6 us
slower (of ~35 us). The typed methods are `credd.client_calls`'.

Imports the standard library, msgspec and credd's protocol/errors/wire only:
`credd get` pays for no asyncio (tests/test_import_hygiene.py).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from credd import protocol
from credd.errors import RESTART_HINT, AgentUnavailable, BadRequest, ProtocolError, from_code
from credd.protocol import REPLY, Asks, EntryMeta, Welcome, tag_of
from credd.wire import FrameReader, version_mismatch

if TYPE_CHECKING:  # annotations only (typing's aliases cost import time)
    from collections.abc import Generator
    from typing import Literal, TypeAlias, TypeVar

    T = TypeVar("T")
    #: What a plan reads next: a reply, a `list` page with its entries left encoded, an event.
    Read: TypeAlias = Literal["reply", "page", "event"]
    #: What a plan yields: a request to send, or what to read next (sent back into the plan).
    Step: TypeAlias = Asks[Any] | Read
    Plan: TypeAlias = Generator[Step, Any, T]
    Event: TypeAlias = protocol.Event


def hello(client_name: str) -> protocol.Hello:
    """The first request on every connection."""
    return protocol.Hello(protocol=protocol.PROTOCOL_VERSION, client=client_name)


def welcomed(welcome: Welcome) -> Welcome:
    """The agent's answer to `hello`, unless it speaks another protocol version."""
    if welcome.protocol != protocol.PROTOCOL_VERSION:
        raise version_mismatch(welcome.version, welcome.protocol)
    return welcome


class Page(msgspec.Struct, tag="entries", tag_field="type", forbid_unknown_fields=True,
           kw_only=True):
    """`protocol.Entries` with its entries left encoded: the cursor is read without them."""

    entries: msgspec.Raw
    next: str | None = None
    total: int = 0


# The agent is authenticated by uid, so replies get msgspec's typed decode without
# the canonical re-encode check it applies to requests (see protocol.decode_response).
# No need to pause the collector for a 100,000-entry list: records are gc=False.
_decoders: dict[Read, msgspec.msgpack.Decoder[Any]] = {
    "reply": msgspec.msgpack.Decoder(protocol.Response),
    "page": msgspec.msgpack.Decoder(Page | protocol.Error),
    "event": msgspec.msgpack.Decoder(protocol.Event | protocol.Error),
}
_entries_decoder: msgspec.msgpack.Decoder[list[EntryMeta]] = msgspec.msgpack.Decoder(
    list[EntryMeta])


def entries_of(page: Page) -> list[EntryMeta]:
    """A page's entries, decoded."""
    try:
        return _entries_decoder.decode(page.entries)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _unreadable(exc) from None


def _unreadable(exc: Exception) -> ProtocolError:
    return ProtocolError(f"the agent sent a reply this client cannot read ({exc}); "
                         f"{RESTART_HINT}")


class Core:
    """One connection's protocol state: what it asked, what has arrived (`frames`)."""

    def __init__(self) -> None:
        self.frames = FrameReader()
        self._asked: deque[type[Asks[Any]]] = deque()  # oldest first, replies not yet read
        self.ended = False  # the agent closes the connection after `stop`

    def encode(self, request: Asks[Any]) -> bytes:
        """The frame to send; too big a request is BadRequest, and nothing is sent."""
        try:
            frame = protocol.encode(request)
        except protocol.FrameError as exc:
            raise BadRequest(str(exc)) from None
        self._asked.append(type(request))
        return frame

    def take(self, body: bytes | bytearray, read: Read) -> Any:
        """What a frame body says: the reply to the oldest waiting request (or an event):
        an `error` reply is raised as its exception, a reply of another type than the
        request names as ProtocolError."""
        try:
            reply = _decoders[read].decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _unreadable(exc) from None
        kind = type(reply)
        asked = self._asked.popleft() if read != "event" else None
        if kind is protocol.Error:
            raise from_code(reply.code, reply.message, names=reply.names,
                            retry_after=reply.retry_after)
        if asked is None:
            return reply
        if kind is not (Page if read == "page" else REPLY[asked]):
            raise ProtocolError(f"the agent answered {tag_of(asked)!r} with "
                                f"{tag_of(kind)!r}; {RESTART_HINT}")
        if asked is protocol.Stop:
            self.ended = True
        return reply

    def last(self, body: bytes | bytearray, expect: type[T]) -> T:
        """The frame that ends a request answered `ready` (`protocol.LAST`): a reply to no
        request of ours, of type `expect` (an `error` raised); the agent then closes."""
        self.ended = True
        try:
            reply = _decoders["reply"].decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _unreadable(exc) from None
        if type(reply) is protocol.Error:
            raise from_code(reply.code, reply.message, names=reply.names,
                            retry_after=reply.retry_after)
        if not isinstance(reply, expect):
            raise ProtocolError(f"the agent ended with {tag_of(type(reply))!r}, not "
                                f"{tag_of(expect)!r}; {RESTART_HINT}")
        return reply

    def reusable(self, failure: BaseException) -> bool:
        """Whether the connection can carry another request after `failure`: not while
        a reply is unread or the stream's place is unknown, nor after `stop`. An error
        reply, or a request refused before it was sent, leaves it so. (After success,
        only `ended` can say no.)"""
        return not (self._asked or self.ended
                    or isinstance(failure, (AgentUnavailable, ProtocolError)))

