"""Unlock's read of the file: it builds the `Session`.

All of it in one read transaction, so that a writer in another process cannot make the
header, the rows, the chunks and the manifest disagree. Three ways, from fastest:

- **From the chunks**: the manifest opens, every chunk it lists opens under its own id,
  their ranges tile the name space, and every bucket of rows hashes as the manifest
  says. Then the file holds exactly the rows the listed chunks described when they were
  sealed, and the metadata is theirs. No row is decrypted and no object is made per row:
  each bucket is one SQL aggregate (chunks.BUCKET_SQL), hashed in C.
- **Mostly from the chunks**: a listed chunk is used only if every row it claims lies in
  a bucket that still hashes as the manifest says; every other row (in a changed bucket,
  or one whose chunk a write dropped) is decrypted and merged in by name.
- **Row by row**: no manifest (a migrated file, a crash before the first seal): every
  row is decrypted, in batches of bulk C-level steps; a batch where anything fails is
  redone one row at a time, so that every bad row is found and named.

docs/vault.md ("The chunks") argues why the first two say exactly what the third would.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Iterator
from itertools import pairwise, repeat
from typing import Any

from credd.vault import chunks, crypto, db, header, records
from credd.vault.chunks import BucketSeal, ChunkBody, Manifest
from credd.vault.crypto import HISTORY, TAIL, Keys, row_ad
from credd.vault.index import Columns, Index, Row, Segment, gc_paused
from credd.vault.model import MetaRecord, decode_meta, to_entry_meta
from credd.vault.session import Session, Slot

#: Rows per bulk decryption step: amortizes the per-call costs, stays in the CPU cache.
CHUNK = 2048
_NONCE = operator.itemgetter(slice(None, crypto.NONCE_LEN))
_SEALED = operator.itemgetter(slice(crypto.NONCE_LEN, None))
_NAME = operator.attrgetter("name")


def load(conn: Any, keys: Keys, vault_id: bytes, slot: Slot, rollback: header.Rollback,
         has_chunks: bool, slotted: bool, has_records: bool) -> Session:
    """The session of this unlock: header verified, metadata from the chunks or the rows,
    agent records decrypted, set digest checked; entry rows that fail are recorded, not
    raised (see the module docstring); a record that fails is damage. `slotted`: the header
    has the key slots' digest column (format 5); `has_records`: the records table (6)."""
    with db.reading(conn), db.bytes_text(conn), gc_paused():
        gen, stored, mac, stored_slots = conn.execute(
            f"SELECT generation, digest, mac, {'slots' if slotted else 'NULL'} "
            "FROM vault WHERE id = 1").fetchone()
        digest, slots = header.digest_int(stored), header.slots_value(stored_slots)
        damage = header.damage(keys, vault_id, gen, digest, mac, rollback.remembered(), slots)
        history = _history_digest(conn, keys)
        kept, kept_digest, bad_records = (records.load(conn, keys, vault_id) if has_records
                                          else ({}, 0, []))
        reader = _Reader(conn, keys, vault_id)
        found = reader.from_chunks() if has_chunks else None
        if found is None:
            found = reader.row_by_row(keep_buckets=has_chunks)
    index, entry_digest, buckets, current = found
    damage += bad_records
    if (entry_digest is None or history is None or kept_digest is None
            or entry_digest ^ history ^ kept_digest != digest):
        damage.append("entries or agent records were replayed, removed or added outside credd")
    if not damage:
        rollback.remember(gen)
    return Session(keys=keys, slot=slot, index=index, generation=gen, digest=digest,
                   history_digest=history if history is not None else 0, records=kept,
                   records_digest=kept_digest or 0, bad=reader.bad, damage=damage,
                   buckets=buckets, current=current and not reader.bad, slots=slots)


def _history_digest(conn: Any, keys: Keys) -> int | None:
    rows = conn.execute("SELECT entry, version, rev FROM history").fetchall()
    ids, versions, revs = zip(*rows) if rows else ((), (), ())
    try:
        return keys.digest(HISTORY, ids, list(map(TAIL.pack, revs, versions)))
    except (ValueError, TypeError, struct.error):
        return None


#: (index, the entry rows' share of the set digest or None, verified buckets, current)
Found = tuple[Index, int | None, dict[int, BucketSeal], bool]
#: (bucket, rows, hash, ids concatenated, every row well formed): chunks.scan_buckets
Scanned = tuple[int, int, bytes, bytes, bool]


class _Reader:
    """One unlock's reading: the rows that failed (`bad`) accumulate here."""

    def __init__(self, conn: Any, keys: Keys, vault_id: bytes) -> None:
        self.conn, self.keys, self.vault_id = conn, keys, vault_id
        self.bad: dict[bytes, str] = {}

    # ---------------------------------------------------------------- from the chunks

    def from_chunks(self) -> Found | None:
        """The session's index from the chunks (fast, or mostly); None: row by row."""
        manifest = self._manifest()
        if manifest is None:
            return None
        seals = {s.bucket: s for s in manifest.buckets}
        bodies = self._chunks(set(manifest.chunks))
        scanned = list(chunks.scan_buckets(self.conn))
        matched = {b: ids for b, _count, digest, ids, good in scanned
                   if good and b in seals and seals[b].hash == digest}
        tiled = _tiled(bodies)
        if (len(matched) == len(scanned) == len(seals) and len(bodies) == len(manifest.chunks)
                and tiled is not None):
            share = 0
            for seal in manifest.buckets:
                share ^= int.from_bytes(seal.digest, "big")
            return Index(tiled), share, seals, True
        if not bodies:
            return None
        return self._mostly(seals, bodies, scanned, matched)

    def _manifest(self) -> Manifest | None:
        row = self.conn.execute("SELECT blob FROM manifest WHERE id = 1").fetchone()
        return None if row is None else chunks.open_manifest(self.keys, self.vault_id, row[0])

    def _chunks(self, listed: set[int]) -> dict[int, ChunkBody]:
        """The listed chunks that open under their own ids (others are ignored)."""
        bodies = {}
        for chunk_id, blob in self.conn.execute("SELECT id, blob FROM chunks"):
            if chunk_id in listed:
                body = chunks.open_chunk(self.keys, self.vault_id, chunk_id, blob)
                if body is not None:
                    bodies[chunk_id] = body
        return bodies

    def _mostly(self, seals: dict[int, BucketSeal], bodies: dict[int, ChunkBody],
                scanned: list[Scanned], matched: dict[int, bytes]) -> Found:
        """Use the chunks whose rows all lie in unchanged buckets; decrypt the rest."""
        unchanged: set[bytes] = set()
        for ids in matched.values():
            unchanged.update(chunks.split_ids(ids))
        usable = {cid: body for cid, body in bodies.items()
                  if unchanged.issuperset(chunks.split_ids(body.ids))}
        kept = _disjoint(usable)
        claimed: set[bytes] = set()
        for _cid, body in kept:
            claimed.update(chunks.split_ids(body.ids))
        loose = Columns[MetaRecord]()
        buckets: dict[int, BucketSeal] = {}
        share: int | None = 0
        for bucket, _count, digest, ids, _good in scanned:
            if bucket in matched:
                buckets[bucket] = seals[bucket]
                share ^= int.from_bytes(seals[bucket].digest, "big")  # type: ignore[operator]
                if claimed.issuperset(chunks.split_ids(ids)):
                    continue
            rows = chunks.bucket_rows(self.conn, bucket)
            if bucket not in matched:
                part = self._share(rows)
                share = None if part is None or share is None else share ^ part
                if part is not None:
                    buckets[bucket] = BucketSeal(bucket, digest, part.to_bytes(16, "big"))
            self.decrypt([r for r in rows if r[0] not in claimed], loose)
        index = Index(_with_gaps(kept))
        return index.with_changes(_wire(loose)), share, buckets, False

    # ---------------------------------------------------------------- row by row

    def row_by_row(self, *, keep_buckets: bool) -> Found:
        """Decrypt every row. With `keep_buckets`, bucket by bucket, so that the next seal
        has every bucket's hash (these rows were just verified by decryption)."""
        if not keep_buckets:
            rows = self.conn.execute("SELECT id, rev, meta FROM entries").fetchall()
            return (Index.build(self.decrypt(rows), to_entry_meta), self._share(rows), {},
                    False)
        decrypted = Columns[MetaRecord]()
        buckets: dict[int, BucketSeal] = {}
        share: int | None = 0
        for bucket in _buckets(self.conn):
            rows = chunks.bucket_rows(self.conn, bucket)
            part = self._share(rows)
            share = None if part is None or share is None else share ^ part
            try:
                digest = chunks.bucket_hash(len(rows), *chunks.bucket_strings(rows))
            except TypeError:  # a malformed column: the file is damaged, nothing is sealed
                digest = b""
            if part is not None:
                buckets[bucket] = BucketSeal(bucket, digest, part.to_bytes(16, "big"))
            self.decrypt(rows, decrypted)
        return Index.build(decrypted, to_entry_meta), share, buckets, False

    def _share(self, rows: list[tuple[bytes, int, bytes]]) -> int | None:
        """These rows' share of the set digest; None when one is too malformed for it."""
        if not rows:
            return 0
        ids, revs, _metas = zip(*rows)
        try:
            return chunks.digest_share(self.keys, ids, revs)
        except (ValueError, TypeError, struct.error):
            return None

    # ---------------------------------------------------------------- decryption

    def decrypt(self, rows: list[tuple[bytes, int, bytes]],
                into: Columns[MetaRecord] | None = None) -> Columns[MetaRecord]:
        """The rows whose metadata authenticates, as columns (their entries file records);
        the others go to `bad`. In batches of bulk steps; a batch where anything fails is
        redone row by row."""
        out = Columns[MetaRecord]() if into is None else into
        for start in range(0, len(rows), CHUNK):
            batch = rows[start:start + CHUNK]
            ids, revs, blobs = zip(*batch)
            try:
                metas = self._decrypt_batch(ids, revs, blobs)
            except Exception:  # any damage (tag, types, lengths, encoding)
                self._decrypt_rows(batch, out)
            else:
                out.extend(Columns(list(map(_NAME, metas)), list(ids), list(revs), metas))
        return out

    def _decrypt_batch(self, ids: tuple[bytes, ...], revs: tuple[int, ...],
                       blobs: tuple[bytes, ...]) -> list[MetaRecord]:
        """The records of rows that all authenticate; raises at the first that does not."""
        if set(map(len, ids)) != {crypto.ROW_ID_LEN}:  # ROW_AD needs exact lengths
            raise ValueError("malformed row id")
        ads = map(crypto.ROW_AD.pack, repeat(self.vault_id), ids, repeat(b"m"), revs, repeat(0))
        plains = map(self.keys.meta.decrypt, map(_NONCE, blobs), map(_SEALED, blobs), ads)
        return list(map(decode_meta, plains))

    def _decrypt_rows(self, rows: Iterable[tuple[bytes, int, bytes]],
                      out: Columns[MetaRecord]) -> None:
        for row_id, rev, blob in rows:
            try:
                meta = decode_meta(crypto.unseal(self.keys.meta, blob,
                                                 row_ad(self.vault_id, row_id, "meta", rev)))
            except Exception:  # any damage (tag, types, lengths, encoding) is one bad row
                self.bad[row_id] = f"row {row_id.hex() if isinstance(row_id, bytes) else row_id!r}"
            else:
                out.append(meta.name, row_id, rev, meta)


def _buckets(conn: Any) -> Iterator[int]:
    """Every bucket that has rows, in order."""
    for (bucket,) in conn.execute("SELECT DISTINCT rowid >> ? FROM entries ORDER BY 1",
                                  (chunks.BUCKET.bit_length() - 1,)):
        yield bucket


def _disjoint(bodies: dict[int, ChunkBody]) -> list[tuple[int, ChunkBody]]:
    """The chunks by range, without any whose range is empty or overlaps another's (each
    row is covered at most once: overlapping chunks are both left out)."""
    ordered = sorted((item for item in bodies.items()
                      if item[1].high is None or item[1].low < item[1].high),
                     key=lambda item: item[1].low)
    overlapping = set()
    for (a, first), (b, second) in pairwise(ordered):
        if first.high is None or first.high > second.low:
            overlapping |= {a, b}
    return [item for item in ordered if item[0] not in overlapping]


def _tiled(bodies: dict[int, ChunkBody]) -> list[Segment] | None:
    """The segments of chunks whose ranges tile the whole name space, else None."""
    segments: list[Segment] = []
    cursor: str | None = ""
    for chunk_id, body in sorted(bodies.items(), key=lambda item: item[1].low):
        if cursor is None or body.low != cursor:
            return None
        segments.append(Segment.sealed(body.low, chunk_id, body))
        cursor = body.high
    return segments if cursor is None and segments else None


def _with_gaps(kept: list[tuple[int, ChunkBody]]) -> list[Segment]:
    """Segments of the kept chunks, with an empty dirty segment over each gap between
    their ranges (rows there are merged in afterwards)."""
    segments: list[Segment] = []
    cursor: str | None = ""
    for chunk_id, body in kept:
        if cursor is not None and body.low > cursor:
            segments.append(Segment.dirty(cursor, Columns(), Columns()))
        segments.append(Segment.sealed(body.low, chunk_id, body))
        cursor = body.high
    if cursor is not None:
        segments.append(Segment.dirty(cursor, Columns(), Columns()))
    return segments


def _wire(decrypted: Columns[MetaRecord]) -> list[tuple[str, Row]]:
    """Decrypted rows as (name, row) with wire records, to merge into an index."""
    return list(zip(decrypted.names, map(Row, decrypted.ids, decrypted.revs,
                                         map(to_entry_meta, decrypted.entries))))
