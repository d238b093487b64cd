"""The agent's listening socket: private directory, one agent per path, no stolen sockets.

An `flock`ed lock file beside the socket (credd/lockfile.py) says who serves
there: a second agent fails to take it and exits, leaving the first one
serving. The holder of the lock may replace a socket node only after a probe
connect is refused (a stale node left by kill -9); a node that still answers
is never unlinked. The node is
born 0600 (umask 0177 around bind, as ssh-agent does) in a 0700 directory we own.
A socket inherited from the service manager is used as it is and never unlinked.
"""

from __future__ import annotations

import os
import socket
import stat

from credd import lockfile
from credd.errors import InsecurePath, InUse
from credd.paths import check_socket_path, ensure_private_dir

BACKLOG = 512


class Listener:
    def __init__(self, sock: socket.socket, path: str, *, owned: bool, lock_fd: int | None = None):
        self.sock = sock
        self.path = path
        self.owned = owned
        self._lock_fd = lock_fd
        self._inode = os.lstat(path).st_ino if owned else None
        sock.setblocking(False)

    @classmethod
    def inherit(cls, sock: socket.socket) -> Listener:
        return cls(sock, sock.getsockname() or "", owned=False)

    @classmethod
    def bind(cls, path: str) -> Listener:
        check_socket_path(path)
        ensure_private_dir(os.path.dirname(os.path.abspath(path)))
        lock_fd = _take_lock(path + ".lock", path)
        try:
            _clear_stale(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
            sock.listen(BACKLOG)
            return cls(sock, path, owned=True, lock_fd=lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    def close(self) -> None:
        """Stop listening; remove the node only if it is still the one we bound."""
        self.sock.close()
        if self.owned:
            try:
                if os.lstat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.owned = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _take_lock(lock_path: str, sock_path: str) -> int:
    try:
        return lockfile.take(lock_path, pid=os.getpid(), socket=sock_path)
    except lockfile.Held as held:
        raise InUse(f"another credd agent (pid {held.owner.get('pid', '?')}) is already "
                     f"serving on {sock_path}; use it, or stop it with `credd stop`") from None


def _clear_stale(path: str) -> None:
    """Remove a dead agent's socket node; refuse anything else found at `path`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise InsecurePath(f"{path} exists and is not a socket of yours; move it away")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # nobody listens: a stale node
            return
        except OSError:
            pass  # a full backlog or a slow agent: alive
    raise InUse(f"a process is already answering on {path} (not holding the agent lock); "
                 "stop it or choose another CREDD_SOCK")
