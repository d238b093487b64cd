"""What a connection acts as, decided once at accept from its peer: the owner, or grants.

The first that applies (docs/grants.md):

1. a grant socket (a sandbox uid's own listener): that socket's grant;
2. a peer whose process ancestry holds a registered session root: that
   session's grant, on any socket. Each process's parent and start time come
   from `/proc/<pid>/stat`, walked up to pid 1. A root is a (pid, start time)
   pair, so a process that got a dead root's pid is never taken for it, and an
   ancestor that starts after its child is a reused pid: the walk starts over;
3. otherwise the owner.

A connection cannot opt out: nothing it sends changes its binding. Sessions
nested in sessions are bound by every one of them (`Binding.outer`). Between
processes of one uid a session deters and audits; it is not a wall: a process
can ask one outside its tree (systemd --user, a tmux server) to connect for it.
docs/grants.md lists what is open. The walk reads only the peer's ancestors
(no scan of /proc), none older than the oldest root (start times only grow
down a tree), and nothing at all while no session is registered. The audit
trail takes a record's grant and session from here (`Origin`: docs/audit.md).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal, Protocol

from credd.grants import OWNER_POLICY, Grant, Policy, new_id

from .peer import Peer

Via = Literal["owner", "session", "socket"]
MAX_DEPTH = 4096  # a deeper chain is a loop in what /proc said; refuse it


class NotAdmitted(Exception):
    """A peer a listener does not admit; the message says why (for the log and the trail)."""


class Unidentified(NotAdmitted):
    """The peer's ancestry cannot be read (it exited, or /proc hides it): while any session
    is registered, such a peer is refused rather than taken for the owner."""


@dataclass(frozen=True, slots=True)
class Binding:
    grant: Grant | None            # None: the owner
    session: str | None = None     # the session id when bound through a session
    via: Via = "owner"
    outer: tuple[Grant, ...] = ()  # grants of the sessions this one runs inside: they bind too
    policy: Policy = field(init=False, repr=False, compare=False)  # what the connection may do

    def __post_init__(self) -> None:
        policy = OWNER_POLICY if self.grant is None else Policy(self.grants)
        object.__setattr__(self, "policy", policy)

    @property
    def grants(self) -> tuple[Grant, ...]:
        """Every grant that binds the connection, the nearest first."""
        return () if self.grant is None else (self.grant, *self.outer)

    @property
    def owner(self) -> bool:
        return self.grant is None

    @property
    def grant_id(self) -> str:
        """The grant's id, "" for the owner (how audit records carry it)."""
        return "" if self.grant is None else self.grant.id


OWNER = Binding(grant=None)


class Origin(Protocol):
    """Where a request came from: the peer as the kernel named it, and its binding (what
    an audit record names: `binding.grant_id`, `binding.session`)."""

    @property
    def peer(self) -> Peer | None: ...

    @property
    def binding(self) -> Binding: ...


@dataclass(frozen=True, slots=True)
class Refused:
    """The origin of a peer refused at accept: it never had a connection or a binding."""

    peer: Peer | None
    binding: Binding = OWNER


def parent_and_start(pid: int) -> tuple[int, int]:
    """(parent pid, start time in clock ticks since boot) of a process, from /proc/<pid>/stat.

    FileNotFoundError/ProcessLookupError when it is gone. The command name, field 2,
    may hold spaces and parentheses, so the fields are counted after its last ')'.
    """
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if not data:
        raise ProcessLookupError(pid)  # an exited process whose entry lingers
    fields = data.rpartition(b")")[2].split()
    return int(fields[1]), int(fields[19])  # ppid (field 4), starttime (field 22)


Root = tuple[int, int]  # (pid, start time)


class Sessions:
    """Registered session roots, and the walk that finds the ones a peer runs inside."""

    def __init__(self, agent: int | None = None) -> None:
        self._roots: dict[Root, Binding] = {}
        self._ids: dict[str, Root] = {}
        self._agent = agent  # the agent's pid: see enclosing()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, pid: int, binding: Binding) -> str:
        """Register `pid` (with its start time, read here) as a session root bound like
        `binding`; returns the session id. Raises ProcessLookupError if pid is gone, and
        ValueError if it is a session root already."""
        root = (pid, parent_and_start(pid)[1])
        if root in self._roots:
            raise ValueError(f"process {pid} is the root of a session already")
        session = new_id("s_")
        self._roots[root] = dataclasses.replace(binding, session=session, via="session")
        self._ids[session] = root
        return session

    def remove(self, session: str) -> None:
        root = self._ids.pop(session, None)
        if root is not None:
            del self._roots[root]

    def get(self, session: str) -> Binding | None:
        root = self._ids.get(session)
        return None if root is None else self._roots[root]

    def ids(self) -> list[str]:
        return list(self._ids)

    def binding_for(self, pid: int | None) -> Binding:
        """The binding of a peer on the main socket: its nearest session's (bound by the
        sessions around it too), or OWNER when no registered root is an ancestor.
        Unidentified when sessions exist and the ancestry cannot be read."""
        around = self.enclosing(pid)
        if not around:
            return OWNER
        nearest = around[0]
        outer = _merged(nearest, around[1:])
        return nearest if outer == nearest.outer else dataclasses.replace(nearest, outer=outer)

    def enclosing(self, pid: int | None) -> list[Binding]:
        """The bindings of the sessions whose roots are `pid` or its ancestors, nearest first.

        Only a run's subreaper makes the agent a process's ancestor; one that descends
        from the agent through no root was left by a killed subreaper (its orphans come
        to the agent, which kills them, keeping the run's session meanwhile so that this
        walk happens): refused, never the owner."""
        if not self._roots:
            return []
        if pid is None:
            raise Unidentified("the peer's process is unknown")
        floor = min(start for _pid, start in self._roots)
        chain, above = _ancestry(pid, floor)
        found = [self._roots[r] for r in chain if r in self._roots]
        if not found and self._agent and self._agent in (above, *(a for a, _ in chain[1:])):
            raise Unidentified(f"process {pid} was left by a run whose subreaper ended")
        return found


def _merged(nearest: Binding, others: list[Binding]) -> tuple[Grant, ...]:
    """nearest's outer grants, then those of the sessions around it, each once."""
    seen = {g.id for g in nearest.grants}
    outer = list(nearest.outer)
    for binding in others:
        for grant in binding.grants:
            if grant.id not in seen:
                seen.add(grant.id)
                outer.append(grant)
    return tuple(outer)


def _ancestry(pid: int, floor: int = 0, attempts: int = 3) -> tuple[list[Root], int]:
    """(pid, start time) of `pid` and each ancestor up to pid 1, or up to the first that
    started before `floor` (the oldest root's start: no process older than every root is
    one, nor are its ancestors, older still); and the pid the walk stopped at (that first
    older ancestor, or 1: a run's orphan stops at the agent). An ancestor that exits
    mid-walk (its children move to a subreaper) or whose pid was reused (it started after
    its child) makes the walk start over."""
    for _ in range(attempts):
        chain: list[Root] = []
        current, child_start = pid, None
        try:
            while current > 1 and len(chain) < MAX_DEPTH:
                parent, start = parent_and_start(current)
                if child_start is not None and start > child_start:
                    raise ProcessLookupError(current)  # a reused pid, not the parent
                if start < floor:
                    return chain, current
                chain.append((current, start))
                current, child_start = parent, start
        except (FileNotFoundError, ProcessLookupError):
            if not chain:
                raise Unidentified(f"process {pid} is gone") from None
            continue
        except (OSError, ValueError, IndexError) as exc:
            raise Unidentified(f"the ancestry of process {pid} cannot be read ({exc})") from None
        if current > 1:
            raise Unidentified(f"the ancestry of process {pid} is deeper than {MAX_DEPTH}")
        return chain, current
    raise Unidentified(f"the ancestry of process {pid} kept changing while it was read")
