"""The subreapers commands run under (credd/reaper.py), from the agent's side.

- One is kept started ahead of need: a Python start costs 20-40 ms, which a
  `run` would otherwise wait for. `take()` hands it out and starts the next;
  the first `run` after the agent starts pays for one start.
- A reaper is talked to over a socketpair (`Reaper`): the job with the
  command's descriptors, signals to pass on; back come its readiness, the
  command's pid and wait status, and whether its tree ended by itself.
  Closing the socket ends the tree; the agent's end closes it, even a crash.
- The agent becomes a child subreaper itself when it starts its first reaper
  (Linux), and reaps every child of its own on SIGCHLD. A reaper killed
  before its tree ended (`kill -9 $PPID` from its own command: same uid)
  leaves its orphans to the agent instead of to init, and the agent kills
  them at once, layer after layer: they never live on unbound. A connection
  one of them opens meanwhile descends from the agent but from no session
  root: bindings treat that as bound to nothing (see binding).
- The agent spawns nothing else, so reaping every child (`waitpid(-1)`) takes
  nobody's exit status away.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import marshal
import os
import signal
import socket
import sys
from typing import Any

import credd
from credd import reaper as r
from credd import subreaper
from credd.errors import BadRequest, CreddError, Denied, NotFound

log = logging.getLogger("credd.agent")

#: What the reapers put on their path: the directory holding the credd package.
CREDD_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(credd.__file__)))
_SWEEPS = 200  # rounds of killing adopted orphans (each round, one more generation)


class Reaper:
    """One subreaper process, and what it said on its control socket."""

    def __init__(self, pid: int, ctl: socket.socket) -> None:
        self.pid = pid
        self.ctl = ctl
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[int] = loop.create_future()      # 0, or an errno
        self.started: asyncio.Future[tuple[bytes, int]] = loop.create_future()
        self.waited: asyncio.Future[int] = loop.create_future()     # the command's status
        self.ended: asyncio.Future[None] = loop.create_future()     # nothing of its tree lives
        self.clean = False  # it said its tree ended by itself
        self.grants: frozenset[str] = frozenset()  # the grants its tree is bound to
        self._listener = asyncio.ensure_future(self._listen())

    def __repr__(self) -> str:
        return f"Reaper(pid={self.pid})"

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        buf = b""
        try:
            while data := await loop.sock_recv(self.ctl, 4096):
                buf += data
                while len(buf) >= r.RECORD:
                    self._heard(buf[:1], int.from_bytes(buf[1:r.RECORD], "big", signed=True))
                    buf = buf[r.RECORD:]
        except OSError:
            pass
        finally:
            self.ctl.close()
            gone = Denied("the command's subreaper ended unexpectedly")
            for future in (self.ready, self.started, self.waited):
                if not future.done():
                    future.set_exception(gone)
                    future.exception()  # retrieved: nobody may be waiting for it

    def _heard(self, kind: bytes, number: int) -> None:
        if kind == r.READY and not self.ready.done():
            self.ready.set_result(number)
        elif kind in (r.STARTED, r.FAILED) and not self.started.done():
            self.started.set_result((kind, number))
        elif kind == r.WAITED and not self.waited.done():
            self.waited.set_result(number)
        elif kind == r.DONE:
            self.clean = True

    async def start(self, spec: dict[str, Any], fds: tuple[int, int, int]) -> int:
        """Send the job with the command's descriptors; its pid, or why it did not start."""
        payload = marshal.dumps(spec)
        if len(payload) > r.MAX_JOB:
            raise BadRequest("the command's arguments and environment are too large")
        data = len(payload).to_bytes(4, "big") + payload
        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = self.ctl.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        if sent < len(data):
            await asyncio.get_running_loop().sock_sendall(self.ctl, data[sent:])
        kind, number = await self.started
        if kind == r.FAILED:
            what = f"cannot start {spec['argv'][0]}: {os.strerror(number)}"
            raise NotFound(what) if number == errno.ENOENT else BadRequest(what)
        return number

    def signal(self, sig: int) -> None:
        """Pass a signal on to the command's process group (nothing once it is gone)."""
        try:
            self.ctl.send(r.SIGNAL + bytes([sig]))
        except OSError:
            pass

    def end(self) -> None:
        """End the tree now (a revoked grant): the command's status still comes back."""
        try:
            self.ctl.send(r.END + b"\0")
        except OSError:
            pass

    def close(self) -> None:
        """End the tree, no longer listening: the reaper terminates what is left, then exits."""
        self._listener.cancel()  # its `finally` closes the socket, after the loop let go of it

    async def heard_out(self) -> None:
        """Until everything it said is read (its end of the socket closes as it exits)."""
        await asyncio.wait([self._listener])

    def gone(self) -> None:
        """Nothing of its tree is left (Reapers says so)."""
        if not self.ended.done():
            self.ended.set_result(None)


class Reapers:
    """The agent's subreapers: a spare started ahead of need, and those at work."""

    def __init__(self) -> None:
        self._spare: asyncio.Task[Reaper] | None = None
        self._all: dict[int, Reaper] = {}  # pid -> every reaper not yet reaped
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching = False

    async def take(self) -> Reaper:
        """A subreaper ready for a job (the spare, if it started well); the next one starts."""
        self._watch_children()
        spare, self._spare = self._spare, None
        reaper = None
        if spare is not None:
            try:
                reaper = await spare
            except CreddError:
                reaper = None
        if reaper is None or reaper.pid not in self._all:
            reaper = await self._started()
        if self._spare is None:  # (another take may have started one meanwhile)
            self._spare = asyncio.ensure_future(self._started())
            self._spare.add_done_callback(_retrieved)
        return reaper

    async def _started(self) -> Reaper:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.set_inheritable(theirs.fileno(), True)
            pid = _spawn(theirs.fileno())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        reaper = self._all[pid] = Reaper(pid, ours)
        error = await reaper.ready
        if error:
            reaper.close()
            raise Denied("running a command for a bound caller needs a child subreaper "
                         f"(Linux): {os.strerror(error)}")
        return reaper

    async def _reaped(self, reaper: Reaper) -> None:
        """Its tree ended by itself, or whatever it left came to the agent and is ended
        here, before `ended` is done (a session stays registered until then)."""
        await reaper.heard_out()
        if not reaper.clean:
            await self._end_adopted()
        reaper.gone()

    def end(self, grants: set[str]) -> None:
        """The trees bound to any of these grants end (revoked, expired)."""
        for reaper in list(self._all.values()):
            if reaper.grants & grants:
                reaper.end()

    def close(self) -> None:
        """At the agent's end: every tree ends (their reapers terminate them)."""
        if self._spare is not None:
            self._spare.cancel()
            self._spare = None
        for reaper in list(self._all.values()):
            reaper.close()

    # ------------------------------------------------------------ the agent's own children

    def _watch_children(self) -> None:
        """Once: become a subreaper, and reap every child of ours whenever one ends."""
        if self._watching:
            return
        self._watching = True
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(subreaper.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                log.warning("could not become a child subreaper: the orphans of a killed "
                            "run's subreaper would go to init")
        asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, self._reap)
        # a run's terminal may be the agent's own (`credd serve &`): reading it from the
        # background must fail (EIO, the keyboard ends), not stop the agent
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)

    def _reap(self) -> None:
        """Collect every child of the agent that ended (reapers, adopted orphans)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reaper = self._all.pop(pid, None)
            if reaper is not None:
                self._tasks.add(task := asyncio.ensure_future(self._reaped(reaper)))
                task.add_done_callback(self._tasks.discard)

    async def _end_adopted(self) -> None:
        """Kill our children that are not reapers (the orphans of one that ended before its
        tree did) until none is left: each killed one's children come to us in turn."""
        for _ in range(_SWEEPS):
            adopted = [pid for pid in subreaper.children(os.getpid()) if pid not in self._all]
            if not adopted:
                return
            log.warning("ending %d process(es) left by a run whose subreaper ended first",
                        len(adopted))
            for pid in adopted:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            await asyncio.sleep(0.01)


def _retrieved(task: asyncio.Task[Reaper]) -> None:
    """A spare that could not start is retried at the next take; its error is not lost."""
    if not task.cancelled():
        task.exception()


def _spawn(fd: int) -> int:
    """Start a reaper: no environment, no site-packages (credd's own directory alone on its
    path), a session of its own, stdin and stdout /dev/null, stderr the agent's log."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    argv = [sys.executable, "-I", "-S", "-c", r.BOOT, CREDD_PARENT, str(fd)]
    return os.posix_spawn(sys.executable, argv, {}, file_actions=actions, setsid=True,
                          setsigdef=(signal.SIGTTIN, signal.SIGTTOU))
