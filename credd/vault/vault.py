"""The Vault: an encrypted SQLite store of credentials (see docs/vault.md).

Layout of trust: key slots wrap the DEK; HKDF subkeys from the DEK encrypt each
entry's `meta` and `secret` columns with AD = (vault id, row id, column, rev). `rev`
is the vault generation of the write that produced the row, and the vault header
authenticates the generation plus a keyed XOR digest of every (row, rev) and (history
row, version, rev): a flipped or swapped blob fails its tag, a replayed or removed row
breaks the digest, a rolled-back file shows an older generation than the one
remembered in the state directory.

Who owns what. This class is the public face and the lifecycle: create, open, unlock,
lock, close. `db.VaultFile` holds the per-thread connections and the write lock. While
unlocked, everything the vault knows is one `Session` (session.py), which `load.py`
(unlock) or `rekey.py` builds and this class installs in one step; locking wipes it.
`reads.py` reads, `writes.py` writes, `seal.py` seals the metadata into chunks
(chunks.py), `slots.py` manages key slots.

Threads: one SQLite connection per thread; writes serialize on the lock and reach the
session only after COMMIT; secret reads take no lock and retry under it when a writer
raced them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator

from credd import paths
from credd.errors import (
    BadRequest,
    CreddError,
    Exists,
    IntegrityError,
    LockedError,
    NoVault,
    VaultFileChanged,
)
from credd.protocol import EntryMeta, Set, SlotInfo, VersionInfo
from credd.store import SecretEntry
from credd.vault import crypto, db, header, keyslots, load, migrations, records, seal, slots, writes
from credd.vault.check import check_vault
from credd.vault.crypto import Keys
from credd.vault.db import VaultFile
from credd.vault.index import EntryView, Index
from credd.vault.keyslots import KEY, PASSPHRASE, RECOVERY, KdfParams
from credd.vault.model import to_entry_meta
from credd.vault.reads import Reader
from credd.vault.rekey import rekey as _rekey
from credd.vault.session import Session, Slot, VaultIntegrityError
from credd.vault.writes import HISTORY_KEEP, Txn

__all__ = ["HISTORY_KEEP", "EntryView", "Vault", "VaultIntegrityError"]
List = list  # `Vault.list` shadows the builtin in the class's annotations


def _check_state_dir(state_dir: str | None) -> None:
    """The rollback counter's directory must be private too (created 0700 if missing)."""
    if state_dir:
        paths.ensure_private_dir(state_dir)


class Vault:
    """One vault file. Construct with `Vault.create` or `Vault.open`."""

    def __init__(self, file: VaultFile, state_dir: str | None,
                 session: Session | None = None) -> None:
        self._file = file
        self.state_dir = state_dir
        self._rollback = header.Rollback(state_dir, file.vault_id)
        #: The file has the chunk tables (format 4, unless dropped): else row by row.
        self._chunked = db.has_table(file.conn(), "chunks")
        #: The file has the agent records' table (format 6).
        self._recorded = db.has_table(file.conn(), "records")
        self._session = session
        self._clock: Callable[[], float] = time.time

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def vault_id(self) -> bytes:
        return self._file.vault_id

    @property
    def file(self) -> VaultFile:
        """The file's connections and write lock (package-internal; tests and tools)."""
        return self._file

    @property
    def session(self) -> Session | None:
        """The unlocked state, None while locked (package-internal; tests and tools)."""
        return self._session

    # ------------------------------------------------------------ lifecycle

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(path)

    @classmethod
    def create(cls, path: str, passphrase: str, *, kdf: KdfParams = KdfParams(),
               state_dir: str | None = None, _format: int = migrations.LATEST
               ) -> tuple[Vault, str]:
        """A new vault, unlocked, and its recovery key (shown once)."""
        _check_state_dir(state_dir)
        if not isinstance(kdf, KdfParams):
            raise BadRequest("kdf must be a KdfParams")
        kdf.validate()
        secret = keyslots.secret_bytes(PASSPHRASE, passphrase)
        path = os.path.abspath(path)
        if os.path.lexists(path):
            raise Exists(f"a vault already exists at {path}")
        paths.ensure_private_dir(os.path.dirname(path))
        try:
            db.create_private_file(path)
        except FileExistsError:
            raise Exists(f"a vault already exists at {path}") from None
        try:
            return cls._initialize(path, secret, kdf, state_dir, _format)
        except BaseException:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + suffix)
            raise

    @classmethod
    def _initialize(cls, path: str, secret: bytes, kdf: KdfParams, state_dir: str | None,
                    fmt: int) -> tuple[Vault, str]:
        conn = db.connect(path)
        db.create_schema(conn)
        migrations.migrate(conn, path, target=fmt, backups=False)
        vault_id = crypto.random_bytes(16)
        keys = Keys(bytearray(crypto.random_bytes(crypto.KEY_LEN)))
        recovery_text, recovery_raw = keyslots.new_recovery_key()
        passphrase = keyslots.new_header(vault_id, 1, PASSPHRASE, kdf)
        kek = keyslots.derive_kek(passphrase, secret)
        recovery = keyslots.new_header(vault_id, 2, RECOVERY)
        recovery_kek = keyslots.derive_kek(recovery, recovery_raw)
        now = time.time()
        created = int(now) if db.has_column(conn, "vault", "slots") else None
        with db.transaction(conn, path):
            conn.execute("INSERT INTO vault (id, vault_id, generation, digest, mac) "
                         "VALUES (1, ?, 0, ?, x'')", (vault_id, bytes(32)))
            slots.insert_slot(conn, "passphrase", passphrase, kek, keys.dek, created)
            slots.insert_slot(conn, "recovery", recovery, recovery_kek, keys.dek, created)
            table = None if created is None else slots.seal_table(conn, keys, vault_id, None)
            header.write(conn, keys, vault_id, 0, 0, table)
        crypto.wipe(recovery_kek)
        session = Session(keys=keys, slot=Slot(PASSPHRASE, 1, kek, now), index=Index.empty(),
                          generation=0, digest=0, history_digest=0, slots=table)
        return cls(VaultFile(path, vault_id, conn), state_dir, session), recovery_text

    @classmethod
    def open(cls, path: str, *, state_dir: str | None = None) -> Vault:
        """The vault at `path`, locked; migrated (after a backup) if its format is older."""
        _check_state_dir(state_dir)
        path = os.path.abspath(path)
        if not os.path.lexists(path):
            raise NoVault(f"no vault at {path}: run `credd init`")
        paths.check_private_dir(os.path.dirname(path))
        for suffix in ("", "-wal", "-shm"):
            if suffix == "" or os.path.lexists(path + suffix):
                paths.check_private_file(path + suffix)
        conn = db.connect_existing(path)
        try:
            if db.application_id(conn) != db.APPLICATION_ID:
                raise BadRequest(f"{path} is not a credd vault")
            migrations.migrate(conn, path)
            row = conn.execute("SELECT vault_id FROM vault WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise IntegrityError(f"{path} cannot be read as a vault ({exc})") from None
        except BaseException:
            conn.close()
            raise
        if row is None or not isinstance(row[0], bytes) or len(row[0]) != 16:
            conn.close()
            raise IntegrityError(f"{path} has no valid vault header")
        return cls(VaultFile(path, row[0], conn), state_dir)

    def close(self) -> None:
        """Lock and close every connection (from any thread)."""
        self.lock()
        self._file.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Vault({self.path!r}, {'unlocked' if self.unlocked else 'locked'})"

    # ------------------------------------------------------------ unlock / lock

    @property
    def unlocked(self) -> bool:
        return self._session is not None

    @property
    def damage(self) -> List[str]:
        """What is wrong with the whole file, as this unlock found it (a rollback to an older
        copy, a header that failed authentication); while it is not empty every data
        operation refuses. Empty when the file is sound, or while locked."""
        session = self._session
        return list(session.damage) if session is not None else []

    @property
    def from_snapshot(self) -> bool:
        """The file's sealed chunks describe this vault exactly: this unlock read them and
        nothing was written since, or a seal caught up (docs/vault.md, "The chunks")."""
        session = self._session
        return session is not None and session.current

    def unlock(self, passphrase: str | None = None, *, key: bytes | None = None,
               recovery_key: str | None = None) -> None:
        """Unlock with exactly one secret; BadPassphrase for a wrong one or a damaged slot."""
        given = [(k, s) for k, s in ((PASSPHRASE, passphrase), (KEY, key),
                                     (RECOVERY, recovery_key)) if s is not None]
        if len(given) != 1:
            raise BadRequest("unlock with exactly one of: passphrase, key, recovery key")
        kind, secret = given[0]
        dek, kek, slot_id = slots.open_slot(self._file, kind, keyslots.secret_bytes(kind, secret))
        keys = Keys(dek)
        now = self._clock()
        with self._file.lock:
            self.lock()
            try:
                session = load.load(self._file.conn(), keys, self.vault_id,
                                    Slot(kind, slot_id, kek, now), self._rollback,
                                    self._chunked, self._file.slotted, self._recorded)
            except BaseException:
                keys.wipe()
                crypto.wipe(kek)
                raise
            self._session = session
            self._authenticate_slots(session)
            slots.note_used(self._file, slot_id, now)

    def _authenticate_slots(self, session: Session) -> None:
        """The first unlock of a file migrated to format 5 MACs its slots (their labels were
        never authenticated before): best effort, tried again at the next unlock."""
        if self._file.slotted and session.slots is None and not session.damage:
            with contextlib.suppress(CreddError, sqlite3.Error), self._writing() as txn:
                slots.reseal(txn, ())

    def lock(self) -> None:
        """Seal what changed (best effort), then drop the DEK, its subkeys, the slot KEK
        and every decrypted record."""
        with self._file.lock:
            session, self._session = self._session, None
            if session is None:
                return
            try:
                self._seal(session)
            finally:  # whatever sealing met (even KeyboardInterrupt), the keys go
                session.wipe()
            self.checkpoint()

    def seal_snapshot(self) -> None:
        """Seal what changed now, so that a crash does not cost the next unlock its chunks;
        the agent calls it once writes settle (best effort, like lock)."""
        with self._file.lock:
            if self._session is not None:
                self._seal(self._session)
            self.checkpoint()

    def checkpoint(self) -> bool:
        """Copy the WAL into the vault file and empty it, so that the file alone holds every
        commit: a plain copy of it is then a whole backup. At lock, at the seal, and when the
        agent's writes settle; best effort (True if done). A file that moved under the vault
        is saved from first (db.VaultFile)."""
        with self._file.lock:
            conn = self._file.existing_conn()  # never open (or create) the file for this
            if conn is None:
                return False
            with contextlib.suppress(VaultFileChanged):
                self._file.check_unchanged()
            return db.checkpoint_truncate(conn)

    def _seal(self, session: Session) -> None:
        conn = self._file.existing_conn()  # never open (or create) the file to seal
        if conn is not None and self._chunked:
            seal.seal(self._file, conn, session, self._rollback)

    def _current(self) -> Session:
        session = self._session
        if session is None:
            raise LockedError()
        return session

    @property
    def audit_key(self) -> bytes:
        """HMAC key for audit records; available on a damaged vault too, to audit its failures."""
        return bytes(self._current().keys.audit)

    # ------------------------------------------------------------ reading

    def _reader(self) -> Reader:
        return Reader(self._file, self._current(), self._current)

    @property
    def entry_count(self) -> int:
        """Live entries (not trash); answers even on a damaged vault, for status lines."""
        return self._current().index.live

    def entries(self) -> EntryView[EntryMeta]:
        """Every live entry in name order, as a view that decodes each segment when first
        read. The records are the cache's own, to be encoded and not changed (the agent
        only encodes them); `list` returns copies."""
        session = self._current()
        session.require_readable(self.path)
        return session.index.view()

    def list(self) -> List[EntryMeta]:
        """Every live entry's metadata, sorted by name (copies: see `entries`)."""
        return list(map(to_entry_meta, self.entries()))

    def trash(self) -> List[EntryMeta]:
        session = self._current()
        session.require(self.path)
        return list(map(to_entry_meta, session.index.trash()))

    def describe(self, name: str) -> EntryMeta:
        return to_entry_meta(self._reader().find(name)[1].entry)

    def get(self, name: str, field: str | None = None) -> str:
        """The entry's value, or one field (secret or not)."""
        return self._reader().get(name, field)

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        """All secrets of the current entry, or of one version from its history."""
        return self._reader().reveal(name, version)

    def history(self, name: str) -> tuple[int, List[VersionInfo]]:
        """(current version, older versions newest first)."""
        return self._reader().history(name)

    def pending(self, name: str) -> str:
        """The value `stage` kept for the entry; NotFound when there is none."""
        return self._reader().pending(name)

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Txn]:
        with self._file.lock:
            session = self._current()
            with writes.transaction(self._file, session, self._current, self._clock()) as txn:
                yield txn
        self._rollback.remember(session.generation)

    def put(self, request: Set) -> EntryMeta:
        """Write an entry (protocol.Set semantics); the previous version goes to history."""
        with self._writing() as txn:
            return writes.put(txn, request)

    def put_many(self, requests: Iterable[Set]) -> List[EntryMeta]:
        """`put` each request in order, in one transaction: all are written or none. For
        imports and migrations (one commit, one fsync, for thousands of entries)."""
        requests = list(requests)
        with self._writing() as txn:
            return [writes.put(txn, request) for request in requests]

    def delete(self, name: str) -> EntryMeta:
        """Move an entry to the trash (restorable with `undelete` until purged)."""
        with self._writing() as txn:
            return writes.set_deleted(txn, name, True)

    def delete_many(self, names: Iterable[str]) -> List[EntryMeta]:
        """`delete` each name in order, in one transaction: all go to the trash or none
        (a migration's confirmed sources: one commit for a batch)."""
        names = list(names)
        with self._writing() as txn:
            return [writes.set_deleted(txn, name, True) for name in names]

    def undelete(self, name: str) -> EntryMeta:
        with self._writing() as txn:
            return writes.set_deleted(txn, name, False)

    def purge(self, name: str) -> None:
        """Destroy a trashed entry and its whole history, and scrub them from the file.

        Repair path: an entry that fails authentication can be purged without
        going through the trash (it cannot be rewritten into it).
        """
        with self._writing() as txn:
            writes.purge(txn, name)

    def move(self, old: str, new: str) -> EntryMeta:
        """Rename an entry; its history follows it, and its old name leaves the file."""
        with self._writing() as txn:
            return writes.move(txn, old, new)

    def restore(self, name: str, version: int) -> EntryMeta:
        """Make an older version current again; the current one goes to history."""
        with self._writing() as txn:
            return writes.restore(txn, name, version)

    # ------------------------------------------------------------ agent records

    def records(self, kind: str) -> dict[str, bytes]:
        """The agent's records of `kind` (records.py), id → data, as of this unlock and the
        writes since; never entries, and not listed with them."""
        session = self._current()
        session.require(self.path)
        return {r.id: r.data for r in session.records.values() if r.kind == kind}

    def put_record(self, kind: str, record_id: str, data: bytes) -> None:
        """Write (or replace) one record, durably, in one transaction."""
        records.check(kind, record_id, data)
        with self._writing() as txn:
            txn.put_record(kind, record_id, data)

    def delete_record(self, kind: str, record_id: str) -> None:
        """Remove a record (absent: nothing happens); its row leaves the file and the WAL."""
        records.check(kind, record_id)
        with self._writing() as txn:
            txn.delete_record(kind, record_id)

    # ------------------------------------------------------------ a staged value (rotation)

    def stage(self, name: str, value: str) -> EntryMeta:
        """Keep `value` beside the current one (no new version; `get` never serves it);
        Conflict when one is already staged."""
        with self._writing() as txn:
            return writes.stage(txn, name, value)

    def finish(self, request: Set) -> EntryMeta:
        """Make the staged value current: a `put` (merge) whose value must be the staged one."""
        with self._writing() as txn:
            return writes.finish(txn, request)

    def abandon(self, name: str) -> EntryMeta:
        """Drop the staged value."""
        with self._writing() as txn:
            return writes.abandon(txn, name)

    def mark_compromised(self, name: str) -> EntryMeta:
        """Mark the current value compromised until a new value replaces it (`incident`)."""
        with self._writing() as txn:
            return writes.mark_compromised(txn, name)

    # ------------------------------------------------------------ key slots

    def _prove(self, proof: str | None) -> None:
        """Check a proof (passphrase or recovery key) for a change of the key slots."""
        crypto.wipe(slots.prove(self._file, self._current(), proof, self._clock()).kek)

    def add_key_slot(self, key: bytes, label: str = "keyring", *, proof: str | None) -> None:
        """Let a raw 32-byte key (e.g. one kept in the OS keyring) unlock the vault; replaces
        a key slot of that label. `proof`: the passphrase or the recovery key."""
        secret, label = slots.key_slot_args(key, label)
        self._prove(proof)
        with self._writing() as txn:
            slots.add_key_slot(txn, secret, label)

    def remove_key_slot(self, label: str = "keyring", *, proof: str | None) -> None:
        """Remove a key slot or the recovery slot (never the passphrase's). `proof`: as
        for add_key_slot."""
        self._prove(proof)
        with self._writing() as txn:
            slots.remove_slot(txn, label)

    def slots(self) -> tuple[List[SlotInfo], List[str]]:
        """Every key slot (label, kind, KDF, created, last used; never key material) and what
        failed authentication in the table."""
        session = self._current()
        return slots.describe(self._file.conn(), session.require(self.path), self.vault_id,
                              session.slots, self._file.slotted, session.slot)

    def slot_counts(self) -> dict[str, int]:
        """Key slots by kind, for status lines: answers on a damaged vault too ({} when the
        file cannot be read)."""
        self._current()
        try:
            return slots.counts(self._file.conn())
        except (CreddError, sqlite3.Error):
            return {}

    def change_passphrase(self, old: str, new: str) -> None:
        """Rewrap the DEK under a new passphrase in one transaction; the old blob is scrubbed.
        `old` may also be the recovery key (someone who forgot the passphrase)."""
        slots.change_passphrase(self._file, self._current(), old, new, self._clock(),
                                self._writing)

    def rekey(self, progress: Callable[[int, int], None] | None = None, *,
              proof: str | None) -> str:
        """Re-encrypt everything under a fresh DEK; returns the new recovery key.

        `proof`: the passphrase, or the recovery key while unlocked with the passphrase: the
        passphrase slot is rewrapped with the KEK either gives. The recovery slot gets a new
        recovery key and key slots are removed (add them again), so no old secret opens the
        new DEK.
        """
        with self._file.lock:
            session = self._current()
            session.require(self.path)
            if session.bad:
                raise VaultIntegrityError("damaged entries must be purged before a rekey")
            proven = slots.prove(self._file, session, proof, self._clock())
            keep = proven if proven.kind == PASSPHRASE else session.slot
            if keep is not proven:
                crypto.wipe(proven.kek)
            if keep.kind != PASSPHRASE:
                raise BadRequest("rekey needs the passphrase (or the vault unlocked with it)")
            self._session, recovery = _rekey(self._file, session, progress or _no_progress,
                                             self._chunked, keep, self._clock(),
                                             self._recorded)
            self._rollback.remember(self._session.generation)
            return recovery

    # ------------------------------------------------------------ verification

    def check(self) -> List[str]:
        """Verify every row, every version and every slot; return every problem found."""
        with self._file.lock:
            session = self._current()
            return check_vault(self._file.conn(), self.vault_id, session.keys,
                               self._rollback.remembered(), self._file.slotted,
                               self._recorded)


def _no_progress(done: int, total: int) -> None:
    pass
