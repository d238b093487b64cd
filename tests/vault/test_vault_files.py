"""What is on disk: modes, refusal of loose ones, and no readable names or values."""

from __future__ import annotations

import os
import stat

import pytest

from credd.errors import Exists, InsecurePath, NoVault
from credd.protocol import Field, Set
from credd.vault import Vault
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.vault.conftest import KDF, file_bytes


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_created_private_even_with_a_loose_umask(vault_path, state_dir):
    old = os.umask(0)
    try:
        vault, _ = Vault.create(vault_path, TEST_PASSPHRASE, kdf=KDF, state_dir=state_dir)
        vault.put(Set(name="a", value="1"))
    finally:
        os.umask(old)
    assert _mode(os.path.dirname(vault_path)) == 0o700
    for suffix in ("", "-wal", "-shm"):
        assert _mode(vault_path + suffix) == 0o600, suffix
    assert _mode(state_dir) == 0o700
    for name in os.listdir(state_dir):
        assert _mode(os.path.join(state_dir, name)) == 0o600
    vault.close()


@pytest.mark.parametrize("target,mode,fix", [
    ("file", 0o644, "chmod 600"), ("file", 0o640, "chmod 600"),
    ("dir", 0o755, "chmod 700"), ("wal", 0o604, "chmod 600"),
])
def test_loose_modes_are_refused_naming_the_fix(vault, target, mode, fix):
    vault.put(Set(name="a", value="1"))
    path = {"file": vault.path, "dir": os.path.dirname(vault.path),
            "wal": vault.path + "-wal"}[target]
    os.chmod(path, mode)
    with pytest.raises(InsecurePath) as exc:
        Vault.open(vault.path)
    assert path in exc.value.message and fix in exc.value.message


def test_missing_vault_and_double_create(vault_path):
    with pytest.raises(NoVault, match="credd init"):
        Vault.open(vault_path)
    vault, _ = Vault.create(vault_path, TEST_PASSPHRASE, kdf=KDF)
    with pytest.raises(Exists):
        Vault.create(vault_path, TEST_PASSPHRASE, kdf=KDF)
    vault.close()


def test_names_and_values_never_in_the_file_or_wal(vault):
    secrets = [SENTINEL, "db-password-" + SENTINEL, "notes-" + SENTINEL]
    plain = ["production/postgres-main", "service-acme-corp", "tag-critical-infra",
             "field-endpoint-url", "https://endpoint.example.internal"]
    vault.put(Set(name=plain[0], kind="connection_string", service=plain[1], tags=[plain[2]],
              value=secrets[0], notes=secrets[2],
              fields=[Field(name=plain[3], value=plain[4], secret=False),
                      Field(name="password", value=secrets[1])]))
    vault.put(Set(name=plain[0], merge=True, value=secrets[0] + "-v2"))  # history too
    vault.delete(plain[0])                                     # trash too
    assert os.path.getsize(vault.path + "-wal") > 0            # checked while the WAL is live
    data = file_bytes(vault.path)
    for text in secrets + plain:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert text.encode(encoding) not in data, text
    vault.close()
    data = file_bytes(vault.path)
    assert not any(t.encode() in data for t in secrets + plain)


def test_every_connection_has_the_durability_pragmas(vault):
    import threading

    conns = [vault.file.conn()]
    t = threading.Thread(target=lambda: conns.append(vault.file.conn()))
    t.start()
    t.join()
    assert conns[0] is not conns[1]
    for conn in conns:
        values = [conn.execute(f"PRAGMA {p}").fetchone()[0]
                  for p in ("journal_mode", "synchronous", "foreign_keys", "secure_delete",
                            "busy_timeout", "application_id")]
        assert values == ["wal", 2, 1, 1, 5000, 0x63726564]
