"""The socket layer every client shares: connect, verify the agent's uid, move frames.

Standard library only (`_socket`, not `socket`, which drags in enum and
selectors): `credd get` runs through here without msgspec, and so do
`credd.client` and `credd.async_client`. The uid check runs before a byte is
sent, so a socket planted by another user never sees a passphrase.

`FrameReader` is the one reader of frames, without I/O: the fast path and the
sync client feed it from a blocking socket (`recv_frame`), the asyncio client
from a stream. `lost` is the one wording of a connection that broke.
"""

from __future__ import annotations

import _socket
import os
import sys

from credd import __version__
from credd.errors import (
    RESTART_HINT,
    START_HINT,
    AgentBusy,
    AgentUnavailable,
    Denied,
    ProtocolError,
    VersionMismatch,
)
from credd.paths import check_socket_path, socket_path

PROTOCOL_VERSION = 1  # == credd.protocol.PROTOCOL_VERSION (checked by tests)
MAX_FRAME = 1 << 20   # == credd.protocol.MAX_FRAME
CLIENT_NAME = "credd-cli"
RECV_SIZE = 64 * 1024  # one read takes a whole ordinary reply, and events that came together

# macOS: getsockopt(SOL_LOCAL, LOCAL_PEERCRED) fills a struct xucred
# {u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]}.
_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE = 0, 0x001, 76


def peer_uid(sock: _socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    if hasattr(_socket, "SO_PEERCRED"):  # Linux: struct ucred {pid_t; uid_t; gid_t}
        raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        return int.from_bytes(raw[4:8], sys.byteorder)
    if sys.platform == "darwin":
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE)
        return int.from_bytes(raw[4:8], sys.byteorder)
    raise Denied(f"cannot verify the agent's owner on {sys.platform}; refusing to talk to it")


def agent_uid() -> int:
    """The uid the agent must run as: ours, or `CREDD_AGENT_UID` for a sandbox that reaches
    its owner's agent through a grant socket (docs/grants.md)."""
    given = os.environ.get("CREDD_AGENT_UID")
    if not given:
        return os.geteuid()
    if not given.isdigit():
        raise Denied(f"CREDD_AGENT_UID must be a uid (a number), not {given[:20]!r}")
    return int(given)


def connect(path: str | None = None, timeout: float | None = 30.0) -> _socket.socket:
    """A connected socket to the agent, whose owner is verified to be us (or the owner a
    sandbox names in CREDD_AGENT_UID).

    The uid check runs before anything is sent: a socket planted by another
    user must never receive a passphrase or learn which secret we want.
    """
    path = path or socket_path()
    check_socket_path(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except BlockingIOError:  # a full listen queue: the agent is alive, and busy
            _wait_for_room(sock, path, timeout)
        uid = peer_uid(sock)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise AgentUnavailable(f"no credd agent is listening on {path}: {START_HINT}") from None
    except PermissionError:
        sock.close()
        raise Denied(f"not allowed to connect to {path}: is it yours? "
                     f"(check its owner and mode, or set CREDD_SOCK)") from None
    except TimeoutError:
        sock.close()
        raise AgentUnavailable(f"the agent on {path} did not accept within {timeout}s; "
                               f"{RESTART_HINT}") from None
    except OSError as exc:
        sock.close()
        raise AgentUnavailable(f"cannot reach the agent on {path} ({exc.strerror or exc}): "
                               f"{START_HINT}") from None
    except BaseException:
        sock.close()
        raise
    expected = agent_uid()
    if uid != expected:
        sock.close()
        raise Denied(f"the socket {path} belongs to uid {uid}, not to uid {expected}; "
                     f"refusing to talk to it. Remove it or set CREDD_SOCK (a sandbox: "
                     f"CREDD_AGENT_UID)")
    return sock


def _wait_for_room(sock: _socket.socket, path: str, timeout: float | None) -> None:
    """Connect once the agent's listen queue has room, within `timeout`.

    Linux answers a connect to a full queue with EAGAIN at once when the socket has a
    timeout (Python's timeouts make it non-blocking), where a blocking connect would wait
    in the kernel. So wait there, bounded by SO_SNDTIMEO: woken as soon as the agent
    accepts, and no cost at all in the common case, which never gets here.
    """
    import _struct  # the slow path only

    if timeout is None:  # (a blocking socket never gets EAGAIN; kept for completeness)
        timeout = 30.0
    if timeout <= 0:  # a zero SO_SNDTIMEO would wait for ever
        raise AgentBusy(f"the agent on {path} is busy: its queue of new connections is full")
    seconds = int(timeout)
    bounded = _struct.pack("ll", seconds, int((timeout - seconds) * 1e6))
    sock.settimeout(None)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, bounded)
    try:
        sock.connect(path)
    except BlockingIOError:
        raise AgentBusy(f"the agent on {path} is busy: its queue of new connections stayed "
                        f"full for {timeout:g}s") from None
    finally:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _struct.pack("ll", 0, 0))
        sock.settimeout(timeout)


class FrameReader:
    """Whole frame bodies out of a byte stream, without I/O.

    `feed` what arrived and take bodies with `next_body` until it says None.
    A body's length is checked before anything is allocated for it; a body
    that has not all arrived is allocated once, and `receive` reads the
    rest straight into it: a 1 MiB page of a 100,000-entry list is then
    copied once, by the kernel.
    """

    def __init__(self) -> None:
        self._data: bytes = b""                 # received past the last whole frame
        self._body: bytearray | None = None     # the next body, while it arrives
        self._filled = 0

    def feed(self, data: bytes) -> None:
        body = self._body
        if body is None:
            self._data = self._data + data if self._data else data
            return
        n = min(len(data), len(body) - self._filled)
        body[self._filled:self._filled + n] = memoryview(data)[:n]
        self._filled += n
        self._data = data[n:]

    def receive(self, sock: _socket.socket) -> bytes | bytearray:
        """The next body, received from a blocking socket as needed. The common case
        (nothing held, one recv brings the whole reply) costs no more than reading by
        hand; the rest of a long body is received straight into its buffer."""
        body = self.next_body() if self._data or self._body is not None else None
        while body is None:
            try:
                if self._body is None:
                    data = sock.recv(RECV_SIZE)
                    n = len(data)
                    if self._data:
                        self.feed(data)
                    else:
                        self._data = data
                else:
                    n = sock.recv_into(memoryview(self._body)[self._filled:])
                    self._filled += n
            except OSError as exc:
                raise lost(exc) from None
            if not n:
                raise lost()
            body = self.next_body()
        return body

    def next_body(self) -> bytes | bytearray | None:
        """The next whole body, or None until more bytes arrive."""
        if self._body is not None:
            if self._filled < len(self._body):
                return None
            body, self._body = self._body, None
            return body
        data = self._data
        if len(data) < 4:
            return None
        length = int.from_bytes(data[:4], "big")
        if length == 0 or length > MAX_FRAME:
            raise ProtocolError(f"the agent sent a frame of {length} bytes (limit {MAX_FRAME})")
        end = 4 + length
        if len(data) >= end:
            self._data = data[end:]
            return data[4:end]
        self._body = bytearray(length)
        self._filled = len(data) - 4
        self._body[:self._filled] = memoryview(data)[4:]
        self._data = b""
        return None


def lost(exc: OSError | None = None) -> AgentUnavailable:
    """The one wording of a connection that broke: the agent hung up (`None`), did not
    answer in time, or the socket failed; every client raises these."""
    if exc is None:
        return AgentUnavailable("the agent closed the connection; see its log, "
                                f"or restart it: {START_HINT}")
    if isinstance(exc, (TimeoutError, BlockingIOError)):  # BlockingIOError: SO_RCVTIMEO ran out
        return AgentUnavailable(f"the agent did not answer in time; {RESTART_HINT}")
    return AgentUnavailable(f"lost the connection to the agent ({exc.strerror or exc}); "
                            f"is it still running? {START_HINT}")


def recv_frame(sock: _socket.socket, frames: FrameReader) -> bytes | bytearray:
    """The next frame body from a blocking socket; `frames` keeps what arrived past it."""
    return frames.receive(sock)


def send_all(sock: _socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError as exc:
        raise lost(exc) from None


def send_fds(sock: _socket.socket, fds: list[int]) -> None:
    """Descriptors the agent waits for after `ready`, on one byte (SCM_RIGHTS)."""
    rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
    try:
        sock.sendmsg([b"\0"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    except OSError as exc:
        raise lost(exc) from None


def version_mismatch(agent_version: object, agent_protocol: object) -> VersionMismatch:
    return VersionMismatch(f"the agent (credd {agent_version}) speaks protocol {agent_protocol}, "
                           f"this client (credd {__version__}) speaks {PROTOCOL_VERSION}: "
                           f"{RESTART_HINT}")
