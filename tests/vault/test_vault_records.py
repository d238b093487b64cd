"""Agent records (credd/vault/records.py): sealed, out of the entries, and loud when the
file is tampered with: a record swapped, replayed, removed, added, or rolled back."""

from __future__ import annotations

import glob
import shutil

import pytest

from credd.errors import BadRequest, IntegrityError
from credd.protocol import Set
from credd.vault import Vault, VaultIntegrityError, migrations
from tests.conftest import TEST_PASSPHRASE
from tests.vault.conftest import KDF, file_bytes, raw, reopen

REVOKED = b'{"id":"g_aaaaaaaaaa","revoked":1700000000}'


def _rows(path: str) -> list[tuple[bytes, int, bytes]]:
    db = raw(path)
    rows = db.execute("SELECT id, rev, blob FROM records ORDER BY rowid").fetchall()
    db.close()
    return rows


def _refuses(vault: Vault) -> str:
    """What the reopened vault says: every data operation refuses, records included."""
    again = reopen(vault)
    try:
        with pytest.raises(IntegrityError):
            again.records("grant")
        with pytest.raises(IntegrityError):
            again.list()
        return " ".join(again.check())
    finally:
        again.close()


class TestRecords:
    def test_roundtrip_by_kind_never_as_entries(self, vault):
        vault.put(Set(name="a", value="1"))
        vault.put_record("grant", "g_aaaaaaaaaa", b"one")
        vault.put_record("grant", "g_bbbbbbbbbb", b"two")
        vault.put_record("session", "g_aaaaaaaaaa", b"other kind")
        vault.put_record("grant", "g_aaaaaaaaaa", b"one, changed")
        again = reopen(vault)
        assert again.records("grant") == {"g_aaaaaaaaaa": b"one, changed",
                                          "g_bbbbbbbbbb": b"two"}
        assert again.records("session") == {"g_aaaaaaaaaa": b"other kind"}
        assert [e.name for e in again.list()] == ["a"] and again.entry_count == 1
        assert again.check() == []
        again.delete_record("grant", "g_bbbbbbbbbb")
        again.delete_record("grant", "g_absent0000")  # nothing to do
        assert reopen(again).records("grant") == {"g_aaaaaaaaaa": b"one, changed"}

    def test_nothing_readable_in_the_file(self, vault):
        vault.put_record("grant", "g_visible000", REVOKED)
        vault.close()
        data = file_bytes(vault.path)
        for needle in (b"g_visible000", b"revoked", b"grant"):
            assert needle not in data and needle.decode().encode("utf-16-le") not in data

    def test_a_deleted_record_leaves_the_file(self, vault):
        vault.put_record("grant", "g_aaaaaaaaaa", REVOKED)
        ((_, _, blob),) = _rows(vault.path)
        vault.delete_record("grant", "g_aaaaaaaaaa")
        assert blob[12:44] not in file_bytes(vault.path)

    @pytest.mark.parametrize("kind, record_id, data", [
        ("Grant", "x", b""), ("grant", "", b""), ("grant", "a\x00b", b""),
        ("grant", "x" * 129, b""), ("grant", "x", "text"), ("grant", "x", b"x" * 300_000)])
    def test_refused(self, vault, kind, record_id, data):
        with pytest.raises(BadRequest):
            vault.put_record(kind, record_id, data)

    def test_rekey_keeps_them(self, vault):
        vault.put_record("grant", "g_aaaaaaaaaa", b"kept")
        before = _rows(vault.path)
        vault.rekey(proof=TEST_PASSPHRASE)
        after = _rows(vault.path)
        assert before[0][0] != after[0][0]  # a new row id under the new index key
        again = reopen(vault)
        assert again.records("grant") == {"g_aaaaaaaaaa": b"kept"} and again.check() == []


class TestTamper:
    def test_two_records_swapped(self, vault):
        vault.put_record("grant", "g_aaaaaaaaaa", b"active")
        vault.put_record("grant", "g_bbbbbbbbbb", REVOKED)
        # both rows now carry the same rev: only the row id tells them apart
        vault.rekey(proof=TEST_PASSPHRASE)
        (a, rev_a, blob_a), (b, rev_b, blob_b) = _rows(vault.path)
        assert rev_a == rev_b
        vault.close()
        db = raw(vault.path)
        db.execute("UPDATE records SET blob = ? WHERE id = ?", (blob_b, a))
        db.execute("UPDATE records SET blob = ? WHERE id = ?", (blob_a, b))
        db.close()
        assert "agent record" in _refuses(vault)

    @pytest.mark.parametrize("put_back, said", [
        ("rev = ?, blob = ?", "replayed, removed or added"),  # the whole row: the digest
        ("blob = ?", "agent record"),                         # the blob alone: the rev in its AD
    ])
    def test_the_row_before_a_revocation_put_back(self, vault, put_back, said):
        vault.put_record("grant", "g_aaaaaaaaaa", b"active")
        ((rid, rev, blob),) = _rows(vault.path)
        vault.put_record("grant", "g_aaaaaaaaaa", REVOKED)
        vault.close()
        db = raw(vault.path)
        db.execute(f"UPDATE records SET {put_back} WHERE id = ?",
                   (rev, blob, rid) if "rev" in put_back else (blob, rid))
        db.close()
        assert said in _refuses(vault)

    def test_a_record_removed(self, vault):
        vault.put_record("grant", "g_aaaaaaaaaa", REVOKED)
        vault.close()
        db = raw(vault.path)
        db.execute("DELETE FROM records")
        db.close()
        assert "replayed, removed or added" in _refuses(vault)

    def test_a_record_added_from_another_copy(self, vault, tmp_path):
        vault.put_record("grant", "g_aaaaaaaaaa", b"active")
        (row,) = _rows(vault.path)
        vault.delete_record("grant", "g_aaaaaaaaaa")
        vault.close()
        db = raw(vault.path)
        db.execute("INSERT INTO records VALUES (?, ?, ?)", row)
        db.close()
        assert "replayed, removed or added" in _refuses(vault)

    def test_the_file_rolled_back(self, vault, tmp_path):
        """A copy taken while the grant was active, restored after it was revoked."""
        vault.put_record("grant", "g_aaaaaaaaaa", b"active")
        vault.close()
        copy = str(tmp_path / "before-revoke.db")
        shutil.copy(vault.path, copy)
        vault = reopen(vault)
        vault.put_record("grant", "g_aaaaaaaaaa", REVOKED)
        vault.close()
        shutil.copy(copy, vault.path)
        again = Vault.open(vault.path, state_dir=vault.state_dir)
        again.unlock(TEST_PASSPHRASE)
        with pytest.raises(VaultIntegrityError, match="rolled back"):
            again.records("grant")
        again.close()


def test_a_format_5_vault_migrates_to_records(vault_path, state_dir):
    old, _ = Vault.create(vault_path, TEST_PASSPHRASE, kdf=KDF, state_dir=state_dir, _format=5)
    old.put(Set(name="db/main", value="dsn"))
    old.close()
    vault = Vault.open(vault_path, state_dir=state_dir)
    assert len(glob.glob(vault_path + ".format5-*.bak")) == 1
    vault.unlock(TEST_PASSPHRASE)
    assert vault.records("grant") == {} and vault.get("db/main") == "dsn"
    vault.put_record("grant", "g_aaaaaaaaaa", b"new")
    again = reopen(vault)
    assert again.records("grant") == {"g_aaaaaaaaaa": b"new"} and again.check() == []
    assert migrations.LATEST == 6
    again.close()
