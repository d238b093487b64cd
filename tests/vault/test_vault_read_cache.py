"""Repeated reads: sealed secret blobs kept per rev, and the per-unlock name memo."""

from __future__ import annotations

import unicodedata

import pytest

from credd.errors import BadRequest, NotFound
from credd.protocol import Field, Set
from credd.vault import reads
from credd.vault.vault import VaultIntegrityError
from tests.conftest import TEST_PASSPHRASE
from tests.vault.conftest import raw, reopen


@pytest.fixture
def secret_reads(vault):
    """How many times this thread's connection has read a secret column so far."""
    seen: list[str] = []
    vault.file.conn().set_trace_callback(seen.append)
    return lambda: sum("SELECT rev, secret FROM entries" in s for s in seen)


def test_a_repeated_get_reads_the_file_once_per_rev(vault, secret_reads):
    vault.put(Set(name="k", value="v1", fields=[Field(name="pw", value="f1", secret=True)]))
    assert [vault.get("k") for _ in range(3)] == ["v1"] * 3
    assert vault.get("k", "pw") == "f1" and vault.reveal("k").value == "v1"
    assert secret_reads() == 1
    vault.put(Set(name="k", value="v2", merge=True))
    assert vault.get("k") == "v2" and vault.get("k", "pw") == "f1"
    assert secret_reads() == 2


def test_every_write_path_is_read_back_right_after(vault):
    vault.put(Set(name="a", value="one"))
    assert vault.get("a") == "one"
    vault.put(Set(name="a", value="two"))
    assert vault.get("a") == "two"
    vault.restore("a", 1)
    assert vault.get("a") == "one"
    vault.move("a", "b")
    assert vault.get("b") == "one"
    with pytest.raises(NotFound):
        vault.get("a")
    vault.delete("b")
    with pytest.raises(NotFound):
        vault.get("b")
    vault.undelete("b")
    assert vault.get("b") == "one"
    vault.rekey(proof=TEST_PASSPHRASE)
    assert vault.get("b") == "one" and vault.reveal("b", 2).value == "two"
    vault.delete("b")
    vault.purge("b")
    vault.put(Set(name="b", value="three"))
    assert vault.get("b") == "three"
    assert vault.check() == []


def test_a_kept_blob_is_the_authentic_one_and_check_and_unlock_still_read_the_file(vault):
    vault.put(Set(name="k", value="real"))
    assert vault.get("k") == "real"
    (row_id, blob), = raw(vault.path).execute("SELECT id, secret FROM entries").fetchall()
    db = raw(vault.path)
    db.execute("UPDATE entries SET secret = ? WHERE id = ?",
               (blob[:20] + bytes([blob[20] ^ 1]) + blob[21:], row_id))
    db.close()
    assert vault.get("k") == "real"  # kept before the tampering: the authentic ciphertext
    problems = vault.check()
    assert len(problems) == 1 and ("'k'" in problems[0] or row_id.hex() in problems[0])
    vault.lock()  # drops what was kept: the file is read again
    vault.unlock(TEST_PASSPHRASE)
    with pytest.raises(VaultIntegrityError) as exc:
        vault.get("k")
    assert exc.value.name == "k"


def test_a_blob_that_fails_is_not_kept(vault):
    vault.put(Set(name="k", value="real"))
    (row_id, blob), = raw(vault.path).execute("SELECT id, secret FROM entries").fetchall()
    db = raw(vault.path)
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (blob[:-1] + b"\0", row_id))
    for _ in range(2):
        with pytest.raises(VaultIntegrityError):
            vault.get("k")
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (blob, row_id))
    db.close()
    assert vault.get("k") == "real"


def test_names_are_memoized_per_unlock_bounded_and_only_when_valid(vault, monkeypatch):
    monkeypatch.setattr(reads, "LOCATED_MAX", 8)
    vault.put(Set(name="café/x", value="v"))
    decomposed = unicodedata.normalize("NFD", "café/x")
    assert vault.get(decomposed) == "v" and vault.get(decomposed) == "v"
    assert vault.session.keys.located[decomposed][0] == "café/x"
    with pytest.raises(BadRequest):
        vault.get(" café/x")
    assert " café/x" not in vault.session.keys.located
    for i in range(20):
        with pytest.raises(NotFound):
            vault.get(f"missing-{i}")
        assert len(vault.session.keys.located) <= 8
    keys = vault.session.keys
    vault.lock()
    assert keys.located == {}
    again = reopen(vault)
    assert again.get(decomposed) == "v"
    again.close()
