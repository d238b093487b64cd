"""Writes: the write transaction (`Txn`) and every write of an entry.

A write opens BEGIN IMMEDIATE under the vault's lock, checks that the header still has
the generation and digest this vault last wrote (a write by another process would
otherwise fork the file), bumps the generation (rows carry it as `rev`), updates the set
digest row by row, re-MACs the header and commits. The session learns of the write only
after COMMIT (`Session.committed`).

Each write also deletes, in the same transaction, the chunk whose range holds each name
it writes (the old and the new name of a move): metadata it replaces or removes never
outlives it in the file (`secure_delete` zeroes the pages; a purge or a move also empties
the WAL). Its cost is one chunk's pages, whatever the size of the vault.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import msgspec

from credd.errors import BadRequest, Conflict, Exists, IntegrityError, NotFound
from credd.protocol import EntryMeta, Set
from credd.vault import crypto, db, header, records
from credd.vault.changes import Change
from credd.vault.crypto import ENTRY, HISTORY, RECORD, row_ad
from credd.vault.db import VaultFile
from credd.vault.index import Row
from credd.vault.model import (
    HistoryRecord,
    MetaRecord,
    SecretRecord,
    canonical_name,
    check_text,
    encode,
    from_entry_meta,
    to_entry_meta,
)
from credd.vault.reads import Reader
from credd.vault.session import Commit, FileRow, Session, VaultIntegrityError

#: At least this many superseded versions are kept per entry.
HISTORY_KEEP = 20
_UPSERT = ("INSERT INTO entries (id, rev, meta, secret) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, meta = excluded.meta, "
           "secret = excluded.secret RETURNING rowid")


class Txn:
    """One write transaction: the rows it writes, and what it changes in the session."""

    def __init__(self, file: VaultFile, session: Session, current: Callable[[], Session],
                 now: float) -> None:
        self.conn, self.session, self.keys = file.conn(), session, session.keys
        self.vault_id, self.now = file.vault_id, now
        self.generation = session.generation + 1
        self.digest, self.history_digest = session.digest, session.history_digest
        self.records_digest = session.records_digest
        self.records: dict[bytes, records.Record | None] = {}
        self.slotted, self.slots = file.slotted, session.slots  # slots.reseal sets `slots`
        self.changes: dict[bytes, tuple[str, Row | None]] = {}
        self.before: dict[int, FileRow | None] = {}
        self.written: dict[int, FileRow | None] = {}
        self.dropped: set[int] = set()
        self.scrub = False  # checkpoint(TRUNCATE) after commit: nothing old stays in the WAL
        self.read = Reader(file, session, current, lookup=self.lookup)

    def lookup(self, name: str, row_id: bytes) -> Row | None:
        """The row as this transaction left it so far, else as the session has it."""
        if row_id in self.changes:
            return self.changes[row_id][1]
        return self.session.index.find(name)

    def commit(self) -> Commit:
        return Commit(self.generation, self.digest, self.history_digest, self.changes,
                      self.before, self.written, self.records_digest, self.records,
                      self.slots)

    def _capture(self, rowid: int, row: FileRow | None) -> None:
        """Remember a row as it was before this vault first wrote it since the last check."""
        if rowid not in self.session.before and rowid not in self.before:
            self.before[rowid] = row

    # ---------------------------------------------------------------- rows

    def drop_chunk(self, name: str) -> None:
        """Delete the chunk whose range holds `name` (once per transaction)."""
        index = self.session.index
        chunk = index.segments[index.segment_of(name)].chunk
        if chunk is not None and chunk not in self.dropped:
            self.conn.execute("DELETE FROM chunks WHERE id = ?", (chunk,))
            self.dropped.add(chunk)

    def write_row(self, row_id: bytes, meta: MetaRecord, secret: SecretRecord,
                  old_rev: int | None) -> EntryMeta:
        """Write the row (insert or replace) at this transaction's generation."""
        rev, vid = self.generation, self.vault_id
        old = self.conn.execute("SELECT rowid, rev, meta FROM entries WHERE id = ?",
                                (row_id,)).fetchone()
        meta_blob = crypto.seal(self.keys.meta, encode(meta), row_ad(vid, row_id, "meta", rev))
        (rowid,) = self.conn.execute(_UPSERT, (
            row_id, rev, meta_blob,
            crypto.seal(self.keys.secret, encode(secret), row_ad(vid, row_id, "secret", rev)),
        )).fetchone()
        self._capture(rowid, None if old is None else (row_id, old[1], old[2]))
        self.written[rowid] = (row_id, rev, meta_blob)
        if old_rev is not None:
            self.digest ^= self.keys.digest_item(ENTRY, row_id, old_rev)
        self.digest ^= self.keys.digest_item(ENTRY, row_id, rev)
        self.drop_chunk(meta.name)
        entry = to_entry_meta(meta)
        self.changes[row_id] = (meta.name, Row(row_id, rev, entry))
        return to_entry_meta(entry)

    def delete_row(self, name: str, row_id: bytes, rev: int) -> None:
        found = self.conn.execute("DELETE FROM entries WHERE id = ? RETURNING rowid, rev, meta",
                                  (row_id,)).fetchone()
        if found is not None:
            self._capture(found[0], (row_id, found[1], found[2]))
            self.written[found[0]] = None
        self.digest ^= self.keys.digest_item(ENTRY, row_id, rev)
        self.drop_chunk(name)
        self.changes[row_id] = (name, None)

    # ---------------------------------------------------------------- history

    def _history_item(self, row_id: bytes, rev: int, version: int) -> None:
        item = self.keys.digest_item(HISTORY, row_id, rev, version)
        self.digest ^= item
        self.history_digest ^= item

    def add_history(self, row_id: bytes, meta: MetaRecord, secret: SecretRecord) -> None:
        """Keep the version being replaced; prune past HISTORY_KEEP. A staged value belongs
        to the live row, not to a version: it stays out of history."""
        if meta.pending is not None or secret.pending is not None:
            meta = msgspec.structs.replace(meta, pending=None)
            secret = msgspec.structs.replace(secret, pending=None)
        self.insert_history(row_id, HistoryRecord(meta=meta, secret=secret, replaced=self.now))
        stale = self.conn.execute("SELECT hid, version, rev FROM history WHERE entry = ? "
                                  "ORDER BY version DESC LIMIT -1 OFFSET ?",
                                  (row_id, HISTORY_KEEP)).fetchall()
        for hid, version, rev in stale:
            self.delete_history(row_id, hid, version, rev)

    def insert_history(self, row_id: bytes, record: HistoryRecord) -> None:
        version = record.meta.version
        blob = crypto.seal(self.keys.secret, encode(record),
                           row_ad(self.vault_id, row_id, "history", self.generation, version))
        self.conn.execute("INSERT INTO history (entry, version, rev, blob) VALUES (?, ?, ?, ?)",
                          (row_id, version, self.generation, blob))
        self._history_item(row_id, self.generation, version)

    def delete_history(self, row_id: bytes, hid: int, version: int, rev: int) -> None:
        self.conn.execute("DELETE FROM history WHERE hid = ?", (hid,))
        self._history_item(row_id, rev, version)

    def history_rows(self, row_id: bytes) -> list[tuple[int, int, int]]:
        return self.conn.execute("SELECT hid, version, rev FROM history WHERE entry = ?",
                                 (row_id,)).fetchall()

    # ---------------------------------------------------------------- agent records

    def _record_item(self, rid: bytes, rev: int) -> None:
        item = self.keys.digest_item(RECORD, rid, rev)
        self.digest ^= item
        self.records_digest ^= item

    def _record_rev(self, rid: bytes) -> int | None:
        """The rev of a record row as this transaction left it so far (None: no row)."""
        held = self.records[rid] if rid in self.records else self.session.records.get(rid)
        return None if held is None else held.rev

    def put_record(self, kind: str, record_id: str, data: bytes) -> None:
        rid, blob = records.seal(self.keys, self.vault_id, kind, record_id, data, self.generation)
        old = self._record_rev(rid)
        self.conn.execute("INSERT INTO records (id, rev, blob) VALUES (?, ?, ?) ON CONFLICT (id) "
                          "DO UPDATE SET rev = excluded.rev, blob = excluded.blob",
                          (rid, self.generation, blob))
        if old is not None:
            self._record_item(rid, old)
        self._record_item(rid, self.generation)
        self.records[rid] = records.Record(kind, record_id, self.generation, data)

    def delete_record(self, kind: str, record_id: str) -> None:
        """Remove a record (none: nothing to do); its row leaves the file and the WAL."""
        rid = records.row_id(self.keys, kind, record_id)
        old = self._record_rev(rid)
        if old is None:
            return
        self.conn.execute("DELETE FROM records WHERE id = ?", (rid,))
        self._record_item(rid, old)
        self.records[rid] = None
        self.scrub = True


@contextlib.contextmanager
def transaction(file: VaultFile, session: Session, current: Callable[[], Session],
                now: float) -> Iterator[Txn]:
    """One write: header checked, generation bumped, header re-MACed, then the session.
    The caller holds the vault's lock."""
    keys = session.require(file.path)
    with file.transaction() as conn:
        gen, digest = conn.execute("SELECT generation, digest FROM vault WHERE id = 1").fetchone()
        if gen != session.generation or digest != session.digest.to_bytes(32, "big"):
            raise IntegrityError(f"{file.path} was changed by another process: "
                                 "lock and unlock again")
        txn = Txn(file, session, current, now)
        yield txn
        header.write(conn, keys, file.vault_id, txn.generation, txn.digest, txn.slots)
    session.committed(txn.commit())
    if txn.scrub:
        db.checkpoint_truncate(conn)


# ---------------------------------------------------------------- the writes

def put(txn: Txn, request: Set, *, keep_pending: bool = True) -> EntryMeta:
    """Write an entry (protocol.Set semantics); the previous version goes to history. A
    staged value (`stage`) outlives the write unless `keep_pending` is False (`finish`)."""
    if not isinstance(request, Set):
        raise BadRequest("put takes a protocol.Set request")
    name = canonical_name(request.name)
    mode, merge = request.mode, request.merge
    if mode not in ("upsert", "create", "update"):
        raise BadRequest(f"mode must be upsert, create or update, not {mode!r}")
    change = Change.validate(request)
    row_id = txn.keys.row_id(name)
    if row_id in txn.session.bad:
        raise VaultIntegrityError(f"entry {name!r} failed authentication; purge it to "
                                  "replace it", name=name, row=row_id.hex())
    cur = txn.lookup(name, row_id)
    live = cur is not None and cur.entry.deleted is None
    if mode == "create" and live:
        raise Exists(f"an entry named {name!r} already exists", names=[name])
    if mode == "update" and not live:
        raise NotFound(f"no entry named {name!r}", names=[name])
    if cur is None:
        meta, secret = change.apply(name, None, txn.now)
        meta.value_changed = txn.now
        return txn.write_row(row_id, meta, secret, None)
    old_meta, old_secret = from_entry_meta(cur.entry), txn.read.secret(name, cur)
    meta, secret = change.apply(name, (old_meta, old_secret) if (merge and live) else None,
                                txn.now)
    meta.created, meta.version = old_meta.created, old_meta.version + 1
    meta.value_changed = _value_changed(old_meta, old_secret, secret, txn.now)
    meta.compromised = _still_compromised(old_meta, meta.value_changed, txn.now)
    if keep_pending:
        meta.pending, secret.pending = old_meta.pending, old_secret.pending
    else:
        meta.pending = secret.pending = None
    txn.add_history(row_id, old_meta, old_secret)
    return txn.write_row(row_id, meta, secret, cur.rev)


def _value_changed(meta: MetaRecord, before: SecretRecord, after: SecretRecord,
                   now: float) -> float:
    """When the value last changed, once `after` replaces `before`: now if the value or a
    secret field differs, else as it was (a record from before this was kept: its update)."""
    if (after.value, after.fields) != (before.value, before.fields):
        return now
    return meta.value_changed or meta.updated


def _still_compromised(before: MetaRecord, value_changed: float, now: float) -> float | None:
    """An `incident` mark outlives a write that keeps the value, never a new value."""
    return None if value_changed == now else before.compromised


def set_deleted(txn: Txn, name: str, deleted: bool) -> EntryMeta:
    """Move a live entry to the trash, or bring a trashed one back."""
    name, cur = txn.read.find(name, trashed=not deleted)
    secret = txn.read.secret(name, cur)
    meta = msgspec.structs.replace(from_entry_meta(cur.entry),
                                   deleted=txn.now if deleted else None)
    return txn.write_row(cur.id, meta, secret, cur.rev)


def purge(txn: Txn, name: str) -> None:
    """Destroy a trashed (or damaged) entry and its whole history, and scrub the file."""
    name = canonical_name(name)
    row_id = txn.keys.row_id(name)
    if row_id in txn.session.bad:
        (rev,) = txn.conn.execute("SELECT rev FROM entries WHERE id = ?", (row_id,)).fetchone()
    else:
        rev = _purgeable(txn, name)
    txn.delete_row(name, row_id, rev)
    for hid, version, hrev in txn.history_rows(row_id):
        txn.delete_history(row_id, hid, version, hrev)
    txn.scrub = True


def _purgeable(txn: Txn, name: str) -> int:
    """The rev of an entry purge may remove: in the trash, or live but damaged."""
    name, row = txn.read.find(name, trashed=None)
    if row.entry.deleted is None:
        try:
            txn.read.secret(name, row)
        except VaultIntegrityError:
            return row.rev
        raise NotFound(f"{name!r} is not in the trash: delete it first", names=[name])
    return row.rev


def move(txn: Txn, old: str, new: str) -> EntryMeta:
    """Rename an entry; its history follows it. The old name leaves the file at once."""
    new = canonical_name(new)
    old, cur = txn.read.find(old)
    new_id = txn.keys.row_id(new)
    if new_id == cur.id:
        return to_entry_meta(cur.entry)
    if txn.lookup(new, new_id) is not None or new_id in txn.session.bad:
        raise Exists(f"an entry named {new!r} already exists (perhaps in the trash)",
                     names=[new])
    secret = txn.read.secret(old, cur)
    for hid, version, rev in txn.history_rows(cur.id):
        record = txn.read.history_record(cur.id, old, version)
        record.meta.name = new
        txn.delete_history(cur.id, hid, version, rev)
        txn.insert_history(new_id, record)
    txn.delete_row(old, cur.id, cur.rev)
    meta = msgspec.structs.replace(from_entry_meta(cur.entry), name=new, updated=txn.now)
    txn.scrub = True
    return txn.write_row(new_id, meta, secret, None)


def restore(txn: Txn, name: str, version: int) -> EntryMeta:
    """Make an older version current again; the current one goes to history."""
    name, cur = txn.read.find(name)
    if version == cur.entry.version:
        raise BadRequest(f"version {version} of {name!r} is already current")
    record = txn.read.history_record(cur.id, name, version)
    old_meta, old_secret = from_entry_meta(cur.entry), txn.read.secret(name, cur)
    txn.add_history(cur.id, old_meta, old_secret)
    changed = _value_changed(old_meta, old_secret, record.secret, txn.now)
    meta = msgspec.structs.replace(
        record.meta, created=old_meta.created, updated=txn.now, version=old_meta.version + 1,
        deleted=None, value_changed=changed, pending=old_meta.pending,
        compromised=_still_compromised(old_meta, changed, txn.now))
    secret = msgspec.structs.replace(record.secret, pending=old_secret.pending)
    return txn.write_row(cur.id, meta, secret, cur.rev)


# ---------------------------------------------------------------- a staged value (rotation)

def stage(txn: Txn, name: str, value: str) -> EntryMeta:
    """Keep `value` beside the current one, until `finish` makes it current or `abandon`
    drops it. Neither a version nor history: the current value has not changed."""
    value = check_text("value", value) or ""
    if not value:
        raise BadRequest("a staged value cannot be empty")
    name, cur = txn.read.find(name)
    secret = txn.read.secret(name, cur)
    if secret.pending is not None:
        raise Conflict(f"{name!r} already has a new value pending: finish or abandon that "
                       "rotation first", names=[name])
    meta = msgspec.structs.replace(from_entry_meta(cur.entry), pending=txn.now)
    return txn.write_row(cur.id, meta, msgspec.structs.replace(secret, pending=value), cur.rev)


def finish(txn: Txn, request: Set) -> EntryMeta:
    """`put` the staged value as the entry's value (with what else `request` changes); the
    previous version goes to history. `request.value` must be the staged value: Conflict
    when another rotation replaced it since the caller read it."""
    name, cur = txn.read.find(request.name)
    if txn.read.secret(name, cur).pending != request.value or request.value is None:
        raise Conflict(f"{name!r} has no pending value, or another one than was read: "
                       "look again", names=[name])
    return put(txn, msgspec.structs.replace(request, merge=True, mode="update"),
               keep_pending=False)


def abandon(txn: Txn, name: str) -> EntryMeta:
    """Drop the staged value; the current one stays."""
    name, cur = txn.read.find(name)
    secret = txn.read.secret(name, cur)
    if secret.pending is None:
        raise NotFound(f"{name!r} has no pending value", names=[name])
    meta = msgspec.structs.replace(from_entry_meta(cur.entry), pending=None)
    return txn.write_row(cur.id, meta, msgspec.structs.replace(secret, pending=None), cur.rev)


# ---------------------------------------------------------------- an incident's mark

def mark_compromised(txn: Txn, name: str) -> EntryMeta:
    """Mark the current value compromised (`incident`): metadata only, no new version; the
    first write that changes the value clears it (`put`, `restore`, `finish`)."""
    name, cur = txn.read.find(name)
    meta = msgspec.structs.replace(from_entry_meta(cur.entry), compromised=txn.now)
    return txn.write_row(cur.id, meta, txn.read.secret(name, cur), cur.rev)
