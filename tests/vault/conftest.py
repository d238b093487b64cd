"""Vault fixtures: a fresh vault per test (fast KDF), and raw-SQL tampering helpers."""

from __future__ import annotations

import os
import sqlite3

import pytest

from credd.vault import KdfParams, Vault
from tests.conftest import FAST_KDF, TEST_PASSPHRASE

KDF = KdfParams(memory_kib=FAST_KDF["kdf_memory_kib"], iterations=FAST_KDF["kdf_iterations"],
                lanes=FAST_KDF["kdf_lanes"])


@pytest.fixture
def vault_path(isolated_env) -> str:
    return isolated_env["CREDD_VAULT"]


@pytest.fixture
def state_dir(isolated_env) -> str:
    return isolated_env["CREDD_STATE_DIR"]


@pytest.fixture
def created(vault_path, state_dir):
    """(unlocked vault, recovery key); closed at teardown."""
    vault, recovery = Vault.create(vault_path, TEST_PASSPHRASE, kdf=KDF, state_dir=state_dir)
    yield vault, recovery
    vault.close()


@pytest.fixture
def vault(created) -> Vault:
    return created[0]


def reopen(vault: Vault, passphrase: str = TEST_PASSPHRASE) -> Vault:
    """Close `vault` and open the same file again, unlocked."""
    vault.close()
    again = Vault.open(vault.path, state_dir=vault.state_dir)
    again.unlock(passphrase)
    return again


def raw(path: str) -> sqlite3.Connection:
    """A plain SQLite connection for tampering with the file as an attacker would."""
    return sqlite3.connect(path, isolation_level=None)


def file_bytes(path: str) -> bytes:
    """The vault file plus its WAL, as they are on disk."""
    data = b""
    for suffix in ("", "-wal"):
        if os.path.exists(path + suffix):
            with open(path + suffix, "rb") as f:
                data += f.read()
    return data
