"""A store as a bound connection sees it: only the names its grants cover.

Every name a handler touches goes through here, so a name a grant does not
cover behaves exactly as a name that does not exist: the same `not_found`
(its message and its `names`) for a read, a write or a reference in a
`get_many`, and no trace in lists, the trash or counts. The check runs before
the store is asked, so an uncovered name that exists and one that does not
take the same path and the same time.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from credd.errors import NotFound
from credd.grants import Policy
from credd.protocol import EntryMeta, Set, VersionInfo
from credd.store import EntryStore, SecretEntry


def absent(name: str) -> NotFound:
    """What a store says of a name it does not hold (credd/vault/vault.py's wording)."""
    name = unicodedata.normalize("NFC", name)
    return NotFound(f"no entry named {name!r}", names=[name])


class Scoped:
    """`store` narrowed to what `policy` covers; an EntryStore itself."""

    __slots__ = ("policy", "store")

    def __init__(self, store: EntryStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    def _covered(self, *names: str) -> None:
        for name in names:
            if not self.policy.covers(name):
                raise absent(name)

    @property
    def entry_count(self) -> int:
        return len(self.entries())

    @property
    def audit_key(self) -> bytes:
        return self.store.audit_key

    def describe(self, name: str) -> EntryMeta:
        self._covered(name)
        return self.store.describe(name)

    def get(self, name: str, field: str | None = None) -> str:
        self._covered(name)
        return self.store.get(name, field)

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        self._covered(name)
        return self.store.reveal(name, version)

    def entries(self) -> Sequence[EntryMeta]:
        return self.policy.select(self.store.entries())

    def trash(self) -> list[EntryMeta]:
        return list(self.policy.select(self.store.trash()))

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        self._covered(name)
        return self.store.history(name)

    def put(self, request: Set) -> EntryMeta:
        self._covered(request.name)
        return self.store.put(request)

    def delete(self, name: str) -> EntryMeta:
        self._covered(name)
        return self.store.delete(name)

    def undelete(self, name: str) -> EntryMeta:
        self._covered(name)
        return self.store.undelete(name)

    def purge(self, name: str) -> None:
        self._covered(name)
        self.store.purge(name)

    def move(self, old: str, new: str) -> EntryMeta:
        self._covered(old, new)
        return self.store.move(old, new)

    def restore(self, name: str, version: int) -> EntryMeta:
        self._covered(name)
        return self.store.restore(name, version)
