"""`Vault.rekey()`: re-encrypt every entry and version under a fresh DEK, in one transaction.

Only a passphrase slot whose KEK is known can be rewrapped: the one the rekey's proof
opened, or the one the vault was unlocked with. The recovery slot gets a new recovery
key, and key slots are dropped, so no secret that opened the old DEK opens the new one;
every slot's MAC is redone under the new header key. That is the point of a rekey after an
old copy of the vault leaked. The chunks and the manifest were sealed under the old key:
they go too, and the returned session has every segment dirty (the next seal writes
them, after checking every rewritten row).
"""

from __future__ import annotations

from collections.abc import Callable

from credd.errors import IntegrityError
from credd.protocol import EntryMeta
from credd.vault import crypto, db, header, keyslots, records, slots
from credd.vault.crypto import ENTRY, HISTORY, TAIL, Keys, row_ad
from credd.vault.db import VaultFile
from credd.vault.index import Columns, Index, Row
from credd.vault.keyslots import RECOVERY
from credd.vault.model import encode, from_entry_meta
from credd.vault.session import FileRow, Session, Slot

BATCH = 500  # rows between progress reports


class _Progress:
    def __init__(self, report: Callable[[int, int], None], total: int) -> None:
        self.report, self.total, self.done = report, total, 0
        report(0, total)

    def step(self) -> None:
        self.done += 1
        if self.done % BATCH == 0:
            self.report(self.done, self.total)


def rekey(file: VaultFile, session: Session, report: Callable[[int, int], None],
          has_chunks: bool, keep: Slot, now: float, has_records: bool) -> tuple[Session, str]:
    """(the new session, the new recovery key). `keep`: the passphrase slot to rewrap, with
    its KEK (the new session's slot); `has_records`: the file has agent records (format 6).
    The caller holds the vault's lock and installs the session; the old keys are wiped
    here."""
    old, new = session.require(file.path), Keys(bytearray(crypto.random_bytes(crypto.KEY_LEN)))
    conn = file.conn()
    recovery_text, recovery_raw = keyslots.new_recovery_key()
    by_id = {row.id: (name, row) for name, row in session.index.rows()}
    with file.transaction():
        gen = conn.execute("SELECT generation FROM vault").fetchone()[0]
        if gen != session.generation:
            raise IntegrityError(f"{file.path} was changed by another process: "
                                 "lock and unlock again")
        gen += 1
        if has_chunks:  # sealed under the old key
            conn.execute("DELETE FROM chunks")
            conn.execute("DELETE FROM manifest")
        rows = conn.execute("SELECT id, rev, secret FROM entries").fetchall()
        hist = conn.execute("SELECT hid, entry, version, rev, blob FROM history").fetchall()
        progress = _Progress(report, len(rows) + len(hist))
        index, new_ids, entry_digest, written = _entries(file, old, new, gen, rows, by_id,
                                                         progress)
        history_digest = _history(file, old, new, gen, hist, new_ids, progress)
        kept, records_digest = (_records(file, session, new, gen) if has_records
                                else ({}, 0))
        _rewrap_slots(file, keep, new, recovery_raw, int(now))
        slots_digest = (slots.seal_table(conn, new, file.vault_id, None) if file.slotted
                        else None)
        digest = entry_digest ^ history_digest ^ records_digest
        header.write(conn, new, file.vault_id, gen, digest, slots_digest)
    db.checkpoint_truncate(conn)
    old.wipe()
    if session.slot.kek is not keep.kek:
        crypto.wipe(session.slot.kek)
    report(progress.total, progress.total)
    return Session(keys=new, slot=keep, index=index, generation=gen, digest=digest,
                   history_digest=history_digest, records=kept, records_digest=records_digest,
                   before=dict.fromkeys(written), written=written,
                   slots=slots_digest), recovery_text


def _entries(file: VaultFile, old: Keys, new: Keys, gen: int,
             rows: list[tuple[bytes, int, bytes]], by_id: dict[bytes, tuple[str, Row]],
             progress: _Progress
             ) -> tuple[Index, dict[bytes, bytes], int, dict[int, FileRow]]:
    """Rewrite every entry row under the new keys (new row ids too: the index key changed)."""
    vid, conn = file.vault_id, file.conn()
    new_ids: dict[bytes, bytes] = {}
    rewritten = Columns[EntryMeta]()
    written: dict[int, FileRow] = {}
    conn.execute("DELETE FROM entries")
    for row_id, rev, blob in rows:
        name, row = by_id[row_id]
        plain = crypto.unseal(old.secret, blob, row_ad(vid, row_id, "secret", rev))
        new_id = new_ids[row_id] = new.row_id(name)
        meta = crypto.seal(new.meta, encode(from_entry_meta(row.entry)),
                           row_ad(vid, new_id, "meta", gen))
        (rowid,) = conn.execute("INSERT INTO entries VALUES (?, ?, ?, ?) RETURNING rowid", (
            new_id, gen, meta, crypto.seal(new.secret, plain,
                                           row_ad(vid, new_id, "secret", gen)))).fetchone()
        written[rowid] = (new_id, gen, meta)
        rewritten.append(name, new_id, gen, row.entry)
        progress.step()
    ids = rewritten.ids
    return (Index.build(rewritten, _same), new_ids,
            new.digest(ENTRY, ids, [TAIL.pack(gen, 0)] * len(ids)), written)


def _same(entry: EntryMeta) -> EntryMeta:
    return entry


def _history(file: VaultFile, old: Keys, new: Keys, gen: int,
             hist: list[tuple[int, bytes, int, int, bytes]],
             new_ids: dict[bytes, bytes], progress: _Progress) -> int:
    vid, conn, ids, tails = file.vault_id, file.conn(), [], []
    for hid, row_id, version, rev, blob in hist:
        plain = crypto.unseal(old.secret, blob, row_ad(vid, row_id, "history", rev, version))
        new_id = new_ids[row_id]
        conn.execute("UPDATE history SET entry = ?, rev = ?, blob = ? WHERE hid = ?", (
            new_id, gen, crypto.seal(new.secret, plain,
                                     row_ad(vid, new_id, "history", gen, version)), hid))
        ids.append(new_id)
        tails.append(TAIL.pack(gen, version))
        progress.step()
    return new.digest(HISTORY, ids, tails)


def _records(file: VaultFile, session: Session, new: Keys, gen: int
             ) -> tuple[dict[bytes, records.Record], int]:
    """Every agent record sealed anew (new row ids: the index key changed); their digest."""
    conn = file.conn()
    conn.execute("DELETE FROM records")
    kept = {}
    for record in session.records.values():
        rid, blob = records.seal(new, file.vault_id, record.kind, record.id, record.data, gen)
        conn.execute("INSERT INTO records (id, rev, blob) VALUES (?, ?, ?)", (rid, gen, blob))
        kept[rid] = record._replace(rev=gen)
    return kept, records.digest(new, ((rid, gen) for rid in kept))


def _rewrap_slots(file: VaultFile, slot: Slot, new: Keys, recovery_raw: bytes,
                  now: int) -> None:
    """Keep the passphrase slot (rewrapped), a new recovery slot, nothing else."""
    conn = file.conn()
    (raw,) = conn.execute("SELECT header FROM slots WHERE id = ?", (slot.id,)).fetchone()
    conn.execute("UPDATE slots SET wrapped = ? WHERE id = ?",
                 (keyslots.wrap(slot.kek, new.dek, raw), slot.id))
    conn.execute("DELETE FROM slots WHERE id != ?", (slot.id,))
    header_ = keyslots.new_header(file.vault_id, slot.id + 1, RECOVERY)
    kek = keyslots.derive_kek(header_, recovery_raw)
    slots.insert_slot(conn, "recovery", header_, kek, new.dek, now if file.slotted else None)
    crypto.wipe(kek)
