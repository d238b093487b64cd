"""The Vault: an encrypted SQLite store of credentials (see docs/vault.md).

Layout of trust: key slots wrap the DEK; HKDF subkeys from the DEK encrypt
each entry's `meta` and `secret` columns with AD = (vault id, row id, column,
rev). `rev` is the vault generation of the write that produced the row, and
the vault header authenticates the generation plus a keyed XOR digest of every
(row, rev) and (history row, version, rev): a flipped or swapped blob fails its
tag, a replayed or removed row breaks the digest, a rolled-back file shows an
older generation than the one remembered in the state directory.

Threads: one SQLite connection per thread; writes serialize on a lock and
update the metadata cache only after COMMIT; secret reads are optimistic
(lock-free) and retry under the lock when a writer raced them.

Reads: a secret column, once it authenticates, is kept sealed (never in
clear) next to its metadata until the next write of that row or the lock,
so a repeated `get` is AES-GCM and a decode, without SQLite.
"""

from __future__ import annotations

import contextlib
import hmac
import operator
import os
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator

import msgspec

from credd import paths
from credd.errors import (BadPassphrase, BadRequest, Exists, IntegrityError, LockedError,
                          NotFound, NoVault)
from credd.protocol import EntryMeta, Set, VersionInfo
from credd.vault import counter, crypto, db, keyslots, load, migrations, snapshot
from credd.vault.cache import Cached, EntryView
from credd.vault.crypto import ENTRY, HISTORY, AuthFailure, Keys, ad, row_ad
from credd.vault.keyslots import KEY, PASSPHRASE, RECOVERY, KdfParams
from credd.vault.changes import Change
from credd.vault.model import (HistoryRecord, MetaRecord, SecretEntry, SecretRecord,
                               canonical_name, check_label, decode_history, decode_secret,
                               encode, to_entry_meta)

#: At least this many superseded versions are kept per entry.
HISTORY_KEEP = 20
_BY_NAME = operator.attrgetter("name")
_CURRENT = operator.attrgetter("current")
#: Names remembered per unlock by `_locate` (about 100 bytes each).
_LOCATED_MAX = 4096
_GENERIC = "wrong passphrase or damaged vault"
_DAMAGE_HINT = "; run `credd check` (a vault restored on purpose: see docs/vault.md)"


class VaultIntegrityError(IntegrityError):
    """Stored data failed authentication; `name` or `row` says which entry."""

    def __init__(self, message: str, *, name: str | None = None, row: str | None = None) -> None:
        super().__init__(message, names=[name] if name else None)
        self.name = name
        self.row = row


def _locate(keys: Keys, name: object) -> tuple[str, bytes]:
    """(canonical name, row id) of a requested name, memoized per unlock: a repeated
    `get` skips the name checks and the HMAC. Bounded, as callers choose the names."""
    memo = type(name) is str  # a str subclass could hash and compare as it likes
    hit = keys.located.get(name) if memo else None
    if hit is None:
        canonical = canonical_name(name)
        hit = (canonical, keys.row_id(canonical))
        if memo:
            if len(keys.located) >= _LOCATED_MAX:
                keys.located.clear()
            keys.located[name] = hit  # type: ignore[index]
    return hit


def _check_state_dir(state_dir: str | None) -> None:
    """The rollback counter's directory must be private too (created 0700 if missing)."""
    if state_dir:
        paths.ensure_private_dir(state_dir)


class _Txn:
    """What one write transaction changes, applied to the cache after COMMIT."""

    def __init__(self, generation: int, digest: int) -> None:
        self.gen = generation
        self.digest = digest
        self.cache: dict[bytes, Cached | None] = {}
        self.metas: dict[bytes, bytes | None] = {}  # meta columns written (None: deleted)
        self.scrub = False  # checkpoint(TRUNCATE) after commit


class Vault:
    """One vault file. Construct with `Vault.create` or `Vault.open`."""

    def __init__(self, path: str, vault_id: bytes, state_dir: str | None) -> None:
        self.path = path
        self.vault_id = vault_id
        self.state_dir = state_dir
        self._local = threading.local()
        self._conns: list = []
        self._conns_lock = threading.Lock()
        self._lock = threading.RLock()
        self._closed = False
        self._clock: Callable[[], float] = time.time
        self._snapshots = False  # the file has a snapshot table (format >= 3)
        self._reset()

    def _reset(self) -> None:
        self._keys: Keys | None = None
        self._kek: bytearray | None = None
        self._unlocked_by: tuple[str, int] | None = None
        self._cache: dict[bytes, Cached] = {}
        self._bad: dict[bytes, str] = {}
        self._damage: list[str] = []
        self._sorted: list[Cached] | None = None  # live entries by name, until a write
        self._live = 0
        #: The generation the file's snapshot is known to be sealed for (loaded or saved).
        self._snapshot_gen: int | None = None
        #: Every row's meta column as it authenticated at unlock or was written since:
        #: a snapshot is sealed only over these bytes, never over whatever the file
        #: holds at lock (that would bless a column changed behind our back).
        self._verified: dict[bytes, bytes] | None = None
        self._generation = 0
        self._digest = 0

    # ------------------------------------------------------------ lifecycle

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(path)

    @classmethod
    def create(cls, path: str, passphrase: str, *, kdf: KdfParams = KdfParams(),
               state_dir: str | None = None, _format: int = migrations.LATEST
               ) -> tuple["Vault", str]:
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
                    fmt: int) -> tuple["Vault", str]:
        conn = db.connect(path)
        db.create_schema(conn)
        migrations.migrate(conn, path, target=fmt, backups=False)
        vault = cls(path, crypto.random_bytes(16), state_dir)
        vault._adopt(conn)
        vault._snapshots = db.has_table(conn, "snapshot")
        dek = bytearray(crypto.random_bytes(crypto.KEY_LEN))
        keys = Keys(dek)
        recovery_text, recovery_raw = keyslots.new_recovery_key()
        header = keyslots.new_header(vault.vault_id, 1, PASSPHRASE, kdf)
        kek = keyslots.derive_kek(header, secret)
        with db.transaction(conn):
            conn.execute("INSERT INTO vault VALUES (1, ?, 0, ?, ?)",
                         (vault.vault_id, bytes(32), keys.header_mac(vault._header_bytes(0, 0))))
            vault._insert_slot(conn, "passphrase", header, kek, dek)
            rheader = keyslots.new_header(vault.vault_id, 2, RECOVERY)
            rkek = keyslots.derive_kek(rheader, recovery_raw)
            vault._insert_slot(conn, "recovery", rheader, rkek, dek)
            crypto.wipe(rkek)
        vault._install(keys, kek, (PASSPHRASE, 1))
        vault._verified = {}  # no rows yet: every one it will hold, it writes
        return vault, recovery_text

    @classmethod
    def open(cls, path: str, *, state_dir: str | None = None) -> "Vault":
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
        except db.sqlite3.DatabaseError as exc:
            conn.close()
            raise IntegrityError(f"{path} cannot be read as a vault ({exc})") from None
        except BaseException:
            conn.close()
            raise
        if row is None or not isinstance(row[0], bytes) or len(row[0]) != 16:
            conn.close()
            raise IntegrityError(f"{path} has no valid vault header")
        vault = cls(path, row[0], state_dir)
        vault._adopt(conn)
        vault._snapshots = db.has_table(conn, "snapshot")  # format 3, unless dropped
        return vault

    def close(self) -> None:
        """Lock and close every connection (from any thread)."""
        self.lock()
        self._closed = True
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conns.clear()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Vault({self.path!r}, {'unlocked' if self.unlocked else 'locked'})"

    # ------------------------------------------------------------ connections

    def _adopt(self, conn) -> None:
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)

    def _conn(self):
        if self._closed:
            raise BadRequest("the vault is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = db.connect(self.path)
            self._adopt(conn)
        return conn

    # ------------------------------------------------------------ unlock / lock

    @property
    def unlocked(self) -> bool:
        return self._keys is not None

    @property
    def from_snapshot(self) -> bool:
        """This unlock read the metadata from the file's snapshot (not row by row)."""
        return self._keys is not None and self._snapshot_gen is not None

    def unlock(self, passphrase: str | None = None, *, key: bytes | None = None,
               recovery_key: str | None = None) -> None:
        """Unlock with exactly one secret; BadPassphrase for a wrong one or a damaged slot."""
        given = [(k, s) for k, s in ((PASSPHRASE, passphrase), (KEY, key),
                                     (RECOVERY, recovery_key)) if s is not None]
        if len(given) != 1:
            raise BadRequest("unlock with exactly one of: passphrase, key, recovery key")
        kind, secret = given[0]
        dek, kek, slot_id = self._open_slot(kind, keyslots.secret_bytes(kind, secret))
        keys = Keys(dek)
        with self._lock:
            self.lock()
            try:
                load.load(self, keys)
            except BaseException:
                keys.wipe()
                crypto.wipe(kek)
                raise
            self._kek, self._unlocked_by = kek, (kind, slot_id)

    def _slots(self, kind: str) -> list[tuple[int, bytes, bytes, keyslots.SlotHeader]]:
        out = []
        for slot_id, raw, wrapped in self._conn().execute(
                "SELECT id, header, wrapped FROM slots ORDER BY id"):
            try:
                header = keyslots.candidate(raw, kind)
            except keyslots.SlotOutOfRange as exc:
                raise VaultIntegrityError(f"key slot {slot_id} of {self.path} is refused "
                                          f"without deriving: {exc}") from None
            if header is not None:
                out.append((slot_id, raw, wrapped, header))
        return out

    def _open_slot(self, kind: str, secret: bytes) -> tuple[bytearray, bytearray, int]:
        """Try every slot of `kind`: derive, then unwrap; each failure costs the same."""
        for slot_id, raw, wrapped, header in self._slots(kind):
            kek = keyslots.derive_kek(header, secret)
            try:
                dek = keyslots.unwrap(kek, wrapped, raw)
            except AuthFailure:
                crypto.wipe(kek)
                continue
            if header.vault_id == self.vault_id and header.slot_id == slot_id:
                return dek, kek, slot_id
            crypto.wipe(dek)
            crypto.wipe(kek)
        raise BadPassphrase(_GENERIC)

    def _install(self, keys: Keys, kek: bytearray, unlocked_by: tuple[str, int]) -> None:
        with self._lock:
            self._keys, self._kek, self._unlocked_by = keys, kek, unlocked_by

    def lock(self) -> None:
        """Seal the snapshot if it is stale, then drop the DEK, its subkeys, the slot KEK
        and every decrypted cache."""
        with self._lock:
            try:
                self.seal_snapshot()
            finally:  # whatever sealing met (even KeyboardInterrupt), the keys go
                if self._keys is not None:
                    self._keys.wipe()
                crypto.wipe(self._kek)
                self._reset()

    def seal_snapshot(self) -> None:
        """Seal the snapshot now if it is stale (best effort, see lock), so that a crash
        does not cost the next unlock its snapshot; the agent calls it once writes settle."""
        with self._lock:
            if self._keys is not None:
                snapshot.save(self, self._keys)

    def _require(self) -> Keys:
        keys = self._keys
        if keys is None:
            raise LockedError()
        if self._damage:
            raise VaultIntegrityError(f"{self.path}: {self._damage[0]}{_DAMAGE_HINT}")
        return keys

    @property
    def audit_key(self) -> bytes:
        """HMAC key for audit records; available on a damaged vault too, to audit its failures."""
        keys = self._keys
        if keys is None:
            raise LockedError()
        return bytes(keys.audit)

    # ------------------------------------------------------------ rollback memory

    def _header_bytes(self, generation: int, digest: int) -> bytes:
        return ad(b"credd-vault-header", self.vault_id, generation,
                  digest.to_bytes(32, "big") if digest >= 0 else b"")

    def _state_file(self) -> str | None:
        if not self.state_dir:
            return None
        return os.path.join(self.state_dir, f"vault-{self.vault_id.hex()}.generation")

    def _remembered(self) -> int:
        return counter.remembered(self._state_file())

    def _remember(self, generation: int) -> None:
        """Record the newest generation seen, outside the file (see counter.py)."""
        counter.remember(self._state_file(), generation)

    # ------------------------------------------------------------ reading

    def _find(self, name: str, *, trashed: bool | None = False) -> tuple[bytes, Cached]:
        """The row of `name`; trashed=None accepts live or trash, else that state only."""
        name, row_id = _locate(self._require(), name)
        if row_id in self._bad:
            raise VaultIntegrityError(f"entry {name!r} failed authentication{_DAMAGE_HINT}",
                                      name=name, row=row_id.hex())
        cached = self._cache.get(row_id)
        if cached is None:
            raise NotFound(f"no entry named {name!r}", names=[name])
        in_trash = cached.deleted is not None
        if trashed is not None and in_trash != trashed:
            raise NotFound(f"{name!r} is in the trash: undelete it first" if in_trash
                           else f"{name!r} is not in the trash", names=[name])
        return row_id, cached

    def _secret(self, row_id: bytes, cached: Cached) -> SecretRecord:
        """Decrypt one secret column; a racing writer makes us retry under the lock."""
        try:
            return self._read_secret(row_id, cached, self._keys)
        except Exception:
            pass
        with self._lock:
            keys = self._require()
            current = self._cache.get(row_id)
            name = cached.name
            if current is None:
                raise NotFound(f"no entry named {name!r}", names=[name])
            try:
                return self._read_secret(row_id, current, keys)
            except AuthFailure:
                raise VaultIntegrityError(f"entry {name!r} failed authentication{_DAMAGE_HINT}",
                                          name=name, row=row_id.hex()) from None

    def _read_secret(self, row_id: bytes, cached: Cached, keys: Keys | None) -> SecretRecord:
        """The secret of `cached`'s rev: from its sealed blob, read from the file the first time.

        The blob is kept only once it authenticated under (row id, rev), so
        what is kept is the authentic ciphertext; the file is still what
        `check()` and every other rev are verified against.
        """
        if keys is None:
            raise AuthFailure()
        sealed = cached.sealed
        if sealed is None:
            row = self._conn().execute("SELECT rev, secret FROM entries WHERE id = ?",
                                       (row_id,)).fetchone()
            if row is None or row[0] != cached.rev:
                raise AuthFailure()
            sealed = row[1]
        plain = crypto.unseal(keys.secret, sealed,
                              row_ad(self.vault_id, row_id, "secret", cached.rev))
        try:
            record = decode_secret(plain)
        except msgspec.DecodeError:
            raise AuthFailure() from None
        cached.sealed = sealed
        return record

    @property
    def entry_count(self) -> int:
        """Live entries (not trash); answers even on a damaged vault, for status lines."""
        if self._keys is None:
            raise LockedError()
        return self._live

    def list(self) -> list[EntryMeta]:
        """Every live entry's metadata, sorted by name (copies: see `entries`)."""
        return list(map(to_entry_meta, map(_CURRENT, self._live_by_name())))

    def entries(self) -> "EntryView":
        """`list`, as a view that makes each wire record only when it is read. The
        records are the cache's own, to be encoded and not changed: after a snapshot
        unlock they are what a later write starts from (the agent only encodes them)."""
        return EntryView(self._live_by_name())

    def _live_by_name(self) -> list[Cached]:
        self._require()
        if self._bad:
            raise VaultIntegrityError(
                f"{len(self._bad)} entries failed authentication{_DAMAGE_HINT}",
                row=next(iter(self._bad)).hex())
        rows = self._sorted
        if rows is None:
            with self._lock:
                rows = sorted((c for c in self._cache.values() if c.deleted is None),
                              key=_BY_NAME)
                self._sorted = rows
        return rows

    def trash(self) -> list[EntryMeta]:
        self._require()
        return sorted((to_entry_meta(c.current) for c in list(self._cache.values())
                       if c.deleted is not None), key=_BY_NAME)

    def describe(self, name: str) -> EntryMeta:
        return to_entry_meta(self._find(name)[1].current)

    def get(self, name: str, field: str | None = None) -> str:
        """The entry's value, or one field (secret or not)."""
        row_id, cached = self._find(name)
        meta = cached.current
        if isinstance(field, str):
            field = unicodedata.normalize("NFC", field)  # stored names are NFC (check_label)
        if field is not None and field in meta.fields:
            return meta.fields[field]
        secret = self._secret(row_id, cached)
        if field is None:
            if secret.value is None:
                raise NotFound(f"{meta.name!r} has no value; its fields: "
                               f"{', '.join(sorted([*meta.fields, *secret.fields])) or 'none'}",
                               names=[meta.name])
            return secret.value
        if field not in secret.fields:
            raise NotFound(f"{meta.name!r} has no field {field!r}", names=[meta.name])
        return secret.fields[field]

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        """All secrets of the current entry, or of one version from its history."""
        row_id, cached = self._find(name)
        if version is None or version == cached.current.version:
            meta, secret = to_entry_meta(cached.current), self._secret(row_id, cached)
        else:
            record = self._history_record(row_id, cached.name, version)
            meta, secret = to_entry_meta(record.meta), record.secret
        return SecretEntry(meta, secret.value or "", dict(secret.fields), secret.notes or "")

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        """(current version, older versions newest first)."""
        row_id, cached = self._find(name, trashed=None)
        with self._lock:
            rows = self._conn().execute(
                "SELECT version FROM history WHERE entry = ? ORDER BY version DESC",
                (row_id,)).fetchall()
            records = [self._history_record(row_id, cached.name, v) for (v,) in rows]
        return cached.current.version, [
            VersionInfo(version=r.meta.version, updated=r.meta.updated, replaced=r.replaced)
            for r in records]

    def _history_record(self, row_id: bytes, name: str, version: int) -> HistoryRecord:
        keys = self._require()
        row = None
        if 1 <= version < 2 ** 63:  # beyond SQLite's integers no version can exist
            row = self._conn().execute(
                "SELECT rev, blob FROM history WHERE entry = ? AND version = ?",
                (row_id, version)).fetchone()
        if row is None:
            raise NotFound(f"{name!r} has no version {version}", names=[name])
        try:
            plain = crypto.unseal(keys.secret, row[1],
                                  row_ad(self.vault_id, row_id, "history", row[0], version))
            record = decode_history(plain)
        except (AuthFailure, msgspec.DecodeError):
            raise VaultIntegrityError(f"version {version} of {name!r} failed authentication"
                                      f"{_DAMAGE_HINT}", name=name, row=row_id.hex()) from None
        if record.meta.version != version or record.meta.name != name:
            raise VaultIntegrityError(f"version {version} of {name!r} failed authentication",
                                      name=name, row=row_id.hex())
        return record

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[object, Keys, _Txn]]:
        """One write transaction: bump the generation, re-MAC the header, then update the cache."""
        with self._lock:
            keys = self._require()
            conn = self._conn()
            with db.transaction(conn):
                gen, digest = conn.execute(
                    "SELECT generation, digest FROM vault WHERE id = 1").fetchone()
                if gen != self._generation or digest != self._digest.to_bytes(32, "big"):
                    raise IntegrityError(f"{self.path} was changed by another process: "
                                         "lock and unlock again")
                txn = _Txn(gen + 1, self._digest)
                self._drop_snapshot(conn)
                yield conn, keys, txn
                conn.execute("UPDATE vault SET generation = ?, digest = ?, mac = ? WHERE id = 1",
                             (txn.gen, txn.digest.to_bytes(32, "big"),
                              keys.header_mac(self._header_bytes(txn.gen, txn.digest))))
            self._commit(txn)
            if txn.scrub:
                db.checkpoint_truncate(conn)
        self._remember(txn.gen)

    def _drop_snapshot(self, conn) -> None:
        """Part of every write: no older metadata (of a renamed or purged entry) may outlive it."""
        if self._snapshots:
            conn.execute("DELETE FROM snapshot")

    def _commit(self, txn: _Txn) -> None:
        for row_id, cached in txn.cache.items():
            old = self._cache.pop(row_id, None)
            self._live -= old is not None and old.deleted is None
            self._bad.pop(row_id, None)
            if cached is not None:
                self._cache[row_id] = cached
                self._live += cached.deleted is None
        if self._verified is not None:
            for row_id, blob in txn.metas.items():
                if blob is None:
                    self._verified.pop(row_id, None)
                else:
                    self._verified[row_id] = blob
        self._generation, self._digest = txn.gen, txn.digest
        self._sorted = None
        self._snapshot_gen = None  # the write deleted it

    def _write_row(self, conn, keys: Keys, txn: _Txn, row_id: bytes, meta: MetaRecord,
                   secret: SecretRecord, old_rev: int | None) -> EntryMeta:
        rev = txn.gen
        meta_blob = crypto.seal(keys.meta, encode(meta), row_ad(self.vault_id, row_id, "meta", rev))
        secret_blob = crypto.seal(keys.secret, encode(secret),
                                  row_ad(self.vault_id, row_id, "secret", rev))
        conn.execute("INSERT INTO entries (id, rev, meta, secret) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, meta = excluded.meta, "
                     "secret = excluded.secret", (row_id, rev, meta_blob, secret_blob))
        if old_rev is not None:
            txn.digest ^= keys.digest_item(ENTRY, row_id, old_rev)
        txn.digest ^= keys.digest_item(ENTRY, row_id, rev)
        txn.cache[row_id] = Cached(rev, meta.name, meta.deleted, meta)
        txn.metas[row_id] = meta_blob
        return to_entry_meta(meta)

    def _delete_row(self, conn, keys: Keys, txn: _Txn, row_id: bytes, rev: int) -> None:
        conn.execute("DELETE FROM entries WHERE id = ?", (row_id,))
        txn.digest ^= keys.digest_item(ENTRY, row_id, rev)
        txn.cache[row_id] = None
        txn.metas[row_id] = None

    def _add_history(self, conn, keys: Keys, txn: _Txn, row_id: bytes, meta: MetaRecord,
                     secret: SecretRecord, replaced: float) -> None:
        record = HistoryRecord(meta=meta, secret=secret, replaced=replaced)
        self._insert_history(conn, keys, txn, row_id, record)
        stale = conn.execute("SELECT hid, version, rev FROM history WHERE entry = ? "
                             "ORDER BY version DESC LIMIT -1 OFFSET ?",
                             (row_id, HISTORY_KEEP)).fetchall()
        for hid, version, rev in stale:
            conn.execute("DELETE FROM history WHERE hid = ?", (hid,))
            txn.digest ^= keys.digest_item(HISTORY, row_id, rev, version)

    def _insert_history(self, conn, keys: Keys, txn: _Txn, row_id: bytes,
                        record: HistoryRecord) -> None:
        version = record.meta.version
        blob = crypto.seal(keys.secret, encode(record),
                           row_ad(self.vault_id, row_id, "history", txn.gen, version))
        conn.execute("INSERT INTO history (entry, version, rev, blob) VALUES (?, ?, ?, ?)",
                     (row_id, version, txn.gen, blob))
        txn.digest ^= keys.digest_item(HISTORY, row_id, txn.gen, version)

    def _history_rows(self, conn, row_id: bytes) -> list[tuple[int, int, int]]:
        return conn.execute("SELECT hid, version, rev FROM history WHERE entry = ?",
                            (row_id,)).fetchall()

    def put(self, request: Set) -> EntryMeta:
        """Write an entry (protocol.Set semantics); the previous version goes to history."""
        if not isinstance(request, Set):
            raise BadRequest("put takes a protocol.Set request")
        name = canonical_name(request.name)
        mode, merge = request.mode, request.merge
        if mode not in ("upsert", "create", "update"):
            raise BadRequest(f"mode must be upsert, create or update, not {mode!r}")
        change = Change.validate(request)
        with self._writing() as (conn, keys, txn):
            row_id = keys.row_id(name)
            if row_id in self._bad:
                raise VaultIntegrityError(f"entry {name!r} failed authentication; purge it to "
                                          "replace it", name=name, row=row_id.hex())
            cur = self._cache.get(row_id)
            live = cur is not None and cur.meta.deleted is None
            if mode == "create" and live:
                raise Exists(f"an entry named {name!r} already exists", names=[name])
            if mode == "update" and not live:
                raise NotFound(f"no entry named {name!r}", names=[name])
            now = self._clock()
            old_secret = self._secret(row_id, cur) if cur else None
            base = (cur.meta, old_secret) if (merge and live) else None
            meta, secret = change.apply(name, base, now)
            if cur is not None:
                meta.created, meta.version = cur.meta.created, cur.meta.version + 1
                self._add_history(conn, keys, txn, row_id, cur.meta, old_secret, now)
            return self._write_row(conn, keys, txn, row_id, meta, secret,
                                   cur.rev if cur else None)

    def _set_deleted(self, name: str, deleted: bool) -> EntryMeta:
        with self._writing() as (conn, keys, txn):
            row_id, cur = self._find(name, trashed=not deleted)
            secret = self._secret(row_id, cur)
            meta = msgspec.structs.replace(cur.meta, deleted=self._clock() if deleted else None)
            return self._write_row(conn, keys, txn, row_id, meta, secret, cur.rev)

    def delete(self, name: str) -> EntryMeta:
        """Move an entry to the trash (restorable with `undelete` until purged)."""
        return self._set_deleted(name, True)

    def undelete(self, name: str) -> EntryMeta:
        return self._set_deleted(name, False)

    def purge(self, name: str) -> None:
        """Destroy a trashed entry and its whole history, and scrub them from the file.

        Repair path: an entry that fails authentication can be purged without
        going through the trash (it cannot be rewritten into it).
        """
        with self._writing() as (conn, keys, txn):
            name = canonical_name(name)
            row_id = keys.row_id(name)
            if row_id in self._bad:
                (rev,) = conn.execute("SELECT rev FROM entries WHERE id = ?", (row_id,)).fetchone()
            else:
                rev = self._purgeable(name)
            self._delete_row(conn, keys, txn, row_id, rev)
            for hid, version, hrev in self._history_rows(conn, row_id):
                conn.execute("DELETE FROM history WHERE hid = ?", (hid,))
                txn.digest ^= keys.digest_item(HISTORY, row_id, hrev, version)
            txn.scrub = True

    def _purgeable(self, name: str) -> int:
        """The rev of an entry purge may remove: in the trash, or live but damaged."""
        row_id, cached = self._find(name, trashed=None)
        if cached.deleted is None:
            try:
                self._secret(row_id, cached)
            except VaultIntegrityError:
                return cached.rev
            raise NotFound(f"{name!r} is not in the trash: delete it first", names=[name])
        return cached.rev

    def move(self, old: str, new: str) -> EntryMeta:
        """Rename an entry; its history follows it."""
        new = canonical_name(new)
        with self._writing() as (conn, keys, txn):
            row_id, cur = self._find(old)
            new_id = keys.row_id(new)
            if new_id == row_id:
                return to_entry_meta(cur.current)
            if new_id in self._cache or new_id in self._bad:
                raise Exists(f"an entry named {new!r} already exists (perhaps in the trash)",
                             names=[new])
            secret = self._secret(row_id, cur)
            for hid, version, _rev in self._history_rows(conn, row_id):
                record = self._history_record(row_id, cur.meta.name, version)
                record.meta.name = new
                conn.execute("DELETE FROM history WHERE hid = ?", (hid,))
                txn.digest ^= keys.digest_item(HISTORY, row_id, _rev, version)
                self._insert_history(conn, keys, txn, new_id, record)
            self._delete_row(conn, keys, txn, row_id, cur.rev)
            meta = msgspec.structs.replace(cur.meta, name=new, updated=self._clock())
            return self._write_row(conn, keys, txn, new_id, meta, secret, None)

    def restore(self, name: str, version: int) -> EntryMeta:
        """Make an older version current again; the current one goes to history."""
        with self._writing() as (conn, keys, txn):
            row_id, cur = self._find(name)
            if version == cur.meta.version:
                raise BadRequest(f"version {version} of {cur.meta.name!r} is already current")
            record = self._history_record(row_id, cur.meta.name, version)
            now = self._clock()
            self._add_history(conn, keys, txn, row_id, cur.meta, self._secret(row_id, cur), now)
            meta = msgspec.structs.replace(record.meta, created=cur.meta.created, updated=now,
                                           version=cur.meta.version + 1, deleted=None)
            return self._write_row(conn, keys, txn, row_id, meta, record.secret, cur.rev)

    # ------------------------------------------------------------ key slots

    def _insert_slot(self, conn, label: str, header: keyslots.SlotHeader, kek: bytearray,
                     dek: bytearray) -> None:
        raw = header.pack()
        conn.execute("INSERT INTO slots (id, label, header, wrapped) VALUES (?, ?, ?, ?)",
                     (header.slot_id, label, raw, keyslots.wrap(kek, dek, raw)))

    def _slot_by_label(self, conn, label: str) -> tuple[int, str] | None:
        row = conn.execute("SELECT id, header FROM slots WHERE label = ?", (label,)).fetchone()
        return None if row is None else (row[0], keyslots.kind_of(row[1]))

    def add_key_slot(self, key: bytes, label: str = "keyring") -> None:
        """Let a raw 32-byte key (e.g. one kept in the OS keyring) unlock the vault."""
        secret = keyslots.secret_bytes(KEY, key)
        label = check_label("slot label", label)
        with self._writing() as (conn, keys, txn):
            existing = self._slot_by_label(conn, label)
            if existing and existing[1] != KEY:
                raise BadRequest(f"slot {label!r} is a {existing[1]} slot, not a key slot")
            if existing:
                conn.execute("DELETE FROM slots WHERE id = ?", (existing[0],))
            (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM slots").fetchone()
            header = keyslots.new_header(self.vault_id, top + 1, KEY)
            kek = keyslots.derive_kek(header, secret)
            self._insert_slot(conn, label, header, kek, keys.dek)
            crypto.wipe(kek)
            txn.scrub = existing is not None

    def remove_key_slot(self, label: str = "keyring") -> None:
        with self._writing() as (conn, _keys, txn):
            existing = self._slot_by_label(conn, label)
            if existing is None or existing[1] != KEY:
                raise NotFound(f"no key slot labelled {label!r}")
            conn.execute("DELETE FROM slots WHERE id = ?", (existing[0],))
            txn.scrub = True

    def change_passphrase(self, old: str, new: str) -> None:
        """Rewrap the DEK under a new passphrase in one transaction; the old blob is scrubbed."""
        new_secret = keyslots.secret_bytes(PASSPHRASE, new)
        self._require()
        dek, old_kek, slot_id = self._open_slot(PASSPHRASE, keyslots.secret_bytes(PASSPHRASE, old))
        crypto.wipe(old_kek)
        keys = self._require()
        if not hmac.compare_digest(bytes(dek), bytes(keys.dek)):
            raise BadPassphrase(_GENERIC)
        (raw,) = self._conn().execute("SELECT header FROM slots WHERE id = ?",
                                      (slot_id,)).fetchone()
        kdf = keyslots.candidate(raw, PASSPHRASE).kdf
        header = keyslots.new_header(self.vault_id, slot_id, PASSPHRASE, kdf)
        kek = keyslots.derive_kek(header, new_secret)
        with self._writing() as (conn, keys, txn):
            packed = header.pack()
            conn.execute("UPDATE slots SET header = ?, wrapped = ? WHERE id = ?",
                         (packed, keyslots.wrap(kek, dek, packed), slot_id))
            txn.scrub = True
        crypto.wipe(dek)
        if self._unlocked_by == (PASSPHRASE, slot_id):
            crypto.wipe(self._kek)
            self._kek = kek
        else:
            crypto.wipe(kek)

    def rekey(self, progress: Callable[[int, int], None] | None = None) -> str:
        """Re-encrypt everything under a fresh DEK; returns the new recovery key.

        Only the passphrase slot used to unlock can be rewrapped (its KEK is
        held while unlocked): the recovery slot gets a new recovery key and key
        slots are removed (add them again), so no old secret opens the new DEK.
        """
        with self._lock:
            self._require()
            if self._bad:
                raise VaultIntegrityError("damaged entries must be purged before a rekey")
            if not self._unlocked_by or self._unlocked_by[0] != PASSPHRASE:
                raise BadRequest("rekey needs the vault unlocked with its passphrase")
            from credd.vault.rekey import rekey
            return rekey(self, progress or (lambda done, total: None))

    # ------------------------------------------------------------ verification

    def check(self) -> list[str]:
        """Verify every row, every version and every slot; return every problem found."""
        from credd.vault.check import check_vault
        with self._lock:
            if self._keys is None:
                raise LockedError()
            return check_vault(self, self._conn(), self._keys)
