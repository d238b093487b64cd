"""systemd integration without a dependency: socket activation and sd_notify.

`inherited_listener()` takes over a socket that systemd (or
`systemd-socket-activate`) opened for us, only when LISTEN_PID names this
process and exactly one listening AF_UNIX stream socket was passed (fd 3).
`notify()` sends a state line such as READY=1 to $NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


class ActivationError(RuntimeError):
    """The inherited sockets are not what credd can serve on."""


def inherited_listener() -> socket.socket | None:
    """The socket passed by the service manager, or None when not activated."""
    pid, fds = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if not pid or not fds:
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)  # not for our children
    if not pid.isdigit() or int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    if fds != "1":
        raise ActivationError(f"expected exactly one socket from the service manager, got {fds}")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ActivationError("the inherited socket is not an AF_UNIX stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError("the inherited socket is not listening")
    os.set_inheritable(sock.fileno(), False)
    return sock


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; False when none listens."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True
