"""credd's encrypted embedded store: no sockets, no asyncio (see docs/vault.md)."""

from credd.store import SecretEntry
from credd.vault.keyslots import KdfParams
from credd.vault.model import canonical_name
from credd.vault.vault import HISTORY_KEEP, Vault, VaultIntegrityError

__all__ = ["HISTORY_KEEP", "KdfParams", "SecretEntry", "Vault", "VaultIntegrityError",
           "canonical_name"]
