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

Reaped = Callable[[int, int], None]  # (pid, wait status) of a child reaped

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGHUP)
LEFT_ALONE = (signal.SIGINT, signal.SIGQUIT)  # the terminal sends these to the command too
#: Back to their defaults in the command: ours, and what Python ignores from its start-up
#: (an ignored SIGPIPE would outlive exec: `yes | head` would complain instead of ending).
RESET = (*FORWARDED, *LEFT_ALONE, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD,
         signal.SIGTTIN, signal.SIGTTOU)  # the agent ignores these two (reapers.py)
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


def spawn(argv: Sequence[str], env: dict[str, str], *, path: str | None = None,
          setup: Callable[[], None] | None = None) -> int:
    """Start `argv` as our child; its pid. `path`: the file to execute (else argv[0] looked
    up in env's PATH); `setup` runs in the child just before (its descriptors, session...).
    An exec failure is raised here (OSError), not reported as an exit status, through a
    close-on-exec pipe."""
    parent = os.getpid()
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return into the caller's code
        errno = 1
        try:
            os.close(rfd)
            for sig in RESET:
                signal.signal(sig, signal.SIG_DFL)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)
            if setup is not None:
                setup()
            if path is None:
                os.execvpe(argv[0], list(argv), env)
            os.execve(path, list(argv), env)
        except OSError as exc:
            errno = exc.errno or 1
        except BaseException:  # what execve refuses before the kernel sees it (NUL bytes)
            errno = 22  # EINVAL
        finally:
            os.write(wfd, str(errno).encode())
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


def end_all(grace: float = GRACE, on_reaped: Reaped | None = None) -> int:
    """End and reap every descendant still alive (ours, being the subreaper): SIGTERM, then
    SIGKILL after `grace`; how many were ended. Only our own children are signalled, whose
    pids cannot be reused before we reap them; each killed one's children come to us."""
    deadline = time.monotonic() + grace
    ended: set[int] = set()
    while reap(on_reaped):  # children are left: the command's leftovers, re-parented to us
        hard = time.monotonic() >= deadline
        for pid in children(os.getpid()):
            if hard or pid not in ended:
                _kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
                ended.add(pid)
        time.sleep(0.02)
    return len(ended)


def reap(on_reaped: Reaped | None = None) -> bool:
    """Reap every child that has exited (`on_reaped(pid, wait status)` for each); whether
    any child (running or not) is left."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if on_reaped is not None:
            on_reaped(pid, status)


def children(parent: int) -> list[int]:
    """The live children of `parent` (of all its threads: a multi-threaded subreaper, the
    agent, adopts orphans on any of them), from /proc's parent fields."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent(int(entry)) == parent:
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
