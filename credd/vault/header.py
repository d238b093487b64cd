"""The vault header: the one row that authenticates the generation and the set digest,
and the rollback counter that remembers the newest generation outside the file.

Unlock, `check()`, writes and sealing all read or write the header; this is the one
place that says what its MAC covers and what makes it damaged.
"""

from __future__ import annotations

import hmac
import os
import sqlite3

from credd.vault import counter
from credd.vault.crypto import Keys, ad


def header_bytes(vault_id: bytes, generation: int, digest: int,
                 slots: bytes | None = None) -> bytes:
    """What the header MAC covers (a digest that failed to parse is -1: no valid MAC), and
    the key slots' digest once the file has one (format 5, after its first unlock: slots.py).
    A file that lost its slots digest is checked without it, against a MAC made with it."""
    fields = (vault_id, generation, digest.to_bytes(32, "big") if digest >= 0 else b"")
    return ad(b"credd-vault-header", *fields, *(() if slots is None else (b"slots", slots)))


def header_mac(keys: Keys, vault_id: bytes, generation: int, digest: int,
               slots: bytes | None = None) -> bytes:
    return keys.header_mac(header_bytes(vault_id, generation, digest, slots))


def write(conn: sqlite3.Connection, keys: Keys, vault_id: bytes, generation: int, digest: int,
          slots: bytes | None) -> None:
    """The header a write or a seal leaves: generation, digest, the slots' digest (once the
    file has one) and the MAC over them, in the open transaction."""
    mac = header_mac(keys, vault_id, generation, digest, slots)
    values = (generation, digest.to_bytes(32, "big"), mac)
    if slots is None:
        conn.execute("UPDATE vault SET generation = ?, digest = ?, mac = ? WHERE id = 1", values)
    else:
        conn.execute("UPDATE vault SET generation = ?, digest = ?, mac = ?, slots = ? "
                     "WHERE id = 1", (*values, slots))


def slots_value(stored: object) -> bytes | None:
    """The stored slots digest: None before the first unlock of a format-5 file; anything
    else that is not bytes is kept as it is wrong (it then fails the MAC)."""
    return None if stored is None else stored if isinstance(stored, bytes) else b"?"


def digest_int(stored: object) -> int:
    """The stored digest as an integer; -1 for anything that is not 32 bytes."""
    return int.from_bytes(stored, "big") if isinstance(stored, bytes) and len(stored) == 32 \
        else -1


def damage(keys: Keys, vault_id: bytes, generation: int, digest: int, mac: object,
           remembered: int, slots: bytes | None = None) -> list[str]:
    """What is wrong with the header: its MAC, or a generation older than remembered."""
    problems = []
    if not (isinstance(mac, bytes) and hmac.compare_digest(
            mac, header_mac(keys, vault_id, generation, digest, slots))):
        problems.append("the vault header failed authentication")
    if remembered > generation:
        problems.append(f"the vault file is older than one credd has seen (generation "
                        f"{generation} < {remembered}): it was rolled back to an earlier copy")
    return problems


class Rollback:
    """The newest generation seen for one vault, kept in the state directory (counter.py)."""

    __slots__ = ("path",)

    def __init__(self, state_dir: str | None, vault_id: bytes) -> None:
        self.path = (os.path.join(state_dir, f"vault-{vault_id.hex()}.generation")
                     if state_dir else None)

    def remembered(self) -> int:
        return counter.remembered(self.path)

    def remember(self, generation: int) -> None:
        counter.remember(self.path, generation)
