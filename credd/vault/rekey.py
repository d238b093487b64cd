"""`Vault.rekey()`: re-encrypt every entry and version under a fresh DEK, in one transaction.

Only the passphrase slot used to unlock can be rewrapped (its KEK is held
while unlocked). The recovery slot gets a new recovery key, and key slots
are dropped, so no secret that opened the old DEK opens the new one. That is
the point of a rekey after an old copy of the vault leaked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from credd.errors import IntegrityError
from credd.vault import crypto, db, keyslots
from credd.vault.cache import Cached
from credd.vault.crypto import ENTRY, HISTORY, TAIL, Keys, row_ad
from credd.vault.keyslots import RECOVERY
from credd.vault.model import encode

if TYPE_CHECKING:
    from credd.vault.vault import Vault

BATCH = 500  # rows between progress reports


class _Progress:
    def __init__(self, report: Callable[[int, int], None], total: int) -> None:
        self.report, self.total, self.done = report, total, 0
        report(0, total)

    def step(self) -> None:
        self.done += 1
        if self.done % BATCH == 0:
            self.report(self.done, self.total)


def rekey(vault: "Vault", report: Callable[[int, int], None]) -> str:
    """Returns the new recovery key. The caller holds the vault's lock."""

    old, new = vault._require(), Keys(bytearray(crypto.random_bytes(crypto.KEY_LEN)))
    conn = vault._conn()
    recovery_text, recovery_raw = keyslots.new_recovery_key()
    with db.transaction(conn):
        gen = conn.execute("SELECT generation FROM vault").fetchone()[0]
        if gen != vault._generation:
            raise IntegrityError(f"{vault.path} was changed by another process: "
                                 "lock and unlock again")
        gen += 1
        vault._drop_snapshot(conn)  # sealed under the old key
        rows = conn.execute("SELECT id, rev, secret FROM entries").fetchall()
        hist = conn.execute("SELECT hid, entry, version, rev, blob FROM history").fetchall()
        progress = _Progress(report, len(rows) + len(hist))
        new_ids, digest = _entries(vault, conn, old, new, gen, rows, progress)
        digest ^= _history(vault, conn, old, new, gen, hist, new_ids, progress)
        _rewrap_slots(vault, conn, new, recovery_raw)
        conn.execute("UPDATE vault SET generation = ?, digest = ?, mac = ? WHERE id = 1",
                     (gen, digest.to_bytes(32, "big"),
                      new.header_mac(vault._header_bytes(gen, digest))))
    db.checkpoint_truncate(conn)
    cache = {new_ids[row_id]: Cached(gen, c.name, c.deleted, c.record, c.wire)
             for row_id, c in vault._cache.items()}
    old.wipe()
    vault._keys, vault._cache, vault._generation, vault._digest = new, cache, gen, digest
    vault._sorted = None
    vault._snapshot_gen = None  # the transaction deleted it
    vault._verified = None  # every meta column is new: no snapshot until the next unlock
    vault._remember(gen)
    report(progress.total, progress.total)
    return recovery_text


def _entries(vault: "Vault", conn, old: Keys, new: Keys, gen: int, rows: list,
             progress: _Progress) -> tuple[dict[bytes, bytes], int]:
    """Rewrite every entry row under the new keys (new row ids too: the index key changed)."""
    vid, new_ids, ids = vault.vault_id, {}, []
    conn.execute("DELETE FROM entries")
    for row_id, rev, blob in rows:
        meta = vault._cache[row_id].meta
        plain = crypto.unseal(old.secret, blob, row_ad(vid, row_id, "secret", rev))
        new_id = new_ids[row_id] = new.row_id(meta.name)
        conn.execute("INSERT INTO entries VALUES (?, ?, ?, ?)", (
            new_id, gen, crypto.seal(new.meta, encode(meta), row_ad(vid, new_id, "meta", gen)),
            crypto.seal(new.secret, plain, row_ad(vid, new_id, "secret", gen))))
        ids.append(new_id)
        progress.step()
    return new_ids, new.digest(ENTRY, ids, [TAIL.pack(gen, 0)] * len(ids))


def _history(vault: "Vault", conn, old: Keys, new: Keys, gen: int, hist: list,
             new_ids: dict[bytes, bytes], progress: _Progress) -> int:
    vid, ids, tails = vault.vault_id, [], []
    for hid, row_id, version, rev, blob in hist:
        plain = crypto.unseal(old.secret, blob, row_ad(vid, row_id, "history", rev, version))
        new_id = new_ids[row_id]
        conn.execute("UPDATE history SET entry = ?, rev = ?, blob = ? WHERE hid = ?", (
            new_id, gen, crypto.seal(new.secret, plain,
                                     row_ad(vid, new_id, "history", gen, version)), hid))
        ids.append(new_id)
        tails.append(TAIL.pack(gen, version))
        progress.step()
    return new.digest(HISTORY, ids, tails)


def _rewrap_slots(vault: "Vault", conn, new: Keys, recovery_raw: bytes) -> None:
    """Keep the unlocking passphrase slot (rewrapped), a new recovery slot, nothing else."""
    _kind, slot_id = vault._unlocked_by  # type: ignore[misc]
    (raw,) = conn.execute("SELECT header FROM slots WHERE id = ?", (slot_id,)).fetchone()
    conn.execute("UPDATE slots SET wrapped = ? WHERE id = ?",
                 (keyslots.wrap(vault._kek, new.dek, raw), slot_id))  # type: ignore[arg-type]
    conn.execute("DELETE FROM slots WHERE id != ?", (slot_id,))
    header = keyslots.new_header(vault.vault_id, slot_id + 1, RECOVERY)
    kek = keyslots.derive_kek(header, recovery_raw)
    vault._insert_slot(conn, "recovery", header, kek, new.dek)
    crypto.wipe(kek)
