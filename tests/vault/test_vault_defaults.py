"""The one test that pays for the shipped KDF defaults."""

from __future__ import annotations

import pytest

from credd.vault import KdfParams, Vault, keyslots
from tests.conftest import TEST_PASSPHRASE
from tests.vault.conftest import raw


@pytest.mark.slow
def test_shipped_defaults_are_at_least_the_floor_and_really_used(vault_path):
    defaults = KdfParams()
    for name, floor in keyslots.FLOOR.items():
        assert getattr(defaults, name) >= floor
    assert defaults.memory_kib >= 64 * 1024 and defaults.iterations >= 3 and defaults.lanes >= 4
    vault, _ = Vault.create(vault_path, TEST_PASSPHRASE)  # derives once with the defaults
    vault.close()
    db = raw(vault_path)
    (header,) = db.execute("SELECT header FROM slots WHERE label = 'passphrase'").fetchone()
    db.close()
    stored = keyslots.candidate(header, keyslots.PASSPHRASE).kdf
    assert stored == defaults
