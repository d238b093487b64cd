"""The router: one `EntryStore` over the local vault and the mounts, by a name's first segment.

A name whose first segment is a mount's name (`team` in `team/prod/db`) goes to
that mount, whole; every other name to the local vault. Local entries under a
mount's name are hidden while the mount is in the table (the mount table
reports how many: `MountTable.infos`), never mixed with the mount's.

A router is immutable: the agent makes a new one when the table or the lock
state changes, so a read on a reader thread sees one consistent table for its
whole request.

`entries()` does not copy the local vault's 100,000 entries to merge a mount
in: every name a mount serves starts `NAME/`, so in name order its entries form
one run, which sits where `NAME/` would be among the local names; the merged
view is a list of slices (`Merged`) resolved per index.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

from credd.errors import BadRequest, CreddError
from credd.protocol import EntryMeta, Set, VersionInfo
from credd.store import EntryStore, SecretEntry

from .mounts import Mount

_NAME = operator.attrgetter("name")
_SCHEME = "credd://"


def first_segment(name: str) -> str:
    return name.partition("/")[0]


class Router:
    """Implements `EntryStore` by delegating each name to its store."""

    __slots__ = ("local", "mounts", "remote_mounts")

    def __init__(self, local: EntryStore, mounts: Mapping[str, Mount]) -> None:
        self.local = local
        self.mounts = dict(mounts)
        self.remote_mounts = frozenset(name for name, m in self.mounts.items() if m.remote)

    def store_for(self, name: str) -> EntryStore:
        """The store that serves `name`."""
        return self.mounts.get(first_segment(name), self.local) if self.mounts else self.local

    def mount_of(self, name: str) -> str:
        """The mount serving `name`, "" for the local vault."""
        segment = first_segment(name)
        return segment if segment in self.mounts else ""

    def remote(self, name: str, *, prefix: bool = False) -> bool:
        """Whether reading `name` (or, with `prefix`, listing the names that start with it:
        "" lists everything) may wait on a remote mount's network."""
        if not self.remote_mounts:
            return False
        name = name.removeprefix(_SCHEME)
        if prefix and "/" not in name:
            return any(mount.startswith(name) for mount in self.remote_mounts)
        segment = first_segment(name)
        if segment not in self.remote_mounts:
            return False
        fresh = getattr(self.mounts[segment], "fresh", None)  # optional: see OpenBaoStore.fresh
        return not (fresh is not None and fresh(name))

    # -- reading

    @property
    def entry_count(self) -> int:
        """The local vault's: counting a remote mount's entries would wait on its server."""
        return self.local.entry_count

    @property
    def audit_key(self) -> bytes:
        return self.local.audit_key

    def describe(self, name: str) -> EntryMeta:
        return self.store_for(name).describe(name)

    def get(self, name: str, field: str | None = None) -> str:
        return self.store_for(name).get(name, field)

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        return self.store_for(name).reveal(name, version)

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        return self.store_for(name).history(name)

    def entries(self) -> Sequence[EntryMeta]:
        """Every live entry by name: the local ones outside the mounts, each mount's run
        where it belongs. A mount that cannot list now is left out (its state says why),
        so that the local vault stays listable whatever a server does."""
        local = self.local.entries()
        if not self.mounts:
            return local
        cuts: list[tuple[int, int, str, Sequence[EntryMeta]]] = []
        for name, mount in self.mounts.items():
            exact, lo, hi = under(local, name)
            if exact is not None:
                cuts.append((exact, exact + 1, name, ()))
            cuts.append((lo, hi, name + "/", _listed(mount)))
        cuts.sort(key=operator.itemgetter(0, 2))
        parts: list[tuple[Sequence[EntryMeta], int, int]] = []
        at = 0
        for start, stop, _, run in cuts:
            parts += [(local, at, start), (run, 0, len(run))]
            at = max(at, stop)
        parts.append((local, at, len(local)))
        return Merged([part for part in parts if part[1] < part[2]])

    def hidden(self, mount: str) -> int:
        """How many local entries the mount hides (named `mount` or `mount/...`)."""
        try:
            exact, lo, hi = under(self.local.entries(), mount)
        except CreddError:  # a damaged vault lists nothing; status must still answer
            return 0
        return hi - lo + (exact is not None)

    def trash(self) -> list[EntryMeta]:
        visible = [m for m in self.local.trash() if not self.mount_of(m.name)]
        for mount in self.mounts.values():
            visible += _listed(mount, trash=True)
        return sorted(visible, key=_NAME)

    # -- writing

    def put(self, request: Set) -> EntryMeta:
        return self.store_for(request.name).put(request)

    def delete(self, name: str) -> EntryMeta:
        return self.store_for(name).delete(name)

    def undelete(self, name: str) -> EntryMeta:
        return self.store_for(name).undelete(name)

    def purge(self, name: str) -> None:
        self.store_for(name).purge(name)

    def restore(self, name: str, version: int) -> EntryMeta:
        return self.store_for(name).restore(name, version)

    def move(self, old: str, new: str) -> EntryMeta:
        """Within one store only: across stores a move would be a copy and a delete that
        can fail half-way (a server that goes down between them), so it is refused."""
        source, target = self.store_for(old), self.store_for(new)
        if source is not target:
            raise BadRequest(f"cannot move {old!r} to {new!r}: {_where(self, old)} and "
                             f"{_where(self, new)} are different stores; copy the entry to the "
                             "new name, then remove the old one", names=[old, new])
        return source.move(old, new)


def _where(router: Router, name: str) -> str:
    mount = router.mount_of(name)
    return f"mount {mount!r}" if mount else "the local vault"


def under(entries: Sequence[EntryMeta], name: str) -> tuple[int | None, int, int]:
    """Where the sorted `entries` hold `name` itself (None if not) and the run [lo, hi)
    of names that start `name/` ("0" is the character after "/")."""
    i = bisect.bisect_left(entries, name, key=_NAME)
    exact = i if i < len(entries) and entries[i].name == name else None
    lo = bisect.bisect_left(entries, name + "/", key=_NAME)
    return exact, lo, bisect.bisect_left(entries, name + "0", lo=lo, key=_NAME)


def _listed(mount: Mount, *, trash: bool = False) -> Sequence[EntryMeta]:
    """A mount's entries (or trash), or none when it cannot list them now."""
    try:
        return mount.trash() if trash else mount.entries()
    except CreddError:
        return ()


class Merged(Sequence[EntryMeta]):
    """Slices of sorted sequences, read as one sequence without copying them."""

    __slots__ = ("_ends", "_parts")

    def __init__(self, parts: list[tuple[Sequence[EntryMeta], int, int]]) -> None:
        self._parts = parts
        self._ends = list(itertools.accumulate(stop - start for _, start, stop in parts))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> EntryMeta: ...

    @overload
    def __getitem__(self, index: slice) -> list[EntryMeta]: ...

    def __getitem__(self, index: int | slice) -> EntryMeta | list[EntryMeta]:
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(lo, hi, step)]
            return self._slice(lo, hi)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("merged entries index out of range")
        part = bisect.bisect_right(self._ends, index)
        seq, start, _ = self._parts[part]
        return seq[start + index - (self._ends[part - 1] if part else 0)]

    def _slice(self, lo: int, hi: int) -> list[EntryMeta]:
        out: list[EntryMeta] = []
        part = bisect.bisect_right(self._ends, lo)
        while lo < hi and part < len(self._parts):
            seq, start, _stop = self._parts[part]
            begin = self._ends[part - 1] if part else 0
            out += seq[start + lo - begin:start + min(hi, self._ends[part]) - begin]
            lo, part = self._ends[part], part + 1
        return out

    def __iter__(self) -> Iterator[EntryMeta]:
        for seq, start, stop in self._parts:
            yield from seq[start:stop]
