"""Agent records: small sealed blobs the agent keeps in the vault beside the entries.

The agent's own security state (grants) needs what entries have: encrypted at
rest, and loud when a row is swapped, replayed, removed or rolled back. A
record is `(kind, id) -> data`, one row of `records(id, rev, blob)`:

- `id` = HMAC(index key, NUL "record" NUL kind NUL record id)[:16]: neither the
  kind nor the id can be read from the file (no entry name holds a NUL);
- `blob` = AES-256-GCM under the metadata key of (kind, id, data), with
  AD = vault id ‖ row id ‖ "r" ‖ rev; a record whose content names another
  (kind, id) than its row id is damage, so the AD binds both;
- every row is a term of the header's set digest, with its own PRF key
  (`crypto.RECORD`), so adding, removing or replaying a whole row breaks the
  authenticated header like an entry row does, and a rolled-back file is
  caught by the generation counter.

Records are decrypted at unlock into the session (there are few) and written
through the vault's write transaction; a deleted record's row is scrubbed
from the file and the WAL, like a purged entry.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import Any, NamedTuple

import msgspec

from credd.errors import BadRequest
from credd.vault import crypto
from credd.vault.crypto import RECORD, TAIL, AuthFailure, Keys, row_ad

MAX_ID = 128
MAX_DATA = 256 * 1024
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")


class Record(NamedTuple):
    kind: str
    id: str
    rev: int
    data: bytes


class _Sealed(msgspec.Struct, array_like=True, gc=False):
    """What a record's blob holds, once decrypted."""

    kind: str
    id: str
    data: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Sealed).decode


def check(kind: object, record_id: object, data: object = b"") -> None:
    """BadRequest unless kind is a lowercase word, the id short printable text, data bytes."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise BadRequest(f"record kind {kind!r} must be a lowercase word")
    if not isinstance(record_id, str) or not 0 < len(record_id) <= MAX_ID \
            or not record_id.isprintable():
        raise BadRequest(f"record id must be 1-{MAX_ID} printable characters")
    if not isinstance(data, bytes) or len(data) > MAX_DATA:
        raise BadRequest(f"record data must be at most {MAX_DATA} bytes")


def row_id(keys: Keys, kind: str, record_id: str) -> bytes:
    return keys.row_id(f"\0record\0{kind}\0{record_id}")


def seal(keys: Keys, vault_id: bytes, kind: str, record_id: str, data: bytes,
         rev: int) -> tuple[bytes, bytes]:
    """(row id, blob) of a record written at generation `rev`."""
    rid = row_id(keys, kind, record_id)
    blob = crypto.seal(keys.meta, _encode(_Sealed(kind, record_id, data)),
                       row_ad(vault_id, rid, "record", rev))
    return rid, blob


def open_row(keys: Keys, vault_id: bytes, rid: Any, rev: Any, blob: Any) -> Record:
    """A row's record; AuthFailure for anything but a row this vault wrote as it is."""
    try:
        plain = _decode(crypto.unseal(keys.meta, blob, row_ad(vault_id, rid, "record", rev)))
    except (AuthFailure, msgspec.DecodeError, msgspec.ValidationError, TypeError,
            struct.error):
        raise AuthFailure() from None
    if row_id(keys, plain.kind, plain.id) != rid:
        raise AuthFailure()
    return Record(plain.kind, plain.id, rev, plain.data)


def digest(keys: Keys, rows: Iterable[tuple[bytes, int]]) -> int:
    """The rows' share of the set digest; ValueError/TypeError/struct.error if malformed."""
    pairs = list(rows)
    return keys.digest(RECORD, [rid for rid, _ in pairs],
                       [TAIL.pack(rev, 0) for _, rev in pairs])


def load(conn: Any, keys: Keys, vault_id: bytes
         ) -> tuple[dict[bytes, Record], int | None, list[str]]:
    """Every record of the file (inside the caller's read transaction): the records that
    open, the rows' digest share (None: a row too malformed for it), and what failed."""
    rows = conn.execute("SELECT id, rev, blob FROM records").fetchall()
    found: dict[bytes, Record] = {}
    bad = []
    for rid, rev, blob in rows:
        try:
            found[rid] = open_row(keys, vault_id, rid, rev, blob)
        except AuthFailure:
            bad.append(f"agent record {rid.hex() if isinstance(rid, bytes) else rid!r} failed "
                       "authentication")
    try:
        share: int | None = digest(keys, ((rid, rev) for rid, rev, _ in rows))
    except (ValueError, TypeError, struct.error):
        share = None
    return found, share, bad
