"""The seam between the agent and a store of entries: `EntryStore`.

The agent's handlers know this interface and nothing else about where
entries live. The local vault (`credd.vault.Vault`) implements it; a mount
of another store (OpenBao's KV engine, the environment, a directory of
secret files) is another implementation, and a router that picks a store by
the name's first segment is one more (it implements the interface by
delegating). Handlers never branch on the kind of store.

Rules every implementation keeps (the handlers and their tests rely on them):

- Names are full entry names as the user types them; the store canonicalises
  them (`BadRequest` for a name it cannot hold).
- Errors are `credd.errors` exceptions: `NotFound` (with `names`), `Exists`,
  `BadRequest`, `LockedError`, `IntegrityError`, `Denied` (a read-only
  store refusing a write). Their messages never hold a secret value.
- Returned records are the caller's: editing one never reaches the store
  (`entries()` is the exception: a read-only view the agent only encodes).
- Reads are called from the agent's event loop and must not block on I/O
  for long; writes are called on the agent's single writer thread.

Standard library and `credd.protocol` only, like every seam module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from credd.protocol import EntryMeta, Set, VersionInfo


class SecretEntry:
    """An entry with its secrets, as `reveal` returns it; never printed in clear."""

    __slots__ = ("meta", "notes", "secret_fields", "value")

    def __init__(self, meta: EntryMeta, value: str, secret_fields: dict[str, str],
                 notes: str) -> None:
        self.meta = meta
        self.value = value
        self.secret_fields = secret_fields
        self.notes = notes

    def __repr__(self) -> str:
        return f"SecretEntry(name={self.meta.name!r}, version={self.meta.version}, <redacted>)"

    __str__ = __repr__

    def __rich_repr__(self):  # type: ignore[no-untyped-def]
        yield "name", self.meta.name
        yield "version", self.meta.version
        yield "secrets", "<redacted>"


@runtime_checkable
class EntryStore(Protocol):
    """Entries by name: what the agent's handlers may ask of a store."""

    # -- reading (event loop)

    @property
    def entry_count(self) -> int:
        """Live entries (not in the trash)."""
        ...

    @property
    def audit_key(self) -> bytes:
        """The key audit records HMAC names under; the same for every store the agent
        serves, so one name is one HMAC whichever store holds it."""
        ...

    def describe(self, name: str) -> EntryMeta:
        """The live entry's metadata; `NotFound` if absent or in the trash."""
        ...

    def get(self, name: str, field: str | None = None) -> str:
        """The entry's value, or one field's (secret or not)."""
        ...

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        """Every secret of the current entry, or of one older version."""
        ...

    def entries(self) -> Sequence[EntryMeta]:
        """Every live entry, sorted by name; read-only (see the module docstring)."""
        ...

    def trash(self) -> list[EntryMeta]:
        """Entries in the trash, sorted by name."""
        ...

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        """(current version, older versions newest first); trashed entries too."""
        ...

    # -- writing (the agent's writer thread)

    def put(self, request: Set) -> EntryMeta:
        """Write an entry with `protocol.Set`'s meaning; the previous version goes to history."""
        ...

    def delete(self, name: str) -> EntryMeta:
        """Move a live entry to the trash."""
        ...

    def undelete(self, name: str) -> EntryMeta:
        """Bring an entry back from the trash."""
        ...

    def purge(self, name: str) -> None:
        """Destroy a trashed entry and its history, leaving nothing of it behind."""
        ...

    def move(self, old: str, new: str) -> EntryMeta:
        """Rename an entry; its history follows it."""
        ...

    def restore(self, name: str, version: int) -> EntryMeta:
        """Make an older version current again (the current one goes to history)."""
        ...


# -- optional: what some stores offer beyond the interface (found with isinstance)

@runtime_checkable
class BatchWriting(Protocol):
    """A store that writes many entries in one transaction, all or none: the local vault,
    where a commit (an fsync) costs ~5 ms and a batch of 100 then costs one."""

    def put_many(self, requests: Iterable[Set]) -> list[EntryMeta]:
        ...

    def delete_many(self, names: Iterable[str]) -> list[EntryMeta]:
        ...


@runtime_checkable
class Revalidating(Protocol):
    """A store that answers reads from a cache (openbao) and can be told to ask again."""

    def revalidate(self, name: str) -> None:
        """Make the next read of `name` check what its server holds now."""
        ...
