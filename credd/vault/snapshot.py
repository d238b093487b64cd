"""The metadata snapshot: every entry's metadata in name order, sealed as one blob.

Why: unlocking row by row costs one AEAD call and one decode per entry, and
leaves the records in memory in row order, which is random with respect to
names; the first `list` then walks 100,000 scattered records in name order.
On a machine where a random memory access costs a microsecond, those two
passes are most of the time. A snapshot is opened with one AEAD call and
decoded front to back, so the records land in memory already in name order.

It is only an accelerator, never a second source of truth. Unlock uses it
only when it is sealed under this vault's metadata key for the header's exact
generation and digest and for every row's exact id, rev and `meta` column
(`RowsHash`): then it says what decrypting every row would have said, and
a file changed in any way falls back to the row-by-row unlock, which finds and
names the damage as before. Every write deletes the snapshot in its own
transaction, so metadata that a write replaced or purged does not outlive it;
locking seals a fresh one (`save`), over rows that authenticated only.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from collections.abc import Mapping
from itertools import chain
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from credd.protocol import EntryMeta
from credd.vault import crypto, db


class Snapshot(msgspec.Struct, array_like=True, gc=False):
    """Parallel lists, in name order: row ids, their revs, their metadata.

    The metadata is kept in its wire form, so the records an unlock decodes
    are the ones a `list` sends: the first list converts nothing.
    """

    ids: list[bytes]
    revs: list[int]
    entries: list[EntryMeta]


#: How long sealing waits for another writer (ms) before giving up, and rows per step.
WAIT_MS, CHUNK = 200, 2048
_REV = operator.attrgetter("rev")
_decode = msgspec.msgpack.Decoder(Snapshot).decode
_encode = msgspec.msgpack.Encoder().encode
_BY_NAME = operator.attrgetter("name")
_ITEM_NAME = lambda item: item[1].name  # noqa: E731 (row id, cached record) by name


class RowsHash:
    """SHA-256 over every row's id, rev and `meta` column, in file order, fed a chunk of
    rows at a time.

    Ids and revs are in it so that a column left in place while the rows around it
    are swapped is seen; the lengths so that bytes moved from one column to the next
    are; and each part is hashed apart and then together, so that the result does
    not depend on how the rows were chunked.
    """

    def __init__(self) -> None:
        self._parts = tuple(hashlib.sha256() for _ in range(4))

    def update(self, ids: tuple, revs: tuple, blobs: tuple) -> None:
        """TypeError or struct.error for a row too malformed to hash (row by row names it)."""
        lengths, keys, versions, data = self._parts
        lengths.update(struct.pack(f">{2 * len(blobs)}I",
                                   *chain.from_iterable(zip(map(len, ids), map(len, blobs)))))
        keys.update(b"".join(ids))
        versions.update(struct.pack(f">{len(revs)}q", *revs))
        data.update(b"".join(blobs))

    def digest(self) -> bytes:
        return hashlib.sha256(b"".join(part.digest() for part in self._parts)).digest()


def _ad(vault_id: bytes, generation: int, digest: bytes, rows: bytes) -> bytes:
    return crypto.ad(b"credd-snapshot", vault_id, generation, digest, rows)


def seal(keys: Any, vault_id: bytes, generation: int, digest: bytes, rows: bytes,
         cache: Mapping[bytes, Any]) -> tuple[bytes, bytes]:
    """(nonce, ciphertext) of the snapshot of `cache` (row id → record with `.rev`,
    `.name`, `.entry`). Each large intermediate is dropped as soon as the next exists:
    this runs at lock, on top of everything the unlocked vault holds."""
    items = sorted(cache.items(), key=_ITEM_NAME)
    plain = _encode(Snapshot([row_id for row_id, _ in items], [c.rev for _, c in items],
                             [c.entry for _, c in items]))
    del items
    nonce = crypto.random_bytes(crypto.NONCE_LEN)
    return nonce, keys.meta.encrypt(nonce, plain, _ad(vault_id, generation, digest, rows))


def store(conn: Any, generation: int, sealed: tuple[bytes, bytes]) -> None:
    """Write nonce ‖ ciphertext in place through SQLite's blob API: binding megabytes as
    one parameter would copy them twice more."""
    nonce, ciphertext = sealed
    conn.execute("INSERT OR REPLACE INTO snapshot (id, generation, blob) "
                 "VALUES (1, ?, zeroblob(?))", (generation, len(nonce) + len(ciphertext)))
    with conn.blobopen("snapshot", "blob", 1) as blob:
        blob.write(nonce)
        blob.write(ciphertext)


def open_(keys: Any, vault_id: bytes, generation: int, digest: bytes, rows: bytes,
          row: list, count: int) -> tuple[Snapshot, list[str]] | None:
    """The snapshot in `row` (a one-item list, emptied as soon as it is decrypted) and
    its names, if it is exactly this file's (`count` rows); None for any other."""
    blob = row.pop()
    if not isinstance(blob, bytes) or len(blob) < crypto.NONCE_LEN + crypto.TAG_LEN:
        return None
    with memoryview(blob) as view:  # no copy of a blob of megabytes
        try:
            plain = keys.meta.decrypt(view[:crypto.NONCE_LEN], view[crypto.NONCE_LEN:],
                                      _ad(vault_id, generation, digest, rows))
        except InvalidTag:
            return None
    del blob
    try:
        body = _decode(plain)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    names = list(map(_BY_NAME, body.entries))
    if not (len(body.ids) == len(body.revs) == len(names) == count
            and all(map(operator.lt, names, names[1:]))):  # unique and in order
        return None
    return body, names


def save(vault: Any, keys: Any) -> None:
    """Seal the vault's cache as the file's snapshot, unless it already is.

    Best effort, and quick to give up: it runs as the vault locks, and a missing
    snapshot only means the next unlock goes row by row.
    """
    conn = getattr(vault._local, "conn", None)  # never open the file (or create it) here
    if (not vault._snapshots or vault._snapshot_gen == vault._generation or vault._bad
            or vault._damage or vault._closed or vault._verified is None or conn is None):
        return
    try:
        conn.execute(f"PRAGMA busy_timeout={WAIT_MS}")
        try:
            with db.transaction(conn):
                sealed_for = _seal(vault, conn, keys)
            vault._snapshot_gen = sealed_for
        finally:
            conn.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
    except Exception:  # full disk, busy or vanished file…: the next unlock goes row by row
        pass


def _seal(vault: Any, conn: Any, keys: Any) -> int | None:
    """Write the snapshot in the open transaction; the generation it is for, or None."""
    gen, digest = conn.execute("SELECT generation, digest FROM vault WHERE id = 1").fetchone()
    if gen != vault._generation or digest != vault._digest.to_bytes(32, "big"):
        return None  # changed by another process: not ours to describe
    verified, rows_hash, count = vault._verified, RowsHash(), 0
    cursor = conn.execute("SELECT id, rev, meta FROM entries")
    while chunk := cursor.fetchmany(CHUNK):
        ids, revs, blobs = zip(*chunk)
        cached = tuple(map(vault._cache.get, ids))
        if (tuple(map(verified.get, ids)) != blobs  # type: ignore[union-attr]
                or None in cached or tuple(map(_REV, cached)) != revs):
            return None  # not the rows that authenticated: the next unlock checks them
        rows_hash.update(ids, revs, blobs)
        count += len(blobs)
    if count != len(verified):  # type: ignore[arg-type]
        return None
    store(conn, gen, seal(keys, vault.vault_id, gen, digest, rows_hash.digest(), vault._cache))
    return gen
