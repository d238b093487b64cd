"""Two rows with the same revision, their secret columns swapped in the file: only the row
id bound into each column's associated data can tell them apart (the revision, the column
and the vault id are equal), so both reads must fail.

Every other swap test swaps rows written at different revisions, which the revision in
the associated data already catches. A rekey rewrites every row in one transaction, so
afterwards all rows share one revision. Public Vault API and raw SQL on the file only.
"""

from __future__ import annotations

import pytest

from credd.errors import IntegrityError
from credd.protocol import Set
from credd.vault import Vault
from tests.conftest import TEST_PASSPHRASE
from tests.vault.conftest import raw


def test_secret_columns_swapped_between_rows_of_one_rev_fail_both(vault: Vault):
    vault.put(Set(name="one", value="first-secret"))
    vault.put(Set(name="two", value="second-secret"))
    vault.rekey(proof=TEST_PASSPHRASE)
    path, state_dir = vault.path, vault.state_dir
    vault.close()

    db = raw(path)
    (a, rev_a, secret_a), (b, rev_b, secret_b) = db.execute(
        "SELECT id, rev, secret FROM entries ORDER BY id").fetchall()
    assert rev_a == rev_b, "the rekey left the rows at different revisions: nothing to test"
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (secret_b, a))
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (secret_a, b))
    db.close()

    again = Vault.open(path, state_dir=state_dir)
    try:
        again.unlock(TEST_PASSPHRASE)
        for name in ("one", "two"):
            with pytest.raises(IntegrityError, match="failed authentication"):
                again.get(name)
    finally:
        again.close()
