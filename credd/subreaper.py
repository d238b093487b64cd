"""Run a command as the top of a process tree that stays ours, then end the whole tree.

`credd session` runs its command this way (docs/grants.md): the calling
process becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so a grandchild
that double-forks away from the command is re-parented to it, not to init,
and stays inside the tree the agent's ancestry walk sees. The command gets
SIGKILL if that process dies (PR_SET_PDEATHSIG), and once the command exits,
every descendant still running is ended (SIGTERM, then SIGKILL) and reaped:
nothing started in the session outlives it.

The process is made non-dumpable, so the processes of the session (same uid)
cannot ptrace it or take its file descriptors (its connection to the agent).
Ctrl-C and Ctrl-\\ go to the command, which shares the terminal's foreground
process group; SIGTERM and SIGHUP sent here are passed on to it.

Linux only; standard library only.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGHUP)
LEFT_ALONE = (signal.SIGINT, signal.SIGQUIT)  # the terminal sends these to the command too
GRACE = 2.0  # seconds the leftover processes get between SIGTERM and SIGKILL


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def become_subreaper() -> None:
    """Adopt orphaned descendants, and keep the session's processes from tracing us."""
    if not sys.platform.startswith("linux"):
        raise OSError(0, "sessions need Linux (PR_SET_CHILD_SUBREAPER)")
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_DUMPABLE, 0)


def spawn(argv: Sequence[str], env: dict[str, str]) -> int:
    """Start `argv` as our child; its pid. An exec failure is raised here (OSError), not
    reported as an exit status, through a close-on-exec pipe."""
    parent = os.getpid()
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return into the caller's code
        try:
            os.close(rfd)
            for sig in (*FORWARDED, *LEFT_ALONE):
                signal.signal(sig, signal.SIG_DFL)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)
            os.execvpe(argv[0], list(argv), env)
        except OSError as exc:
            os.write(wfd, str(exc.errno or 1).encode())
        finally:
            os._exit(127)
    os.close(wfd)
    try:
        failed = os.read(rfd, 16)
    finally:
        os.close(rfd)
    if failed:
        os.waitpid(pid, 0)
        errno = int(failed)
        raise OSError(errno, f"{argv[0]}: {os.strerror(errno)}")
    return pid


def run(pid: int, watch: int | None = None, on_lost: Callable[[], None] | None = None) -> int:
    """Wait for child `pid`, passing SIGTERM/SIGHUP on; its exit status (128 + signal when
    killed). If `watch` (a socket) becomes readable first, which for the agent's connection
    means it went away, `on_lost` is told and the child is ended."""
    forward = {sig: signal.signal(sig, lambda s, _f: _kill(pid, s)) for sig in FORWARDED}
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in LEFT_ALONE}
    try:
        with selectors.DefaultSelector() as sel, _pidfd(pid) as child:
            sel.register(child, selectors.EVENT_READ)
            if watch is not None:
                sel.register(watch, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in sel.select()}
                if child in ready:
                    break
                if watch in ready:
                    if on_lost is not None:
                        on_lost()
                    _kill(pid, signal.SIGTERM)
                    sel.unregister(watch)
                    watch = None
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        return 128 - code if code < 0 else code  # killed by a signal: as a shell says it
    finally:
        for sig, handler in {**forward, **ignored}.items():
            signal.signal(sig, handler)


def end_all(grace: float = GRACE) -> int:
    """End and reap every descendant still alive (ours, being the subreaper): SIGTERM, then
    SIGKILL after `grace`; how many were ended."""
    deadline = time.monotonic() + grace
    ended: set[int] = set()
    while _reap():  # children are left: the command's leftovers, re-parented to us
        hard = time.monotonic() >= deadline
        for pid in _children():
            if hard or pid not in ended:
                _kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
                ended.add(pid)
        time.sleep(0.02)
    return len(ended)


def _reap() -> bool:
    """Reap every child that has exited; whether any child (running or not) is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _children() -> list[int]:
    """Our live children: the command's leftovers, re-parented to us."""
    me = os.getpid()
    found = []
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            found = [int(p) for p in f.read().split()]
    except OSError:  # no CONFIG_PROC_CHILDREN: scan /proc
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _parent(int(entry)) == me:
                found.append(int(entry))
    return found


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class _pidfd:
    def __init__(self, pid: int) -> None:
        self.fd = os.pidfd_open(pid)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
