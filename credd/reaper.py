"""The subreaper a command the agent runs starts under (the `run` request).

The agent starts this file as a script, `python -I -S reaper.py FD` (standard
library only, no environment, nothing of credd's on its path), ahead of need,
and hands it one job over the control socket FD (credd/daemon/reapers.py is
the agent's side):

1. At start it becomes a child subreaper (PR_SET_CHILD_SUBREAPER, Linux):
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

PR_SET_CHILD_SUBREAPER = 36
GRACE = 2.0                 # seconds between SIGTERM and SIGKILL when the tree is ended
MAX_JOB = 4 << 20           # a job is at most a frame's worth of argv and environment
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
    error = _become_subreaper()
    ctl.sendall(record(READY, error))
    if error:
        return 1
    wakeup = _wake_on_sigchld()
    job = _receive_job(ctl)
    if job is None:  # an unused spare: the agent stopped
        return 0
    spec, fds = job
    pid = _start(ctl, spec, fds)
    if pid is not None:
        _watch(ctl, wakeup, pid, spec.get("deadline") or 0.0)
    return 0


def _become_subreaper() -> int:
    """0, or the errno why this process cannot keep its orphans (not Linux, or refused)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return 0
        return ctypes.get_errno() or 1
    except (OSError, AttributeError):
        return 38  # ENOSYS


def _wake_on_sigchld() -> int:
    """A descriptor that becomes readable whenever a child changes state."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    signal.set_wakeup_fd(w)
    return r


def _receive_job(ctl: socket.socket) -> tuple[dict, list[int]] | None:
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
    return marshal.loads(_recv_exactly(ctl, length)), fds


def _recv_exactly(ctl: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        part = ctl.recv(min(n, 1 << 20))
        if not part:
            raise SystemExit(0)  # the agent went away mid-job: nothing was started
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _start(ctl: socket.socket, spec: dict, fds: list[int]) -> int | None:
    """Fork and exec the command; report its pid (or the errno), return it (or None)."""
    check_r, check_w = os.pipe()  # close-on-exec: EOF means the exec happened
    pid = os.fork()
    if pid == 0:
        os.close(check_r)
        try:
            _become_command(spec, fds)
        except OSError as exc:
            os.write(check_w, (exc.errno or 1).to_bytes(4, "big"))
        except BaseException:  # what execve refuses before the kernel sees it
            os.write(check_w, (22).to_bytes(4, "big"))  # EINVAL
        os._exit(127)
    os.close(check_w)
    for fd in fds:
        os.close(fd)
    failure = b""
    while chunk := os.read(check_r, 4):
        failure += chunk
    os.close(check_r)
    if failure:
        os.waitpid(pid, 0)
        ctl.sendall(record(FAILED, int.from_bytes(failure[:4], "big")))
        return None
    ctl.sendall(record(STARTED, pid))
    return pid


def _become_command(spec: dict, fds: list[int]) -> None:
    """In the forked child: its own session (and terminal), the streams, then exec."""
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
    # what Python set at start-up, which an exec would otherwise keep: ignored SIGPIPE
    # and SIGXFSZ, and (the agent's) umask
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.umask(spec.get("umask", 0o022))
    os.chdir(spec["cwd"])
    os.execve(spec["path"], spec["argv"], spec["env"])


def _watch(ctl: socket.socket, wakeup: int, pid: int, deadline: float) -> None:
    """Reap the tree and pass signals on until it is empty, or end it when told to, at the
    deadline, or when the agent is gone; the command's status is reported either way."""
    command: int | None = pid  # until reaped
    ctl.setblocking(False)
    while True:
        timeout = None if not deadline else max(0.0, deadline - time.time())
        readable, _, _ = select.select([ctl, wakeup], [], [], timeout)
        if wakeup in readable:
            _drain(wakeup)
        ending = not readable or (ctl in readable and not _obey(ctl, command))
        if ending:
            command = _end_tree(ctl, command)
        command, left = _reap(ctl, command)
        if not left and command is None:
            _say(ctl, DONE, 0)
            return


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


def _reap(ctl: socket.socket, command: int | None) -> tuple[int | None, bool]:
    """Collect every child that ended; report the command's status. Returns the command
    (None once reaped) and whether any descendant is left."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return command, False
        if pid == 0:
            return command, True
        if pid == command:
            command = None
            _say(ctl, WAITED, status)


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


def children(parent: int) -> list[int]:
    """The children of `parent`, from /proc's parent fields (every thread's children: a
    multi-threaded subreaper such as the agent adopts orphans on any of its threads)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(name))
    return found


def _end_tree(ctl: socket.socket, command: int | None) -> int | None:
    """SIGTERM to the children, GRACE, then SIGKILL until none is left; the command's
    status is reported when it is reaped. Returns the command (None: reaped)."""
    _signal_children(signal.SIGTERM)
    until = time.monotonic() + GRACE
    while True:
        command, left = _reap(ctl, command)
        if not left:
            return command
        if time.monotonic() >= until:
            _signal_children(signal.SIGKILL)
        time.sleep(0.02)


def _signal_children(sig: int) -> None:
    for pid in children(os.getpid()):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
