"""systemd integration without a dependency: socket activation and sd_notify.

`inherited_listener()` takes over a socket that systemd (or
`systemd-socket-activate`) opened for us, only when LISTEN_PID names this
process and exactly one listening AF_UNIX stream socket was passed (fd 3),
and only after the same owner and permission checks a socket we bind gets.
The agent must never unlink an inherited socket: the service manager owns it.
`notify()` sends a state line such as READY=1 to $NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import socket
import stat

from credd.errors import BadRequest, InsecurePath
from credd.paths import check_private_dir

SD_LISTEN_FDS_START = 3


class ActivationError(BadRequest):
    """The inherited sockets are not what credd can serve on."""


def inherited_listener() -> socket.socket | None:
    """The socket passed by the service manager, or None when not activated."""
    pid, fds = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)  # not for our children
    if not pid or not fds or fds == "0":
        return None
    if not pid.isdigit() or int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    if fds != "1":
        raise ActivationError(f"expected exactly one socket from the service manager, "
                              f"got LISTEN_FDS={fds}")
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as exc:
        raise ActivationError(
            f"fd {SD_LISTEN_FDS_START} is not a socket ({exc.strerror})") from None
    try:
        _check_listener(sock)
    except BaseException:
        sock.detach()  # leave the manager's fd alone
        raise
    os.set_inheritable(sock.fileno(), False)
    return sock


def _check_listener(sock: socket.socket) -> None:
    """Refuse a socket we would not have made: wrong kind, not listening, or reachable by others."""
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise ActivationError("the inherited socket is not an AF_UNIX stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ActivationError("the inherited socket is not listening")
    path = sock.getsockname()
    if not isinstance(path, str) or not path or path.startswith("\0"):
        raise ActivationError("the inherited socket has no path (abstract or unnamed sockets "
                              "cannot be permission-checked)")
    try:
        check_private_dir(os.path.dirname(os.path.abspath(path)))
        st = os.lstat(path)
    except FileNotFoundError:
        raise ActivationError(f"the inherited socket's path {path} no longer exists") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise InsecurePath(f"{path} is not a socket owned by you (uid {os.geteuid()})")
    if st.st_mode & 0o022:  # connect() needs write permission: nobody else may have it
        raise InsecurePath(f"{path} can be connected to by other users (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}); set SocketMode=0600")


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
