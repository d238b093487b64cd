"""The unlocked state of a vault, with one owner: `Session`.

Everything a vault knows only while unlocked lives here: the keys and the slot that
opened them, the metadata index, the rows that failed authentication, what is wrong
with the file, the generation and set digest the vault last wrote, what the file's
sealed chunks and manifest describe, and the sealed secrets kept for repeated reads.

`load.py` (unlock) and `rekey.py` build a Session; the Vault installs it in one step
under its lock and wipes it on lock (keys overwritten, references dropped). Writes and
seals change it only through `committed` and `sealed`, after their COMMIT, so a reader
on another thread always sees a state the file had.
"""

from __future__ import annotations

from typing import NamedTuple

from credd.errors import IntegrityError, LockedError
from credd.vault import crypto
from credd.vault.chunks import BucketSeal
from credd.vault.crypto import Keys
from credd.vault.index import Index, Row
from credd.vault.records import Record

_DAMAGE_HINT = "; run `credd check` (a vault restored on purpose: see docs/vault.md)"


class VaultIntegrityError(IntegrityError):
    """Stored data failed authentication; `name` or `row` says which entry."""

    def __init__(self, message: str, *, name: str | None = None, row: str | None = None) -> None:
        super().__init__(message, names=[name] if name else None)
        self.name = name
        self.row = row


class Slot(NamedTuple):
    """The key slot an unlock (or a proof) opened, its KEK (held to rewrap the DEK on rekey),
    and when."""

    kind: str
    id: int
    kek: bytearray
    at: float = 0.0


#: (row id, rev, meta column) of one entry row, as the file holds it.
FileRow = tuple[bytes, int, bytes]


class Commit(NamedTuple):
    """What one write transaction changed, for `Session.committed`."""

    generation: int
    digest: int
    history_digest: int
    changes: dict[bytes, tuple[str, Row | None]]  # row id → (name, new row or None)
    before: dict[int, FileRow | None]              # rowid → the row before it (None: none)
    written: dict[int, FileRow | None]             # rowid → the row it wrote (None: deleted)
    records_digest: int                            # the agent records' part of `digest`
    records: dict[bytes, Record | None]            # record row id → its record (None: gone)
    slots: bytes | None                            # the key slots' digest in the header


class Session:
    """The unlocked vault (see the module docstring). Attributes are read by the vault's
    package; they change only through the methods below."""

    def __init__(self, *, keys: Keys, slot: Slot, index: Index, generation: int, digest: int,
                 history_digest: int, records: dict[bytes, Record] | None = None,
                 records_digest: int = 0, bad: dict[bytes, str] | None = None,
                 damage: list[str] | None = None, buckets: dict[int, BucketSeal] | None = None,
                 before: dict[int, FileRow | None] | None = None,
                 written: dict[int, FileRow] | None = None, current: bool = False,
                 slots: bytes | None = None) -> None:
        self.keys, self.slot, self.index = keys, slot, index
        self.generation, self.digest, self.history_digest = generation, digest, history_digest
        #: The agent's records (records.py) by row id, and their part of the set digest.
        self.records: dict[bytes, Record] = records or {}
        self.records_digest = records_digest
        #: The key slots' digest the header authenticates (slots.py); None: not (yet).
        self.slots = slots
        self.bad: dict[bytes, str] = bad or {}
        self.damage: list[str] = damage or []
        #: Every bucket as the vault verified it (at unlock, or sealing it since).
        self.buckets: dict[int, BucketSeal] = buckets or {}
        #: Rows written since (by rowid): each one as it was then, and as written. A seal
        #: checks their buckets against both before it vouches for them again.
        self.before: dict[int, FileRow | None] = before or {}
        self.written: dict[int, FileRow] = written or {}
        #: The file's manifest and chunks describe exactly this state (nothing to seal).
        self.current = current
        #: row id → (rev, secret column): a secret that authenticated under that rev.
        self.secrets: dict[bytes, tuple[int, bytes]] = {}
        #: Set by lock: a reader still holding this session gets LockedError, not an
        #: answer from the emptied index (NotFound for an entry that exists).
        self.wiped = False

    def require(self, path: str) -> Keys:
        """The keys, unless locked since or the file is damaged (data operations refuse)."""
        if self.wiped:
            raise LockedError()
        if self.damage:
            raise VaultIntegrityError(f"{path}: {self.damage[0]}{_DAMAGE_HINT}")
        return self.keys

    @property
    def entry_digest(self) -> int:
        """The entry rows' part of the set digest (the rest is history rows and records)."""
        return self.digest ^ self.history_digest ^ self.records_digest

    def committed(self, commit: Commit) -> None:
        """A write transaction committed: its rows go into the index (their segments are
        dirty now: the write deleted their chunks), and what is sealed is no longer current."""
        self.index = self.index.with_changes(commit.changes.values())
        for row_id in commit.changes:
            self.bad.pop(row_id, None)
            self.secrets.pop(row_id, None)
        self.generation, self.digest = commit.generation, commit.digest
        self.history_digest, self.slots = commit.history_digest, commit.slots
        self.records_digest = commit.records_digest
        if commit.records:
            records = dict(self.records)  # a reader iterating the old dict is undisturbed
            for rid, record in commit.records.items():
                if record is None:
                    records.pop(rid, None)
                else:
                    records[rid] = record
            self.records = records
        for rowid, row in commit.before.items():
            self.before.setdefault(rowid, row)  # the first capture since the last check
        for rowid, written in commit.written.items():
            if written is None:
                self.written.pop(rowid, None)
            else:
                self.written[rowid] = written
        self.current = self.current and not commit.changes  # a slot write changes no row

    def sealed(self, index: Index, buckets: dict[int, BucketSeal], generation: int) -> None:
        """A seal committed: `index` is held by the file's chunks, `buckets` by its manifest."""
        self.index, self.buckets, self.generation = index, buckets, generation
        self.before, self.written = {}, {}
        self.current = True

    def replace_kek(self, kek: bytearray) -> None:
        """The unlocking passphrase slot was rewrapped under `kek` (the old one is wiped)."""
        crypto.wipe(self.slot.kek)
        self.slot = self.slot._replace(kek=kek)

    def wipe(self) -> None:
        """Overwrite the keys and drop every decrypted record (lock)."""
        self.wiped = True
        self.keys.wipe()
        crypto.wipe(self.slot.kek)
        self.index = Index.empty()
        self.secrets, self.bad, self.buckets, self.before, self.written = {}, {}, {}, {}, {}
        self.records = {}

    def bad_error(self, row_id: bytes, name: str, what: str = "entry") -> VaultIntegrityError:
        return VaultIntegrityError(f"{what} {name!r} failed authentication{_DAMAGE_HINT}",
                                   name=name, row=row_id.hex())

    def require_readable(self, path: str) -> None:
        """`list` and friends refuse while any row failed authentication."""
        self.require(path)
        if self.bad:
            raise VaultIntegrityError(
                f"{len(self.bad)} entries failed authentication{_DAMAGE_HINT}",
                row=next(iter(self.bad)).hex())
