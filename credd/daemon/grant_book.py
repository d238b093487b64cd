"""The grants the agent knows, in memory while the vault is unlocked.

Grants are security state, so their home is the vault (records of kind
`grant`, sealed and rollback-protected like entries): they are read at
unlock, dropped at lock, and every change is written back by the handler
that makes it (grant_handlers.py, gate.py). This module only keeps them: the
records' encoding, the chains of grants made inside grants, revocation down
those chains, counting uses, and one timer that tells the watchers (the
server's grant sockets) when a grant expires. No I/O here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import msgspec

from credd.errors import Denied
from credd.grants import Grant, ended, spent

KIND = "grant"  # the vault record kind
KEEP_DEAD = 7 * 86400.0  # revoked or expired grants stay listed (`grant ls --all`) this long
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Grant)


class Records(Protocol):
    """Where grants are kept: the vault's agent records (`credd.vault.Vault`)."""

    def records(self, kind: str) -> dict[str, bytes]: ...
    def put_record(self, kind: str, id: str, blob: bytes) -> None: ...
    def delete_record(self, kind: str, id: str) -> None: ...


def encode(grant: Grant) -> bytes:
    """A grant's record; the socket path is the running agent's, not kept."""
    return _encoder.encode(msgspec.structs.replace(grant, socket=""))


def save(records: Records, grants: Iterable[Grant]) -> None:
    """Write grants' records (on the agent's writer thread)."""
    for grant in grants:
        records.put_record(KIND, grant.id, encode(grant))


class GrantBook:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._grants: dict[str, Grant] = {}
        self._sockets: dict[str, str] = {}  # grant id -> the path its socket listens on
        self._watchers: list[Callable[[], None]] = []
        self._expired: Callable[[list[Grant]], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._unexpired: set[str] = set()  # in force when last seen: their expiry is announced

    # ------------------------------------------------------------ loading

    def load(self, blobs: dict[str, bytes]) -> list[str]:
        """Take the grants read from the vault (at unlock); returns the ids of records to
        delete (dead for longer than KEEP_DEAD). A record that does not decode is a bug or
        a newer agent's: it is kept in the vault and left out here (fail closed)."""
        now = self.clock()
        self._grants.clear()
        stale = []
        for key, blob in blobs.items():
            try:
                grant = _decoder.decode(blob)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if grant.id != key:
                continue
            if (grant.revoked or grant.expires) + KEEP_DEAD < now:
                stale.append(key)
            else:
                self._grants[key] = grant
        self._unexpired = {g.id for g in self._grants.values() if not ended(g, now)}
        self._changed()
        return stale

    def clear(self) -> None:
        """Forget every grant (at lock); sessions and sockets keep the copies they hold."""
        self._grants.clear()
        self._unexpired.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ reading

    def get(self, grant_id: str) -> Grant | None:
        grant = self._grants.get(grant_id)
        path = self._sockets.get(grant_id)
        return msgspec.structs.replace(grant, socket=path) if grant and path else grant

    def all(self) -> list[Grant]:
        """Every grant known, newest first, with its socket path when it has one."""
        grants = (self.get(g) for g in self._grants)
        return sorted((g for g in grants if g), key=lambda g: g.created, reverse=True)

    def active(self) -> list[Grant]:
        now = self.clock()
        return [g for g in self.all() if not ended(g, now)]

    def family(self, roots: Iterable[str]) -> set[str]:
        """The ids of `roots` and of every grant made inside them, however deep."""
        family = set(roots)
        grew = True
        while grew:
            more = {g.id for g in self._grants.values() if g.parent in family}
            grew = not more <= family
            family |= more
        return family

    def current(self, grants: Sequence[Grant]) -> list[Grant]:
        """The records now in force of a binding's `grants` (uses, revocation), or Denied
        saying why one of them can no longer be used."""
        now = self.clock()
        found = []
        for held in grants:
            grant = self._grants.get(held.id)
            if grant is None:
                raise Denied(f"grant {held.id} no longer exists; ask the owner for a new one "
                             "(`credd grant create`)")
            why = ended(grant, now)
            if why:
                raise Denied(f"{why}; ask the owner for a new one (`credd grant create`)")
            found.append(grant)
        return found

    # ------------------------------------------------------------ changing

    def put(self, grant: Grant) -> None:
        """A grant made or changed (its record is written by the caller)."""
        self._grants[grant.id] = msgspec.structs.replace(grant, socket="")
        if not ended(grant, self.clock()):
            self._unexpired.add(grant.id)
        self._changed()

    def revoke(self, grant_id: str) -> list[Grant]:
        """Revoke a grant and every grant made inside it, now; the changed records."""
        now = self.clock()
        revoked = []
        for gid in sorted(self.family([grant_id])):
            grant = self._grants[gid]
            if grant.revoked is None:
                self._grants[gid] = grant = msgspec.structs.replace(grant, revoked=now)
                revoked.append(grant)
        self._changed()
        return revoked

    def spend(self, grants: Sequence[Grant]) -> list[Grant]:
        """Count one use against each of `grants` that has a limit (all or none: Denied
        if one is spent); the changed records."""
        limited = [self._grants[g.id] for g in grants if g.uses is not None]
        for grant in limited:
            if spent(grant):
                raise Denied(f"grant {grant.id} has used all its {grant.uses} uses; ask the "
                             "owner for a new one (`credd grant create`)")
        used = [msgspec.structs.replace(g, used=g.used + 1) for g in limited]
        for grant in used:
            self._grants[grant.id] = grant
        if any(spent(g) for g in used):
            self._changed()  # used up: ended, like an expired grant (its socket closes)
        return used

    # ------------------------------------------------------------ sockets and watchers

    def listening(self, grant_id: str, path: str | None) -> None:
        """Where a sandbox grant's socket listens (None: no longer)."""
        if path is None:
            self._sockets.pop(grant_id, None)
        else:
            self._sockets[grant_id] = path

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every change, expiry included."""
        self._watchers.append(callback)

    def on_expired(self, callback: Callable[[list[Grant]], None]) -> None:
        """Tell `callback` of grants that expired, once each (for the audit trail)."""
        self._expired = callback

    def _changed(self) -> None:
        for watcher in self._watchers:
            watcher()
        self._arm()

    def _arm(self) -> None:
        """Wake at the next expiry of a grant not yet announced."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self.clock()
        due = [g.expires for g in self._grants.values()
               if g.id in self._unexpired and g.revoked is None]
        if due:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, min(due) - now) + 0.01, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.clock()
        over = [g for g in self._grants.values() if g.id in self._unexpired and ended(g, now)]
        self._unexpired -= {g.id for g in over}
        expired = [g for g in over if g.revoked is None and g.expires <= now]
        if expired and self._expired is not None:
            self._expired(expired)
        self._changed()
