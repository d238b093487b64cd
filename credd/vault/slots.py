"""The key slots of an open vault: trying them at unlock, proving a secret, adding and
removing slots, changing the passphrase, and what the slots table says (`describe`).
(keyslots.py is the slot format and its crypto.)

Every slot of the kind being tried costs one full derivation, wrong or right, so a
wrong passphrase and a damaged slot look the same from outside (docs/vault.md, "Same
error, same work"). Changing the slots needs more than an unlocked vault: a proof, the
passphrase or the recovery key, checked the same way (`prove`), so that a program that
can only reach the agent cannot add a way back in.

Labels are authenticated (format 5): each slot row carries an HMAC, under the header key,
of its id, label, header and creation time, and the vault header's MAC covers a digest of
every slot's id and MAC (`vault.slots`). A renamed label fails its own MAC; a slot
removed, added or put back changes the digest. `used` (the last unlock with the slot, to
the hour) is outside both: an unlock must not have to rewrite the header.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from credd.errors import BadPassphrase, BadRequest, NotFound
from credd.protocol import SlotInfo
from credd.vault import crypto, keyslots
from credd.vault.crypto import AuthFailure, Keys
from credd.vault.db import VaultFile
from credd.vault.keyslots import KEY, PASSPHRASE, RECOVERY
from credd.vault.model import check_label
from credd.vault.session import Session, Slot, VaultIntegrityError
from credd.vault.writes import Txn

GENERIC = "wrong passphrase or damaged vault"
#: `used` is rewritten only when it is older than this: at most one write an hour per slot.
USED_STEP = 3600.0
_ROWS = "SELECT id, label, header, created, used, mac FROM slots ORDER BY id"


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


def prove(file: VaultFile, session: Session, proof: object, now: float) -> Slot:
    """The slot that `proof` (the passphrase or the recovery key, whichever it is) opens,
    with its KEK, if it wraps this session's DEK; BadPassphrase otherwise, after the same
    derivations (a wrong proof always pays the passphrase's Argon2id)."""
    if not isinstance(proof, str) or not proof:
        raise BadRequest("changing the key slots needs proof that you hold the vault's "
                         "secret: its passphrase or its recovery key")
    dek = session.require(file.path).dek
    tries = []
    with contextlib.suppress(BadRequest):
        tries.append((RECOVERY, keyslots.parse_recovery_key(proof)))
    tries.append((PASSPHRASE, keyslots.secret_bytes(PASSPHRASE, proof)))
    for kind, secret in tries:
        try:
            opened, kek, slot_id = open_slot(file, kind, secret)
        except BadPassphrase:
            continue
        same = hmac.compare_digest(bytes(opened), bytes(dek))
        crypto.wipe(opened)
        if same:
            return Slot(kind, slot_id, kek, now)
        crypto.wipe(kek)
    raise BadPassphrase(GENERIC)


# ---------------------------------------------------------------- authentication

def slot_mac(keys: Keys, vault_id: bytes, row: tuple[object, ...]) -> bytes | None:
    """The MAC a slot row (id, label, header, created, ...) should carry; None for a row
    too malformed to have one."""
    slot_id, label, raw, created = row[:4]
    if not (type(slot_id) is int and isinstance(label, str) and isinstance(raw, bytes)
            and (created is None or type(created) is int)):
        return None
    return keys.header_mac(crypto.ad(b"credd-slot", vault_id, slot_id, label, raw, created or 0))


def table_digest(macs: Iterable[tuple[int, bytes]]) -> bytes:
    """The digest the header covers: every slot's id and MAC, in id order."""
    return hashlib.sha256(b"".join(i.to_bytes(8, "big") + mac for i, mac in macs)).digest()


def seal_table(conn: sqlite3.Connection, keys: Keys, vault_id: bytes,
               fresh: Iterable[int] | None) -> bytes:
    """MAC the rows this write made (`fresh`; None: every row, when the table is first
    authenticated), check every other row's MAC, and return the table's digest for the
    header. A row changed outside credd is never blessed: the write is refused, unless it
    removes that row."""
    made = None if fresh is None else set(fresh)
    macs = []
    for row in conn.execute(_ROWS).fetchall():
        expected = slot_mac(keys, vault_id, row)
        if made is None or row[0] in made:
            if expected is None:
                raise BadRequest(f"key slot {row[0]!r} is malformed")
            conn.execute("UPDATE slots SET mac = ? WHERE id = ?", (expected, row[0]))
        elif expected is None or not _same(row[5], expected):
            raise VaultIntegrityError(
                f"key slot {row[1]!r} was changed outside credd (its label, kind or "
                f"parameters): remove it first (`credd slots rm`), or run `credd rekey`")
        macs.append((row[0], expected))
    return table_digest(macs)


def reseal(txn: Txn, fresh: Iterable[int]) -> None:
    """After a slot write in `txn`: the new table digest goes into the header with it."""
    if txn.slotted:
        txn.slots = seal_table(txn.conn, txn.keys, txn.vault_id,
                               None if txn.slots is None else fresh)


def _same(stored: object, expected: bytes) -> bool:
    return isinstance(stored, bytes) and hmac.compare_digest(stored, expected)


# ---------------------------------------------------------------- changes

def insert_slot(conn: sqlite3.Connection, label: str, header: keyslots.SlotHeader,
                kek: bytearray, dek: bytearray, created: int | None) -> None:
    """A new slot row (`created` None: a file before format 5, which has no such column)."""
    raw = header.pack()
    row = (header.slot_id, label, raw, keyslots.wrap(kek, dek, raw))
    if created is None:
        conn.execute("INSERT INTO slots (id, label, header, wrapped) VALUES (?, ?, ?, ?)", row)
    else:
        conn.execute("INSERT INTO slots (id, label, header, wrapped, created) "
                     "VALUES (?, ?, ?, ?, ?)", (*row, created))


def _by_label(conn: sqlite3.Connection, label: str) -> tuple[int, str | None] | None:
    row = conn.execute("SELECT id, header FROM slots WHERE label = ?", (label,)).fetchone()
    return None if row is None else (row[0], keyslots.kind_of(row[1]))


def key_slot_args(key: object, label: object) -> tuple[bytes, str]:
    """A key slot's key and label, checked before anything costly (a proof) is tried."""
    return keyslots.secret_bytes(KEY, key), check_label("slot label", label)  # type: ignore[arg-type]


def add_key_slot(txn: Txn, secret: bytes, label: str) -> None:
    """Add (or replace) a raw-key slot, in a write transaction (`key_slot_args` checked
    the key and the label)."""
    existing = _by_label(txn.conn, label)
    if existing and existing[1] != KEY:
        raise BadRequest(f"slot {label!r} is a {existing[1]} slot, not a key slot")
    if existing:
        txn.conn.execute("DELETE FROM slots WHERE id = ?", (existing[0],))
    (top,) = txn.conn.execute("SELECT coalesce(max(id), 0) FROM slots").fetchone()
    header = keyslots.new_header(txn.vault_id, top + 1, KEY)
    kek = keyslots.derive_kek(header, secret)
    insert_slot(txn.conn, label, header, kek, txn.keys.dek,
                int(txn.now) if txn.slotted else None)
    crypto.wipe(kek)
    reseal(txn, [header.slot_id])
    txn.scrub = existing is not None


def remove_slot(txn: Txn, label: str) -> None:
    """Remove a key slot or the recovery slot; never a passphrase slot (`credd passwd`
    changes it; the vault keeps one)."""
    existing = _by_label(txn.conn, label)
    if existing is None:
        raise NotFound(f"no key slot labelled {label!r}")
    if existing[1] == PASSPHRASE:
        raise BadRequest(f"slot {label!r} is the passphrase: change it with `credd passwd`")
    txn.conn.execute("DELETE FROM slots WHERE id = ?", (existing[0],))
    reseal(txn, ())
    txn.scrub = True


def change_passphrase(file: VaultFile, session: Session, old: str, new: str, now: float,
                      writing: Callable[[], AbstractContextManager[Txn]]) -> None:
    """Rewrap the DEK under a new passphrase in one transaction; the old blob is scrubbed.
    `old` is a proof (the passphrase, or the recovery key); the new KEK is derived outside
    any lock."""
    new_secret = keyslots.secret_bytes(PASSPHRASE, new)
    proven = prove(file, session, old, now)
    slot_id = _passphrase_slot(file, session, proven)
    crypto.wipe(proven.kek)
    (raw,) = file.conn().execute("SELECT header FROM slots WHERE id = ?", (slot_id,)).fetchone()
    kdf = keyslots.candidate(raw, PASSPHRASE).kdf  # type: ignore[union-attr]
    header = keyslots.new_header(file.vault_id, slot_id, PASSPHRASE, kdf)
    kek = keyslots.derive_kek(header, new_secret)
    with writing() as txn:
        packed = header.pack()
        txn.conn.execute("UPDATE slots SET header = ?, wrapped = ? WHERE id = ?",
                         (packed, keyslots.wrap(kek, txn.keys.dek, packed), slot_id))
        reseal(txn, [slot_id])
        txn.scrub = True
    if (session.slot.kind, session.slot.id) == (PASSPHRASE, slot_id):
        session.replace_kek(kek)
    else:
        crypto.wipe(kek)


def _passphrase_slot(file: VaultFile, session: Session, proven: Slot) -> int:
    """The passphrase slot a proof lets `passwd` rewrap: the one it opened, else the one
    this session was unlocked with, else the first."""
    for slot in (proven, session.slot):
        if slot.kind == PASSPHRASE:
            return slot.id
    for slot_id, raw in file.conn().execute("SELECT id, header FROM slots ORDER BY id"):
        if keyslots.kind_of(raw) == PASSPHRASE:
            return int(slot_id)
    raise NotFound("the vault has no passphrase slot")


def note_used(file: VaultFile, slot_id: int, now: float) -> None:
    """Remember that the slot unlocked the vault, to the hour: one small write an hour at
    most, outside the header (best effort: a full disk or a busy file skips it)."""
    if not file.slotted or file.changed:
        return
    conn = file.conn()
    row = conn.execute("SELECT used FROM slots WHERE id = ?", (slot_id,)).fetchone()
    if row is None or (type(row[0]) is int and 0 <= now - row[0] < USED_STEP):
        return
    with contextlib.suppress(sqlite3.Error):
        conn.execute("UPDATE slots SET used = ? WHERE id = ?", (int(now), slot_id))


# ---------------------------------------------------------------- what the table says

def describe(conn: sqlite3.Connection, keys: Keys, vault_id: bytes, slots: bytes | None,
             slotted: bool, opened: Slot | None) -> tuple[list[SlotInfo], list[str]]:
    """Every slot as `credd slots` shows it (never key material), and what is wrong with
    the table. `slots`: the digest the header authenticated (None: a table not yet
    authenticated, before format 5 or before the first unlock after it; then only the
    headers are checked); `opened`: this unlock's slot, last used now, whatever the file
    says."""
    rows = conn.execute(_ROWS if slotted else
                        "SELECT id, label, header, NULL, NULL, NULL FROM slots ORDER BY id"
                        ).fetchall()
    infos = [_info(row, keys, vault_id, slots, opened) for row in rows]
    problems = [f"key slot {i.label!r}: {i.problem}" for i in infos if i.problem]
    if slots is not None and (not all(isinstance(row[5], bytes) for row in rows) or table_digest(
            (row[0], row[5]) for row in rows) != slots):
        problems.append("the set of key slots was changed outside credd: a slot was removed, "
                        "added or put back from an older copy")
    return infos, problems


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """The slots by the kind their headers claim (for status lines: nothing verified)."""
    return dict(Counter(keyslots.kind_of(raw) or "unknown"
                        for (raw,) in conn.execute("SELECT header FROM slots ORDER BY id")))


def _info(row: tuple[object, ...], keys: Keys, vault_id: bytes, slots: bytes | None,
          opened: Slot | None) -> SlotInfo:
    slot_id, label, raw, created, used, mac = row
    kind = keyslots.kind_of(raw) if isinstance(raw, bytes) else None
    problem, kdf = "", None
    try:
        header = keyslots.candidate(raw, kind) if kind else None  # type: ignore[arg-type]
    except keyslots.SlotOutOfRange as exc:
        header, problem = None, str(exc)
    if header is not None and (header.vault_id, header.slot_id) == (vault_id, slot_id):
        kdf = header.kdf
    elif not problem:
        problem = "its header is damaged"
    if slots is not None and not problem:
        expected = slot_mac(keys, vault_id, row)
        if expected is None or not _same(mac, expected):
            problem = "changed outside credd (its label, kind or parameters)"
    if opened is not None and (slot_id, kind) == (opened.id, opened.kind):
        used = max(used if type(used) is int else 0, int(opened.at))
    return SlotInfo(label=str(label), kind=kind or "unknown",
                    kdf="argon2id" if kdf else "hkdf-sha256",
                    memory_kib=kdf.memory_kib if kdf else 0,
                    iterations=kdf.iterations if kdf else 0, lanes=kdf.lanes if kdf else 0,
                    created=float(created) if type(created) is int and created else None,
                    used=float(used) if type(used) is int and used else None,
                    problem=problem)
