"""The vault header: the one row that authenticates the generation and the set digest,
and the rollback counter that remembers the newest generation outside the file.

Unlock, `check()`, writes and sealing all read or write the header; this is the one
place that says what its MAC covers and what makes it damaged.
"""

from __future__ import annotations

import hmac
import os

from credd.vault import counter
from credd.vault.crypto import Keys, ad


def header_bytes(vault_id: bytes, generation: int, digest: int) -> bytes:
    """What the header MAC covers (a digest that failed to parse is -1: no valid MAC)."""
    return ad(b"credd-vault-header", vault_id, generation,
              digest.to_bytes(32, "big") if digest >= 0 else b"")


def header_mac(keys: Keys, vault_id: bytes, generation: int, digest: int) -> bytes:
    return keys.header_mac(header_bytes(vault_id, generation, digest))


def digest_int(stored: object) -> int:
    """The stored digest as an integer; -1 for anything that is not 32 bytes."""
    return int.from_bytes(stored, "big") if isinstance(stored, bytes) and len(stored) == 32 \
        else -1


def damage(keys: Keys, vault_id: bytes, generation: int, digest: int, mac: object,
           remembered: int) -> list[str]:
    """What is wrong with the header: its MAC, or a generation older than remembered."""
    problems = []
    if not (isinstance(mac, bytes) and hmac.compare_digest(
            mac, header_mac(keys, vault_id, generation, digest))):
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
