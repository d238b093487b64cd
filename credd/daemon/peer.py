"""Who is on the other end of a connection, asked of the kernel before a byte is read.

The uid comes from SO_PEERCRED (Linux) or getpeereid (macOS): the kernel's
record of who connected, not anything the peer says. Only the agent's own uid
is served, not even root. Naming the peer's program (psutil) is for the audit
log only and happens lazily, the first time a record needs it.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
from dataclasses import dataclass, field

_UCRED = struct.Struct("3i")  # pid, uid, gid
_SOL_LOCAL, _LOCAL_PEERPID = 0, 2  # macOS <sys/un.h>


@dataclass
class Peer:
    uid: int
    pid: int | None
    _exe: str | None = field(default=None, repr=False)

    @property
    def exe(self) -> str:
        """The peer's executable, or "" when it cannot be known (it exited, or is hidden)."""
        if self._exe is None:
            self._exe = _exe_of(self.pid)
        return self._exe


def credentials(sock: socket.socket) -> Peer:
    """The connected peer's uid and pid; OSError when the kernel cannot tell (fail closed)."""
    if sys.platform.startswith("linux"):
        pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        return Peer(uid=uid, pid=pid or None)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()  # type: ignore[unreachable,unused-ignore]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno(), "getpeereid failed")
    try:
        pid = struct.unpack("i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0] or None
    except OSError:
        pid = None
    return Peer(uid=uid.value, pid=pid)


def is_allowed(peer: Peer) -> bool:
    return peer.uid == os.geteuid()


def _exe_of(pid: int | None) -> str:
    if not pid:
        return ""
    import psutil  # only the agent pays for it, and only when a record names a peer
    try:
        return psutil.Process(pid).exe()
    except (psutil.Error, OSError):
        return ""
