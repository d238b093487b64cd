"""Helpers for the backup tests: opening a copy as a vault of its own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from credd.vault import Vault
from tests.conftest import TEST_PASSPHRASE


def open_copy(path: Path, state_dir: str, tmp_path: Path) -> Vault:
    """A backup opened and unlocked as a vault: moved into a private directory of its own
    (the vault checks modes), with a rollback counter of its own (the agent's has moved on)."""
    home = tmp_path / f"opened-{len(os.listdir(tmp_path))}"
    home.mkdir(mode=0o700)
    shutil.copyfile(path, home / "vault.db")
    os.chmod(home / "vault.db", 0o600)
    vault = Vault.open(str(home / "vault.db"), state_dir=str(home / "state"))
    vault.unlock(TEST_PASSPHRASE)
    return vault
