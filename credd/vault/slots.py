"""The key slots of an open vault: trying them at unlock, adding and removing raw-key
slots, and changing the passphrase. (keyslots.py is the slot format and its crypto.)

Every slot of the kind being tried costs one full derivation, wrong or right, so a
wrong passphrase and a damaged slot look the same from outside (docs/vault.md, "Same
error, same work").
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from credd.errors import BadPassphrase, BadRequest, NotFound
from credd.vault import crypto, keyslots
from credd.vault.crypto import AuthFailure
from credd.vault.db import VaultFile
from credd.vault.keyslots import KEY, PASSPHRASE
from credd.vault.model import check_label
from credd.vault.session import Session, VaultIntegrityError
from credd.vault.writes import Txn

GENERIC = "wrong passphrase or damaged vault"


def _candidates(file: VaultFile, kind: str) -> list[tuple[int, bytes, bytes,
                                                          keyslots.SlotHeader]]:
    out = []
    for slot_id, raw, wrapped in file.conn().execute(
            "SELECT id, header, wrapped FROM slots ORDER BY id"):
        try:
            header = keyslots.candidate(raw, kind)
        except keyslots.SlotOutOfRange as exc:
            raise VaultIntegrityError(f"key slot {slot_id} of {file.path} is refused "
                                      f"without deriving: {exc}") from None
        if header is not None:
            out.append((slot_id, raw, wrapped, header))
    return out


def open_slot(file: VaultFile, kind: str, secret: bytes) -> tuple[bytearray, bytearray, int]:
    """(DEK, KEK, slot id) from the first slot of `kind` the secret opens; BadPassphrase."""
    for slot_id, raw, wrapped, header in _candidates(file, kind):
        kek = keyslots.derive_kek(header, secret)
        try:
            dek = keyslots.unwrap(kek, wrapped, raw)
        except AuthFailure:
            crypto.wipe(kek)
            continue
        if header.vault_id == file.vault_id and header.slot_id == slot_id:
            return dek, kek, slot_id
        crypto.wipe(dek)
        crypto.wipe(kek)
    raise BadPassphrase(GENERIC)


def insert_slot(conn: sqlite3.Connection, label: str, header: keyslots.SlotHeader,
                kek: bytearray, dek: bytearray) -> None:
    raw = header.pack()
    conn.execute("INSERT INTO slots (id, label, header, wrapped) VALUES (?, ?, ?, ?)",
                 (header.slot_id, label, raw, keyslots.wrap(kek, dek, raw)))


def _by_label(conn: sqlite3.Connection, label: str) -> tuple[int, str | None] | None:
    row = conn.execute("SELECT id, header FROM slots WHERE label = ?", (label,)).fetchone()
    return None if row is None else (row[0], keyslots.kind_of(row[1]))


def add_key_slot(txn: Txn, key: bytes, label: str) -> None:
    """Add (or replace) a raw-key slot, in a write transaction."""
    secret = keyslots.secret_bytes(KEY, key)
    label = check_label("slot label", label)
    existing = _by_label(txn.conn, label)
    if existing and existing[1] != KEY:
        raise BadRequest(f"slot {label!r} is a {existing[1]} slot, not a key slot")
    if existing:
        txn.conn.execute("DELETE FROM slots WHERE id = ?", (existing[0],))
    (top,) = txn.conn.execute("SELECT coalesce(max(id), 0) FROM slots").fetchone()
    header = keyslots.new_header(txn.vault_id, top + 1, KEY)
    kek = keyslots.derive_kek(header, secret)
    insert_slot(txn.conn, label, header, kek, txn.keys.dek)
    crypto.wipe(kek)
    txn.scrub = existing is not None


def remove_key_slot(txn: Txn, label: str) -> None:
    existing = _by_label(txn.conn, label)
    if existing is None or existing[1] != KEY:
        raise NotFound(f"no key slot labelled {label!r}")
    txn.conn.execute("DELETE FROM slots WHERE id = ?", (existing[0],))
    txn.scrub = True


def change_passphrase(file: VaultFile, session: Session, old: str, new: str,
                      writing: Callable[[], AbstractContextManager[Txn]]) -> None:
    """Rewrap the DEK under a new passphrase in one transaction; the old blob is scrubbed.
    The new KEK is derived outside any lock."""
    new_secret = keyslots.secret_bytes(PASSPHRASE, new)
    session.require(file.path)
    dek, old_kek, slot_id = open_slot(file, PASSPHRASE, keyslots.secret_bytes(PASSPHRASE, old))
    crypto.wipe(old_kek)
    if not hmac.compare_digest(bytes(dek), bytes(session.require(file.path).dek)):
        raise BadPassphrase(GENERIC)
    (raw,) = file.conn().execute("SELECT header FROM slots WHERE id = ?", (slot_id,)).fetchone()
    kdf = keyslots.candidate(raw, PASSPHRASE).kdf  # type: ignore[union-attr]
    header = keyslots.new_header(file.vault_id, slot_id, PASSPHRASE, kdf)
    kek = keyslots.derive_kek(header, new_secret)
    with writing() as txn:
        packed = header.pack()
        txn.conn.execute("UPDATE slots SET header = ?, wrapped = ? WHERE id = ?",
                         (packed, keyslots.wrap(kek, dek, packed), slot_id))
        txn.scrub = True
    crypto.wipe(dek)
    if (session.slot.kind, session.slot.id) == (PASSPHRASE, slot_id):
        session.replace_kek(kek)
    else:
        crypto.wipe(kek)
