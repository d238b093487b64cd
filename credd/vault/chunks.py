"""The sealed metadata in the file: chunks, the manifest, and the bucket hashes.

- A **chunk** is one segment of the index (index.py): the metadata of every row whose
  name falls in its range, live and trashed, in name order, with their row ids and revs,
  sealed under the metadata key with AD = ("credd-chunk", vault id, chunk id). Its
  range (two names) is inside it: the file shows neither names nor their order. A write
  deletes the chunk whose range holds a name it writes, in its own transaction.
- A **bucket** is the entry rows whose SQLite rowids share `rowid // BUCKET`: a fixed
  run of the file, hashed in one pass (id, rev, meta length and meta bytes of each
  row, as SQLite concatenates them) without making a Python object per row.
- The **manifest** is what the last seal saw: the hash and set-digest share of every
  bucket, and the ids of the chunks that then held exactly those rows. Sealed with AD
  ("credd-manifest", vault id).

Unlock trusts a chunk only through the manifest (see load.py and docs/vault.md, "The
chunks": a bucket that hashes as the manifest says holds exactly the rows the listed
chunks described when it was sealed).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from credd.protocol import EntryMeta
from credd.vault import crypto
from credd.vault.crypto import ENTRY, Keys
from credd.vault.index import Part, Segment

#: Rows per bucket (by rowid). Small enough that re-verifying a bucket a write touched
#: costs about a millisecond at seal, large enough that unlock runs few queries.
BUCKET = 512
_B = BUCKET.bit_length() - 1
assert 1 << _B == BUCKET

#: One bucket in one pass, as strings SQLite builds (no object per row): the row count,
#: the ids concatenated, the revs in decimal, the meta lengths in decimal, the metas
#: concatenated, and how many rows have a 16-byte id and a numeric rev. The lengths make
#: the split of the metas unambiguous; `rev < x''` is false for a BLOB rev (whose bytes
#: would print like a number). Read with `text_factory = bytes`.
BUCKET_SQL = ("SELECT count(*), group_concat(id, ''), group_concat(rev), "
              "group_concat(length(meta)), group_concat(meta, ''), "
              "total(length(id) = 16 AND rev < x'') "
              "FROM entries WHERE rowid >= ? AND rowid < ?")
_NEXT_SQL = "SELECT rowid FROM entries WHERE rowid >= ? ORDER BY rowid LIMIT 1"
_ROWS_SQL = "SELECT id, rev, meta FROM entries WHERE rowid >= ? AND rowid < ? ORDER BY rowid"
_ROWIDS_SQL = ("SELECT rowid, id, rev, meta FROM entries WHERE rowid >= ? AND rowid < ? "
               "ORDER BY rowid")


class ChunkBody(msgspec.Struct, array_like=True, gc=False):
    """A segment as sealed: its range, then its rows, live ones first, each kind in name
    order. The columns are bytes (msgpack bin) decoded as views into the plaintext: an
    unlock opens a chunk without walking its records, and a segment decodes them only
    when it is first read."""

    low: str
    high: str | None          # the next segment's low; None: to the end
    nlive: int
    ids: memoryview           # 16 bytes per row
    revs: memoryview          # 8 bytes per row, big-endian
    live: memoryview          # msgpack array of EntryMeta
    trash: memoryview         # msgpack array of EntryMeta

    def count(self) -> int:
        return len(self.ids) // crypto.ROW_ID_LEN

    def live_entries(self) -> tuple[EntryMeta, ...]:
        return _decode_entries(self.live)

    def live_raw(self) -> tuple[msgspec.Raw, ...]:
        return _decode_raws(self.live)

    def parts(self, live: tuple[EntryMeta, ...] | None = None) -> tuple[Part, Part]:
        """Every column, reusing the live entries if already decoded (the same objects:
        the agent's page cache knows a record by its identity)."""
        count = self.count()
        ids = _ids_struct(count).unpack(self.ids)
        revs = _revs_struct(count).unpack(self.revs)
        live = _decode_entries(self.live) if live is None else live
        trash = _decode_entries(self.trash)
        n = len(live)
        if n + len(trash) != count or n != self.nlive:
            raise ValueError("a chunk's columns disagree")  # only a sealer bug gets here
        return (Part(tuple(map(_NAME, live)), ids[:n], revs[:n], live),
                Part(tuple(map(_NAME, trash)), ids[n:], revs[n:], trash))


class BucketSeal(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One bucket as a seal saw it: its hash and its share of the set digest."""

    bucket: int
    hash: bytes
    digest: bytes             # 16 bytes: this bucket's rows' XOR share of the set digest


class Manifest(msgspec.Struct, array_like=True, gc=False):
    chunks: list[int]
    buckets: list[BucketSeal]


_NAME = operator.attrgetter("name")
_encode = msgspec.msgpack.Encoder().encode
_decode_body = msgspec.msgpack.Decoder(ChunkBody).decode
_decode_manifest = msgspec.msgpack.Decoder(Manifest).decode
_decode_entries = msgspec.msgpack.Decoder(tuple[EntryMeta, ...]).decode
_decode_raws = msgspec.msgpack.Decoder(tuple[msgspec.Raw, ...]).decode


@functools.lru_cache(maxsize=64)
def _ids_struct(count: int) -> struct.Struct:
    return struct.Struct("16s" * count)


@functools.lru_cache(maxsize=64)
def _revs_struct(count: int) -> struct.Struct:
    return struct.Struct(f">{count}Q")


# ---------------------------------------------------------------- chunks

def _chunk_ad(vault_id: bytes, chunk_id: int) -> bytes:
    return crypto.ad(b"credd-chunk", vault_id, chunk_id)


def seal_chunk(keys: Keys, vault_id: bytes, chunk_id: int, segment: Segment,
               high: str | None) -> bytes:
    """nonce ‖ ciphertext of `segment` as chunk `chunk_id`."""
    live, trash = segment.parts()
    ids, revs = (*live.ids, *trash.ids), (*live.revs, *trash.revs)
    body = ChunkBody(low=segment.low, high=high, nlive=len(live.names),
                     ids=memoryview(b"".join(ids)),
                     revs=memoryview(_revs_struct(len(revs)).pack(*revs)),
                     live=memoryview(_encode(live.entries)),
                     trash=memoryview(_encode(trash.entries)))
    return crypto.seal(keys.meta, _encode(body), _chunk_ad(vault_id, chunk_id))


def open_chunk(keys: Keys, vault_id: bytes, chunk_id: int, blob: object) -> ChunkBody | None:
    """The chunk's body if it opens under its own id and is well formed; else None."""
    plain = _open(keys, blob, _chunk_ad(vault_id, chunk_id))
    if plain is None:
        return None
    try:
        body = _decode_body(plain)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if (len(body.ids) % crypto.ROW_ID_LEN or len(body.revs) != 8 * body.count()
            or not 0 <= body.nlive <= body.count()):
        return None
    return body


def _open(keys: Keys, blob: object, associated: bytes) -> bytes | None:
    if not isinstance(blob, bytes) or len(blob) < crypto.NONCE_LEN + crypto.TAG_LEN:
        return None
    with memoryview(blob) as view:
        try:
            return keys.meta.decrypt(view[:crypto.NONCE_LEN], view[crypto.NONCE_LEN:],
                                     associated)
        except InvalidTag:
            return None


# ---------------------------------------------------------------- manifest

def _manifest_ad(vault_id: bytes) -> bytes:
    return crypto.ad(b"credd-manifest", vault_id)


def seal_manifest(keys: Keys, vault_id: bytes, manifest: Manifest) -> bytes:
    return crypto.seal(keys.meta, _encode(manifest), _manifest_ad(vault_id))


def open_manifest(keys: Keys, vault_id: bytes, blob: object) -> Manifest | None:
    plain = _open(keys, blob, _manifest_ad(vault_id))
    if plain is None:
        return None
    try:
        return _decode_manifest(plain)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# ---------------------------------------------------------------- buckets

def bucket_of(rowid: int) -> int:
    return rowid >> _B


def bucket_hash(count: int, ids: bytes, revs: bytes, lengths: bytes, metas: bytes) -> bytes:
    """SHA-256 of one bucket's rows in rowid order, from the strings BUCKET_SQL returns
    (or `bucket_strings` makes): each string hashed apart, then all together."""
    parts = b"".join(hashlib.sha256(s).digest() for s in (ids, revs, lengths, metas))
    return hashlib.sha256(count.to_bytes(8, "big") + parts).digest()


def bucket_strings(rows: Sequence[tuple[bytes, int, bytes]]) -> tuple[bytes, bytes, bytes,
                                                                      bytes]:
    """The strings BUCKET_SQL builds, from rows already fetched (sealing checks rows one by
    one, so it has them as objects)."""
    ids, revs, metas = zip(*rows) if rows else ((), (), ())
    return (b"".join(ids), b",".join(b"%d" % r for r in revs),
            b",".join(b"%d" % len(m) for m in metas), b"".join(metas))


def scan_buckets(conn: Any) -> Iterator[tuple[int, int, bytes, bytes, bool]]:
    """(bucket, row count, hash, ids concatenated, every row well formed) for every bucket
    that has rows, in rowid order. The caller sets `text_factory = bytes`."""
    first = conn.execute("SELECT min(rowid) FROM entries").fetchone()[0]
    bucket = None if first is None else bucket_of(first)
    while bucket is not None:
        count, ids, revs, lengths, metas, good = conn.execute(
            BUCKET_SQL, (bucket << _B, (bucket + 1) << _B)).fetchone()
        if count:
            yield (bucket, count, bucket_hash(count, ids or b"", revs or b"", lengths or b"",
                                              metas or b""), ids or b"", good == count)
        after = conn.execute(_NEXT_SQL, ((bucket + 1) << _B,)).fetchone()
        bucket = None if after is None else bucket_of(after[0])


def bucket_rows(conn: Any, bucket: int, *, with_rowids: bool = False) -> list[Any]:
    """The bucket's rows (id, rev, meta), or (rowid, id, rev, meta), in rowid order."""
    rows: list[Any] = conn.execute(_ROWIDS_SQL if with_rowids else _ROWS_SQL,
                                   (bucket << _B, (bucket + 1) << _B)).fetchall()
    return rows


def split_ids(ids: bytes | memoryview) -> tuple[bytes, ...]:
    """16-byte ids from their concatenation (a bucket's ids, checked to be 16 bytes each)."""
    return _ids_struct(len(ids) // crypto.ROW_ID_LEN).unpack(ids)


def digest_share(keys: Keys, ids: Sequence[bytes], revs: Sequence[int]) -> int:
    """These entry rows' share of the set digest; ValueError/struct.error if malformed."""
    return keys.digest(ENTRY, ids, crypto.zero_version_tails(revs))
