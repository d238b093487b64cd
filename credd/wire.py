"""The socket layer every client shares: connect, verify the agent's uid, move frames.

Standard library only (`_socket`, not `socket`, which drags in enum and
selectors): `credd get` runs through here without msgspec, and so do
`credd.client` and `credd.async_client`. The uid check runs before a byte is
sent, so a socket planted by another user never sees a passphrase.
"""

from __future__ import annotations

import os
import sys

import _socket

from credd.errors import (
    RESTART_HINT, START_HINT, AgentUnavailable, CreddError, Denied, ProtocolError, from_code,
)
from credd.paths import check_socket_path, socket_path

PROTOCOL_VERSION = 1  # == credd.protocol.PROTOCOL_VERSION (checked by tests)
MAX_FRAME = 1 << 20   # == credd.protocol.MAX_FRAME
CLIENT_NAME = "credd-cli"

# macOS: getsockopt(SOL_LOCAL, LOCAL_PEERCRED) fills a struct xucred
# {u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]}.
_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE = 0, 0x001, 76


def peer_uid(sock) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    if hasattr(_socket, "SO_PEERCRED"):  # Linux: struct ucred {pid_t; uid_t; gid_t}
        raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        return int.from_bytes(raw[4:8], sys.byteorder)
    if sys.platform == "darwin":
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE)
        return int.from_bytes(raw[4:8], sys.byteorder)
    raise Denied(f"cannot verify the agent's owner on {sys.platform}; refusing to talk to it")


def connect(path: str | None = None, timeout: float | None = 30.0):
    """A connected socket to the agent, whose owner is verified to be us.

    The uid check runs before anything is sent: a socket planted by another
    user must never receive a passphrase or learn which secret we want.
    """
    path = path or socket_path()
    check_socket_path(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
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
    if uid != os.geteuid():
        sock.close()
        raise Denied(f"the socket {path} belongs to uid {uid}, not to you (uid {os.geteuid()}); "
                     f"refusing to talk to it. Remove it or set CREDD_SOCK")
    return sock


def recv_exact(sock, n: int) -> bytes:
    """Exactly n bytes, or AgentUnavailable if the agent hangs up or stalls."""
    chunks, left = [], n
    try:
        while left:
            chunk = sock.recv(min(left, 1 << 20))
            if not chunk:
                raise AgentUnavailable("the agent closed the connection; see its log, "
                                       f"or restart it: {START_HINT}")
            chunks.append(chunk)
            left -= len(chunk)
    except TimeoutError:
        raise AgentUnavailable(f"the agent did not answer in time; {RESTART_HINT}") from None
    except OSError as exc:
        raise AgentUnavailable(f"lost the connection to the agent ({exc.strerror or exc}); "
                               f"is it still running? {START_HINT}") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def recv_frame(sock) -> bytes:
    """One frame body; the length is checked before anything is allocated for it."""
    length = int.from_bytes(recv_exact(sock, 4), "big")
    if length == 0 or length > MAX_FRAME:
        raise ProtocolError(f"the agent sent a frame of {length} bytes (limit {MAX_FRAME})")
    return recv_exact(sock, length)


def send_all(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
    except TimeoutError:
        raise AgentUnavailable(f"the agent stopped reading; {RESTART_HINT}") from None
    except OSError as exc:
        raise AgentUnavailable(f"lost the connection to the agent ({exc.strerror or exc}); "
                               f"is it still running? {START_HINT}") from None


def error_from_reply(code: str, message: str, names: list[str],
                     retry_after: float | None) -> CreddError:
    """The exception an `error` reply stands for (both clients use this)."""
    return from_code(code, message, names=names, retry_after=retry_after)


def version_mismatch(agent_version: object, agent_protocol: object) -> CreddError:
    from credd import __version__
    from credd.errors import VersionMismatch
    return VersionMismatch(f"the agent (credd {agent_version}) speaks protocol {agent_protocol}, "
                           f"this client (credd {__version__}) speaks {PROTOCOL_VERSION}: "
                           f"{RESTART_HINT}")
