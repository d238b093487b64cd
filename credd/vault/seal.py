"""Sealing: the session's dirty segments become chunks, and a manifest records what the
file now holds, in one transaction. Best effort: a seal that cannot run only means the
next unlock decrypts more rows.

It costs what changed since the last seal, not the size of the vault: one chunk per
dirty segment, and one read of every bucket with a row written since. Such a bucket is
vouched for again only if every row this vault wrote holds what it wrote, and with those
rows put back as they were, the bucket hashes as it did when last verified (session.py
keeps both). A bucket nobody wrote keeps the hash it had when the vault verified it. So
a row changed behind the vault's back is never blessed: the next unlock finds its bucket
changed and decrypts it. The seal also bumps the generation, so another process that still holds an
older picture of the chunks can no longer write (it would not know which chunk to drop).
"""

from __future__ import annotations

import logging
import sqlite3

from credd.errors import NoSpace
from credd.vault import chunks, crypto, db, header
from credd.vault.chunks import BucketSeal, Manifest
from credd.vault.db import VaultFile
from credd.vault.index import Index
from credd.vault.session import FileRow, Session

log = logging.getLogger("credd.vault")

#: How long sealing waits for another writer (ms) before giving up.
WAIT_MS = 200


def seal(file: VaultFile, conn: sqlite3.Connection, session: Session,
         rollback: header.Rollback) -> bool:
    """Seal what is dirty, unless nothing is, the file is damaged, or it changed; True if
    the file now describes the session. Never raises for a busy or full disk (`conn`: the
    thread's connection, which `file.transaction` uses: a seal never opens one)."""
    if session.current or session.bad or session.damage:
        return session.current
    if rollback.remembered() > session.generation:
        return False  # a newer copy of the file exists: sealing must not hide a rollback
    try:
        conn.execute(f"PRAGMA busy_timeout={WAIT_MS}")
        try:
            with file.transaction():
                done = _seal(conn, session, file.vault_id)
        finally:
            conn.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
    except NoSpace:
        log.warning("the metadata seal was skipped: no space left on the device holding the "
                    "vault (the next unlock decrypts the rows written since the last one)")
        return False
    except Exception:  # busy, vanished file…: the next unlock decrypts more rows
        return False
    if done is None:
        return False
    session.sealed(*done)
    rollback.remember(done[2])
    return True


def _seal(conn: sqlite3.Connection, session: Session, vault_id: bytes
          ) -> tuple[Index, dict[int, BucketSeal], int] | None:
    """Write the chunks and the manifest in the open transaction; None to give up."""
    gen, stored = conn.execute("SELECT generation, digest FROM vault WHERE id = 1").fetchone()
    if gen != session.generation or header.digest_int(stored) != session.digest:
        return None  # changed by another process: not ours to describe
    buckets = _buckets(conn, session)
    if buckets is None:
        return None
    index = session.index.normalized()
    existing = {cid for (cid,) in conn.execute("SELECT id FROM chunks")}
    kept = index.chunks()
    for chunk_id in existing - kept:  # merged away, or not ours; first, so pages are reused
        conn.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))
    taken = existing | kept
    placed: dict[int, int] = {}
    for i, segment in enumerate(index.segments):
        if segment.chunk is None:
            placed[i] = _fresh_id(taken)
            high = index.lows[i + 1] if i + 1 < len(index.lows) else None
            conn.execute("INSERT INTO chunks (id, blob) VALUES (?, ?)", (
                placed[i], chunks.seal_chunk(session.keys, vault_id, placed[i], segment, high)))
    index = index.sealed_as(placed)
    keep = index.chunks()
    manifest = Manifest(chunks=sorted(keep), buckets=[buckets[b] for b in sorted(buckets)])
    conn.execute("INSERT OR REPLACE INTO manifest (id, blob) VALUES (1, ?)",
                 (chunks.seal_manifest(session.keys, vault_id, manifest),))
    gen += 1
    header.write(conn, session.keys, vault_id, gen, session.digest, session.slots)
    return index, buckets, gen


def _buckets(conn: sqlite3.Connection, session: Session) -> dict[int, BucketSeal] | None:
    """Every bucket's seal: the verified ones as they were, each one with rows written
    since read back and checked (`_recheck`); None if one fails, or if the buckets' digest
    shares do not add up to the entry rows' part of the set digest."""
    buckets = dict(session.buckets)
    touched: dict[int, list[int]] = {}
    for rowid in session.before:
        touched.setdefault(chunks.bucket_of(rowid), []).append(rowid)
    for bucket, rowids in touched.items():
        rows = chunks.bucket_rows(conn, bucket, with_rowids=True)
        buckets.pop(bucket, None)
        try:
            seal = _recheck(session, bucket, rowids, rows)
        except _NotAsKnown:
            return None
        if seal is not None:
            buckets[bucket] = seal
    total = 0
    for seal in buckets.values():
        total ^= int.from_bytes(seal.digest, "big")
    return buckets if total == session.entry_digest else None


class _NotAsKnown(Exception):
    """A bucket does not hold what the vault knows of it: seal nothing."""


def _recheck(session: Session, bucket: int, rowids: list[int],
             rows: list[tuple[int, bytes, int, bytes]]) -> BucketSeal | None:
    """The new seal of a bucket this vault wrote into (None: it is empty now). Each row
    it wrote must hold what it wrote; with them put back as they were before, the bucket
    must hash as it did when last verified: so every other row is unchanged, and the
    bucket holds exactly the rows the index describes. _NotAsKnown otherwise."""
    written, before = session.written, session.before
    present: dict[int, FileRow] = {rowid: (row_id, rev, meta) for rowid, row_id, rev, meta in rows}
    if any(present.get(rowid) != written.get(rowid) for rowid in rowids):
        raise _NotAsKnown()  # a row it wrote is not what it wrote, or one it deleted is back
    earlier = {rowid: row for rowid, row in present.items() if rowid not in before}
    for rowid in rowids:
        was = before[rowid]
        if was is not None:
            earlier[rowid] = was
    now = list(present.values())
    previous = [earlier[rowid] for rowid in sorted(earlier)]
    known = session.buckets.get(bucket)
    if (known.hash if known else None) != (_hash(previous) if previous else None):
        raise _NotAsKnown()
    if not now:
        return None
    share = chunks.digest_share(session.keys, [r[0] for r in now], [r[1] for r in now])
    return BucketSeal(bucket, _hash(now), share.to_bytes(16, "big"))


def _hash(rows: list[FileRow]) -> bytes:
    return chunks.bucket_hash(len(rows), *chunks.bucket_strings(rows))


def _fresh_id(taken: set[int]) -> int:
    """A random chunk id (63 bits), not yet used: ids say nothing about the order of the
    names. It joins `taken`."""
    while True:
        chunk_id = int.from_bytes(crypto.random_bytes(8), "big") >> 1
        if chunk_id not in taken:
            taken.add(chunk_id)
            return chunk_id
