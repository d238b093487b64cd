"""The subreaper a command the agent runs starts under (the `run` request).

The agent starts it with `python -I -S` (no environment, no site-packages:
only credd's directory on its path, for this module and credd.subreaper, the
process-tree rules it shares with `credd session`), ahead of need, and hands
it one job over the control socket FD (credd/daemon/reapers.py is the agent's
side):

1. At start it becomes a child subreaper (PR_SET_CHILD_SUBREAPER, Linux), and
   not dumpable, so the command (same uid) cannot ptrace it to speak for it:
   every process its command starts, orphans included (a double fork,
   `setsid`, `nohup ... &`), stays below it, re-parented to it rather than to
   init. Its pid is an ancestor of all of them for as long as any lives, so the
   agent registers it as the session root of the caller's grant *before* it
   sends the job: the command is bound from its first instruction.
2. The job: argv (argv[0] a path the agent resolved), environment, working
   directory, umask, whether fd 1 becomes the controlling terminal, a deadline;
   the command's stdin, stdout and stderr ride on it (SCM_RIGHTS).
3. It forks and execs the command in a session of its own, reports its pid
   or the errno that kept it from starting, then its wait status, and goes on
   reaping until no descendant is left; then it says so and exits.
4. The agent closing the control socket (a revoke, the agent's end, a crash)
   or the deadline (the grant's expiry) ends the whole tree: SIGTERM to its
   children, SIGKILL after GRACE, layer after layer (a killed process's orphans
   come to it) until none is left. Only its own children are signalled, whose
   pids cannot be reused before it reaps them.

Messages. Agent to reaper: the job, a 4-byte big-endian length and a
`marshal` dump (the agent is this process's parent: its data is trusted);
then two-byte orders: SIGNAL and a signal for the command's process group, or
END. Reaper to agent: 5-byte records, a kind byte and a 4-byte big-endian
number. The command's status is reported however the tree ends.
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from credd import subreaper

Spec = dict[str, Any]  # the job: argv, path, env, cwd, umask, ctty, deadline
MAX_JOB = 4 << 20           # a job is at most a frame's worth of argv and environment
#: How the agent starts a reaper: `python -I -S -c BOOT CREDD_PARENT_DIR FD`.
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); from credd.reaper import main; "
        "sys.exit(main(int(sys.argv[2])))")
RECORD = 5                  # kind + 4-byte number

# reaper -> agent
READY = b"R"     # a subreaper now, waiting for its job (0), or could not become one (errno)
STARTED = b"P"   # the command's pid
FAILED = b"X"    # the errno that kept the command from starting
WAITED = b"W"    # the command's wait status
DONE = b"D"      # no descendant is left (0): the tree ended by itself
# agent -> reaper, two bytes each
SIGNAL = b"S"    # + the signal for the command's process group
END = b"E"       # + 0: end the tree now (a revoked grant); closing the socket does too


def record(kind: bytes, number: int) -> bytes:
    return kind + number.to_bytes(4, "big", signed=True)


def main(fd: int) -> int:
    os.set_inheritable(fd, False)  # the command must never hold the agent's line to us
    ctl = socket.socket(fileno=fd)
    try:
        subreaper.become_subreaper()
    except OSError as exc:
        ctl.sendall(record(READY, exc.errno or 38))  # ENOSYS: not Linux
        return 1
    ctl.sendall(record(READY, 0))
    wakeup = _wake_on_sigchld()
    job = _receive_job(ctl)
    if job is None:  # an unused spare: the agent stopped
        return 0
    spec, fds = job
    pid = _start(ctl, spec, fds)
    if pid is not None:
        _watch(ctl, wakeup, pid, spec.get("deadline") or 0.0)
    return 0


def _wake_on_sigchld() -> int:
    """A descriptor that becomes readable whenever a child changes state."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    signal.set_wakeup_fd(w)
    return r


def _receive_job(ctl: socket.socket) -> tuple[Spec, list[int]] | None:
    """The job and its three descriptors (None: the agent closed the socket first)."""
    data, ancillary, _flags, _ = ctl.recvmsg(4, socket.CMSG_SPACE(3 * 4),
                                             getattr(socket, "MSG_CMSG_CLOEXEC", 0))
    fds = [int.from_bytes(item[i:i + 4], sys.byteorder)
           for level, kind, item in ancillary
           if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for i in range(0, len(item) - len(item) % 4, 4)]
    if not data:
        return None
    while len(data) < 4:
        data += _recv_exactly(ctl, 4 - len(data))
    length = int.from_bytes(data, "big")
    if len(fds) != 3 or length > MAX_JOB:
        raise SystemExit("credd reaper: a malformed job")
    spec: Spec = marshal.loads(_recv_exactly(ctl, length))
    return spec, fds


def _recv_exactly(ctl: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        part = ctl.recv(min(n, 1 << 20))
        if not part:
            raise SystemExit(0)  # the agent went away mid-job: nothing was started
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _start(ctl: socket.socket, spec: Spec, fds: list[int]) -> int | None:
    """Start the command; report its pid (or the errno), return it (or None)."""
    try:
        pid = subreaper.spawn(spec["argv"], spec["env"], path=spec["path"],
                              setup=lambda: _become_command(spec, fds))
    except OSError as exc:
        ctl.sendall(record(FAILED, exc.errno or 1))
        return None
    finally:
        for fd in fds:
            os.close(fd)
    ctl.sendall(record(STARTED, pid))
    return pid


def _become_command(spec: Spec, fds: list[int]) -> None:
    """In the child, before exec: a session of its own (and the terminal), its streams,
    the caller's umask and directory."""
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)  # dup2 leaves the copy inheritable
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    if spec.get("ctty"):
        import fcntl
        import termios
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)
    signal.set_wakeup_fd(-1)
    os.umask(spec.get("umask", 0o022))
    os.chdir(spec["cwd"])


def _watch(ctl: socket.socket, wakeup: int, pid: int, deadline: float) -> None:
    """Reap the tree and pass signals on until it is empty, or end it when told to, at the
    deadline, or when the agent is gone; the command's status is reported either way."""
    command = _Command(ctl, pid)
    ctl.setblocking(False)
    line = ctl.fileno()
    while True:
        timeout = None if not deadline else max(0.0, deadline - time.time())
        readable, _, _ = select.select([line, wakeup], [], [], timeout)
        if wakeup in readable:
            _drain(wakeup)
        if not readable or (line in readable and not _obey(ctl, command.pid)):
            subreaper.end_all(subreaper.GRACE, command.reaped)
        if not subreaper.reap(command.reaped) and command.pid is None:
            _say(ctl, DONE, 0)
            return


class _Command:
    """The command's pid until it is reaped; its wait status is then reported."""

    def __init__(self, ctl: socket.socket, pid: int) -> None:
        self.ctl = ctl
        self.pid: int | None = pid

    def reaped(self, pid: int, status: int) -> None:
        if pid == self.pid:
            self.pid = None
            _say(self.ctl, WAITED, status)


def _obey(ctl: socket.socket, command: int | None) -> bool:
    """Act on what the agent sent; False when it asks for the end, or is gone."""
    try:
        data = ctl.recv(4096)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if not data:
        return False
    for i in range(0, len(data) - 1, 2):
        kind, number = data[i:i + 1], data[i + 1]
        if kind == END:
            return False
        if kind == SIGNAL and command is not None:
            try:
                os.killpg(command, number)
            except OSError:  # the group is gone, or it left it: the command itself
                try:
                    os.kill(command, number)
                except OSError:
                    pass
    return True


def _say(ctl: socket.socket, kind: bytes, number: int) -> None:
    """A report to the agent, if it still listens."""
    try:
        ctl.sendall(record(kind, number))
    except OSError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


