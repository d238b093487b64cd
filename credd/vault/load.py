"""Unlock's read of the file: the header, every row, and the snapshot when it is the file's.

All of it in one read transaction, so that a writer in another process cannot make
them disagree. Rows go through in chunks of bulk, C-level steps (this is the cost of an
unlock at 100,000 entries); a chunk where anything fails is redone row by row, so that
every bad row is found and named. See docs/vault.md, "Performance" and "The metadata
snapshot".
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import operator
import struct
from collections.abc import Iterator
from itertools import compress, repeat
from typing import Any

from credd.vault import crypto, db, snapshot
from credd.vault.cache import Cached
from credd.vault.crypto import ENTRY, HISTORY, TAIL, Keys, row_ad
from credd.vault.model import MetaRecord, decode_meta

#: Rows per bulk step: amortizes the per-call costs and stays in the CPU cache.
CHUNK = 2048
_NONCE = operator.itemgetter(slice(None, crypto.NONCE_LEN))
_SEALED = operator.itemgetter(slice(crypto.NONCE_LEN, None))
_BY_NAME = operator.attrgetter("name")
_DELETED = operator.attrgetter("deleted")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(vault: Any, keys: Keys) -> None:
    """Verify the header, decrypt all metadata into the cache, check the digest: all
    from one read transaction, so that a writer in another process cannot make the
    header, the rows and the snapshot disagree."""
    conn = vault._conn()
    with db.reading(conn):
        _load_from(vault, conn, keys)


def header_damage(vault: Any, keys: Keys, gen: int, digest: int, mac: object) -> list[str]:
    """What is wrong with the header: its MAC, or a generation older than remembered."""
    damage = []
    if not (isinstance(mac, bytes) and hmac.compare_digest(
            mac, keys.header_mac(vault._header_bytes(gen, digest)))):
        damage.append("the vault header failed authentication")
    remembered = vault._remembered()
    if remembered > gen:
        damage.append(f"the vault file is older than one credd has seen (generation {gen} "
                      f"< {remembered}): it was rolled back to an earlier copy")
    return damage


def _load_from(vault: Any, conn, keys: Keys) -> None:
    gen, digest, mac = conn.execute(
        "SELECT generation, digest, mac FROM vault WHERE id = 1").fetchone()
    digest_int = int.from_bytes(digest, "big") if isinstance(digest, bytes) else -1
    damage = header_damage(vault, keys, gen, digest_int, mac)
    cache: dict[bytes, Cached] = {}
    bad: dict[bytes, str] = {}
    live = None
    stored = _has_snapshot(vault, conn, gen)
    with _gc_paused():  # 100,000 new objects would otherwise trigger many collections
        digest_now, rows_hash, verified = scan(vault, conn, keys, cache, bad,
                                               decrypt=not stored)
        if stored:
            if digest_now == digest_int and not damage and rows_hash is not None:
                live = _from_snapshot(vault, conn, keys, gen, digest, rows_hash, cache,
                                      len(verified))
            if live is None:  # not this file's: go row by row after all
                scan(vault, conn, keys, cache, bad, decrypt=True)
    if digest_now != digest_int:
        damage.append("entries were replayed, removed or added outside credd")
    vault._keys, vault._cache, vault._bad, vault._damage = keys, cache, bad, damage
    vault._generation, vault._digest = gen, digest_int
    vault._verified = verified
    vault._snapshot_gen = gen if live is not None else None
    vault._live = len(live) if live is not None else list(
        map(_DELETED, cache.values())).count(None)
    vault._sorted = live
    if not damage:
        vault._remember(gen)


def _has_snapshot(vault: Any, conn, gen: int) -> bool:
    """The file has a snapshot that claims this generation (checked when opened)."""
    return vault._snapshots and conn.execute(
        "SELECT 1 FROM snapshot WHERE id = 1 AND generation = ?", (gen,)).fetchone() is not None


def scan(vault: Any, conn, keys: Keys, cache: dict, bad: dict, *, decrypt: bool
         ) -> tuple[int | None, bytes | None, dict[bytes, bytes]]:
    """One pass over the entry rows, in chunks of bulk, C-level steps: decrypt them
    into the cache (unless a snapshot may stand in for that), and return the set
    digest of the file (None when a row is too malformed to take part in it), the
    rows hash a snapshot must match (None likewise), and every row's meta column.

    Decrypting is the cost of an unlock without a snapshot. A chunk where anything
    fails is redone row by row, so that every bad row is found and named.
    """
    ids: list = []
    tails: list[bytes] | None = []
    verified: dict[bytes, bytes] = {}
    rows_hash = None if decrypt else snapshot.RowsHash()  # only a snapshot needs it
    cursor = conn.execute("SELECT id, rev, meta FROM entries")
    while chunk := cursor.fetchmany(CHUNK):
        chunk_ids, revs, blobs = zip(*chunk)
        if decrypt:
            try:
                metas = _decrypt_chunk(vault, keys, chunk_ids, revs, blobs)
            except Exception:  # any damage (tag, types, lengths, encoding)
                _decrypt_rows(vault, keys, chunk, cache, bad)
            else:
                cache.update(zip(chunk_ids, map(Cached, revs, map(_BY_NAME, metas),
                                                map(_DELETED, metas), metas)))
        ids += chunk_ids
        verified.update(zip(chunk_ids, blobs))
        if tails is not None:
            try:
                tails.append(crypto.zero_version_tails(revs))
            except struct.error:  # a rev too malformed for the digest (keep naming rows)
                tails = None
        if rows_hash is not None:
            try:
                rows_hash.update(chunk_ids, revs, blobs)
            except (TypeError, struct.error):  # malformed: row by row names it
                rows_hash = None
    digest = None if tails is None else _digest_of(conn, keys, ids, b"".join(tails))
    return digest, rows_hash and rows_hash.digest(), verified


def _digest_of(conn, keys: Keys, ids: list, tails: bytes) -> int | None:
    history = conn.execute("SELECT entry, version, rev FROM history").fetchall()
    history_ids, versions, history_revs = zip(*history) if history else ((), (), ())
    try:
        return keys.digest(ENTRY, ids, tails) ^ keys.digest(
            HISTORY, history_ids, list(map(TAIL.pack, history_revs, versions)))
    except (ValueError, TypeError, struct.error):
        return None


def _from_snapshot(vault: Any, conn, keys: Keys, gen: int, digest: bytes, rows_hash: bytes,
                   cache: dict, count: int) -> list[Cached] | None:
    """Fill the cache from the snapshot if it is exactly this file's; return its
    live entries, already in name order (None: unlock row by row)."""
    holder = conn.execute("SELECT blob FROM snapshot WHERE id = 1").fetchall()
    if len(holder) != 1:
        return None
    holder = [holder[0][0]]  # a list, so that open_ can let go of the megabytes
    opened = snapshot.open_(keys, vault.vault_id, gen, digest, rows_hash, holder, count)
    if opened is None:
        return None
    body, names = opened
    deleted = list(map(_DELETED, body.entries))
    cached = list(map(Cached, body.revs, names, deleted, repeat(None), body.entries))
    cache.update(zip(body.ids, cached))
    return list(compress(cached, map(operator.not_, deleted)))  # live, in name order


def _decrypt_chunk(vault: Any, keys: Keys, ids: tuple, revs: tuple, blobs: tuple
                   ) -> list[MetaRecord]:
    """The records of rows that all authenticate; raises at the first that does not."""
    if set(map(len, ids)) != {crypto.ROW_ID_LEN}:  # ROW_AD needs exact lengths
        raise ValueError("malformed row id")
    ads = map(crypto.ROW_AD.pack, repeat(vault.vault_id), ids, repeat(b"m"), revs, repeat(0))
    plains = map(keys.meta.decrypt, map(_NONCE, blobs), map(_SEALED, blobs), ads)
    return list(map(decode_meta, plains))


def _decrypt_rows(vault: Any, keys: Keys, rows: list, cache: dict, bad: dict) -> None:
    """`_decrypt_chunk` one row at a time, recording each bad row."""
    for row_id, rev, blob in rows:
        try:
            meta = decode_meta(crypto.unseal(keys.meta, blob,
                                             row_ad(vault.vault_id, row_id, "meta", rev)))
        except Exception:  # any damage (tag, types, lengths, encoding) is one bad row
            bad[row_id] = f"row {row_id.hex() if isinstance(row_id, bytes) else row_id!r}"
        else:
            cache[row_id] = Cached(rev, meta.name, meta.deleted, meta)
