"""The metadata snapshot: every entry's metadata in name order, sealed as one blob.

Why: unlocking row by row costs one AEAD call and one decode per entry, and
leaves the records in memory in row order, which is random with respect to
names; the first `list` then walks 100,000 scattered records in name order.
On a machine where a random memory access costs a microsecond, those two
passes are most of the time. A snapshot is opened with one AEAD call and
decoded front to back, so the records land in memory already in name order.

It is only an accelerator, never a second source of truth. Unlock uses it
only when it is sealed under this vault's metadata key for the header's exact
generation and digest and for the exact bytes of every row's `meta` column
(`rows_hash`): then it says what decrypting every row would have said, and
a file changed in any way falls back to the row-by-row unlock, which finds and
names the damage as before. Every write deletes the snapshot in its own
transaction, so metadata that a write replaced or purged does not outlive it;
locking seals a fresh one.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
import operator
from operator import itemgetter
from typing import Any

import msgspec

from credd.protocol import EntryMeta
from credd.vault import crypto


class Snapshot(msgspec.Struct, array_like=True, gc=False):
    """Parallel lists, in name order: row ids, their revs, their metadata.

    The metadata is kept in its wire form, so the records an unlock decodes
    are the ones a `list` sends: the first list converts nothing.
    """

    ids: list[bytes]
    revs: list[int]
    entries: list[EntryMeta]


_decode = msgspec.msgpack.Decoder(Snapshot).decode
_encode = msgspec.msgpack.Encoder().encode
_NAME = itemgetter(0)
_BY_NAME = operator.attrgetter("name")


def rows_hash(blobs: tuple[bytes, ...] | list[bytes]) -> bytes:
    """SHA-256 of every `meta` blob in file order, their lengths first, so that no
    two different columns hash alike (bytes moved from one blob to the next)."""
    digest = hashlib.sha256(struct.pack(f">{len(blobs)}I", *map(len, blobs)))
    digest.update(b"".join(blobs))
    return digest.digest()


def _ad(vault_id: bytes, generation: int, digest: bytes, rows: bytes) -> bytes:
    return crypto.ad(b"credd-snapshot", vault_id, generation, digest, rows)


def seal(keys: Any, vault_id: bytes, generation: int, digest: bytes, rows: bytes,
         cache: Mapping[bytes, Any]) -> bytes:
    """The sealed snapshot of `cache` (row id → record with `.rev`, `.name`, `.entry`)."""
    order = sorted(((c.name, row_id, c) for row_id, c in cache.items()), key=_NAME)
    body = Snapshot([row_id for _, row_id, _ in order], [c.rev for _, _, c in order],
                    [c.entry for _, _, c in order])
    return crypto.seal(keys.meta, _encode(body), _ad(vault_id, generation, digest, rows))


def open_(keys: Any, vault_id: bytes, generation: int, digest: bytes, rows: bytes,
          blob: object, count: int) -> Snapshot | None:
    """The snapshot if it is exactly this file's (`count` rows); None for any other."""
    try:
        body = _decode(crypto.unseal(keys.meta, blob, _ad(vault_id, generation, digest, rows)))
    except (crypto.AuthFailure, msgspec.DecodeError, msgspec.ValidationError):
        return None
    names = list(map(_BY_NAME, body.entries))
    if not (len(body.ids) == len(body.revs) == len(names) == count
            and all(map(operator.lt, names, names[1:]))):  # unique and in order
        return None
    return body
