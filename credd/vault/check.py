"""`Vault.check()`: re-read the file from scratch and report every problem, not just the first.

Works on a damaged vault too (the cache is not trusted: every row is
decrypted again), so it is the tool that says what a VaultIntegrityError
was about.
"""

from __future__ import annotations

import sqlite3
import struct

from credd.vault import crypto, db, header, records, slots
from credd.vault.crypto import ENTRY, HISTORY, TAIL, AuthFailure, Keys, row_ad
from credd.vault.model import decode_history, decode_meta, decode_secret


def check_vault(conn: sqlite3.Connection, vid: bytes, keys: Keys, remembered: int,
                slotted: bool, has_records: bool) -> list[str]:
    """Every problem with the file (`remembered`: the rollback counter's generation;
    `slotted`: the file authenticates its key slots, format 5; `has_records`: it has agent
    records, format 6)."""
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
    problems += _header(conn, vid, keys, remembered, slotted)
    names: dict[bytes, str] = {}
    rows: list[list[object]] = [[], [], [], []]  # entry ids, tails, history ids, tails
    for row_id, rev, meta_blob, secret_blob in conn.execute(
            "SELECT id, rev, meta, secret FROM entries"):
        _add(rows[0], rows[1], row_id, rev, 0)
        label = f"row {row_id.hex() if isinstance(row_id, bytes) else row_id!r}"
        try:
            meta = decode_meta(crypto.unseal(keys.meta, meta_blob,
                                             row_ad(vid, row_id, "meta", rev)))
            if keys.row_id(meta.name) != row_id:
                raise AuthFailure()
            names[row_id] = label = f"entry {meta.name!r}"
        except Exception:  # tag, types, lengths: all damage
            problems.append(f"{label}: metadata failed authentication")
        try:
            decode_secret(crypto.unseal(keys.secret, secret_blob,
                                        row_ad(vid, row_id, "secret", rev)))
        except Exception:  # tag, types, lengths: all damage
            problems.append(f"{label}: secret failed authentication")
    for row_id, version, rev, blob in conn.execute(
            "SELECT entry, version, rev, blob FROM history"):
        _add(rows[2], rows[3], row_id, rev, version)
        label = names.get(row_id, f"row {row_id.hex() if isinstance(row_id, bytes) else row_id!r}")
        try:
            record = decode_history(crypto.unseal(
                keys.secret, blob, row_ad(vid, row_id, "history", rev, version)))
            if record.meta.version != version:
                raise AuthFailure()
        except Exception:  # tag, types, lengths: all damage
            problems.append(f"{label}: version {version} failed authentication")
    record_digest: int | None = 0
    if has_records:
        with db.bytes_text(conn):
            _records, record_digest, bad = records.load(conn, keys, vid)
        problems += bad
    digest: int | None
    try:  # malformed items were kept as they are: then the digest raises
        digest = (keys.digest(ENTRY, rows[0], rows[1])  # type: ignore[arg-type]
                  ^ keys.digest(HISTORY, rows[2], rows[3]))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        digest = None
    if digest is not None and record_digest is not None:
        digest ^= record_digest
    else:
        digest = None
    (stored,) = conn.execute("SELECT digest FROM vault WHERE id = 1").fetchone()
    if not isinstance(stored, bytes) or int.from_bytes(stored, "big") != digest:
        problems.append("the set of rows does not match the authenticated header: entries, "
                        "versions or agent records were replayed, removed or added outside credd")
    problems += _slots(conn, vid, keys, slotted)
    return problems


def _add(ids: list[object], tails: list[object], row_id: object, rev: object,
         version: object) -> None:
    """One digest item; a malformed one is kept as-is so the digest fails."""
    try:
        tails.append(TAIL.pack(rev, version))
    except struct.error:
        tails.append(None)
    ids.append(row_id)


def _header(conn: sqlite3.Connection, vid: bytes, keys: Keys, remembered: int,
            slotted: bool) -> list[str]:
    row = conn.execute("SELECT vault_id, generation, digest, mac, "
                       f"{'slots' if slotted else 'NULL'} FROM vault WHERE id = 1").fetchone()
    if row is None:
        return ["the vault header row is missing"]
    vault_id, gen, digest, mac, stored_slots = row
    problems = []
    if vault_id != vid:
        problems.append("the vault id changed")
    return problems + header.damage(keys, vid, gen, header.digest_int(digest), mac, remembered,
                                    header.slots_value(stored_slots))


def _slots(conn: sqlite3.Connection, vid: bytes, keys: Keys, slotted: bool) -> list[str]:
    """Every slot's header, and (format 5) its MAC and the set the header vouches for."""
    stored = conn.execute(f"SELECT {'slots' if slotted else 'NULL'} FROM vault").fetchone()
    authenticated = header.slots_value(stored[0]) if stored else None
    return slots.describe(conn, keys, vid, authenticated, slotted, None)[1]
