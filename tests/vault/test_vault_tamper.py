"""Tampering: every header byte, every blob column, swapped rows, replays, rollback."""

from __future__ import annotations

import os
import shutil
import struct
import time

import pytest

from credd.errors import BadPassphrase, IntegrityError
from credd.protocol import Set
from credd.vault import Vault, VaultIntegrityError, crypto
from tests.conftest import TEST_PASSPHRASE
from tests.vault.conftest import raw, reopen


def _flip(blob: bytes, i: int) -> bytes:
    return blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]


def _fresh(path: str, state_dir: str) -> Vault:
    return Vault.open(path, state_dir=state_dir)


@pytest.fixture
def derivations(monkeypatch) -> list:
    """Count Argon2id derivations (the real function still runs)."""
    calls: list = []
    real = crypto.argon2id

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(crypto, "argon2id", counting)
    return calls


def _refusal(vault: Vault, passphrase: str, derivations: list) -> tuple[type, int, float]:
    del derivations[:]
    start = time.perf_counter()
    with pytest.raises((BadPassphrase, VaultIntegrityError)) as exc:
        vault.unlock(passphrase)
    return exc.type, len(derivations), time.perf_counter() - start


def test_wrong_passphrase_and_every_flipped_slot_header_byte_are_refused(vault, derivations):
    vault.put(Set(name="a", value="1"))
    vault.close()
    path, state = vault.path, vault.state_dir
    locked = _fresh(path, state)
    assert _refusal(locked, "not the passphrase", derivations)[:2] == (BadPassphrase, 1)
    locked.close()
    db = raw(path)
    (header,) = db.execute("SELECT header FROM slots WHERE id = 1").fetchone()
    kdf_bytes = range(32, 44)  # memory, iterations, lanes: may fall outside the limits
    for i in range(len(header)):
        db.execute("UPDATE slots SET header = ? WHERE id = 1", (_flip(header, i),))
        v = _fresh(path, state)
        kind, derived, elapsed = _refusal(v, TEST_PASSPHRASE, derivations)
        v.close()
        if i in kdf_bytes and kind is VaultIntegrityError:
            assert derived == 0 and elapsed < 0.2, "out-of-range parameters: refuse, don't derive"
        else:
            assert (kind, derived) == (BadPassphrase, 1), f"byte {i}: not the same error and work"
    db.execute("UPDATE slots SET header = ? WHERE id = 1", (header,))
    db.close()
    v = _fresh(path, state)
    v.unlock(TEST_PASSPHRASE)
    assert v.get("a") == "1"
    v.close()


def test_wrapped_dek_flip_is_the_generic_error(vault):
    vault.close()
    db = raw(vault.path)
    (wrapped,) = db.execute("SELECT wrapped FROM slots WHERE id = 1").fetchone()
    for i in (0, 12, len(wrapped) - 1):
        db.execute("UPDATE slots SET wrapped = ? WHERE id = 1", (_flip(wrapped, i),))
        v = _fresh(vault.path, vault.state_dir)
        with pytest.raises(BadPassphrase, match="wrong passphrase or damaged vault"):
            v.unlock(TEST_PASSPHRASE)
        v.close()


def _rows(path: str) -> list[tuple]:
    db = raw(path)
    rows = db.execute("SELECT id, rev, meta, secret FROM entries ORDER BY rev").fetchall()
    db.close()
    return rows


@pytest.mark.parametrize("column", ["meta", "secret"])
def test_each_blob_column_flipped_names_the_entry(vault, column):
    vault.put(Set(name="target", value="t"))
    vault.put(Set(name="other", value="o"))
    vault.close()
    target_id = _rows(vault.path)[0][0]
    db = raw(vault.path)
    (blob,) = db.execute(f"SELECT {column} FROM entries WHERE id = ?", (target_id,)).fetchone()
    for i in (0, 20, len(blob) - 1):
        db.execute(f"UPDATE entries SET {column} = ? WHERE id = ?", (_flip(blob, i), target_id))
        v = _fresh(vault.path, vault.state_dir)
        v.unlock(TEST_PASSPHRASE)
        with pytest.raises(VaultIntegrityError) as exc:
            v.get("target")
        assert exc.value.name == "target" and exc.value.row == target_id.hex()
        assert v.get("other") == "o"
        if column == "meta":
            with pytest.raises(VaultIntegrityError):
                v.list()
        problems = v.check()
        assert len(problems) == 1 and (target_id.hex() in problems[0] or "'target'" in problems[0])
        v.close()
    db.close()


def test_two_rows_swapped_fail_both(vault):
    vault.put(Set(name="one", value="1"))
    vault.put(Set(name="two", value="2"))
    vault.close()
    (a, _ra, ma, sa), (b, _rb, mb, sb) = _rows(vault.path)
    db = raw(vault.path)
    db.execute("UPDATE entries SET meta = ?, secret = ? WHERE id = ?", (mb, sb, a))
    db.execute("UPDATE entries SET meta = ?, secret = ? WHERE id = ?", (ma, sa, b))
    db.close()
    v = _fresh(vault.path, vault.state_dir)
    v.unlock(TEST_PASSPHRASE)
    for name in ("one", "two"):
        with pytest.raises(VaultIntegrityError):
            v.get(name)
    assert len([p for p in v.check() if "metadata" in p]) == 2
    v.close()


def test_swapped_secret_columns_fail_both(vault):
    vault.put(Set(name="one", value="1"))
    vault.put(Set(name="two", value="2"))
    vault.close()
    (a, _, _, sa), (b, _, _, sb) = _rows(vault.path)
    db = raw(vault.path)
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (sb, a))
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (sa, b))
    db.close()
    v = _fresh(vault.path, vault.state_dir)
    v.unlock(TEST_PASSPHRASE)
    for name in ("one", "two"):
        with pytest.raises(VaultIntegrityError, match="failed authentication"):
            v.get(name)
    v.close()


def test_replayed_older_secret_blob_is_detected(vault):
    vault.put(Set(name="k", value="old"))
    (row_id, _, _, old_secret), = _rows(vault.path)
    vault.put(Set(name="k", value="new"))
    db = raw(vault.path)
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (old_secret, row_id))
    db.close()
    with pytest.raises(VaultIntegrityError):  # also while the vault is open
        vault.get("k")
    again = reopen(vault)
    with pytest.raises(VaultIntegrityError):
        again.get("k")
    again.close()


def test_replayed_whole_older_row_breaks_the_digest(vault):
    vault.put(Set(name="k", value="old"))
    vault.put(Set(name="z", value="z"))
    old_row = next(r for r in _rows(vault.path) if r[1] == 1)
    vault.put(Set(name="k", value="new"))
    vault.close()
    db = raw(vault.path)
    db.execute("UPDATE entries SET rev = ?, meta = ?, secret = ? WHERE id = ?",
               (old_row[1], old_row[2], old_row[3], old_row[0]))
    db.close()
    v = _fresh(vault.path, vault.state_dir)
    v.unlock(TEST_PASSPHRASE)
    for call in (v.list, lambda: v.get("k"), lambda: v.get("z"),
                 lambda: v.put(Set(name="n", value=""))):
        with pytest.raises(VaultIntegrityError, match="replayed, removed or added"):
            call()
    assert any("replayed" in p for p in v.check())
    v.close()


def test_removed_row_and_removed_history_break_the_digest(vault):
    vault.put(Set(name="a", value="1"))
    vault.put(Set(name="a", value="2"))
    vault.put(Set(name="b", value="1"))
    vault.close()
    for statement in ("DELETE FROM history", "DELETE FROM entries WHERE rev = 3"):
        shutil.copy(vault.path, vault.path + ".orig")
        db = raw(vault.path)
        db.execute(statement)
        db.close()
        v = _fresh(vault.path, vault.state_dir)
        v.unlock(TEST_PASSPHRASE)
        with pytest.raises(VaultIntegrityError):
            v.get("a")
        v.close()
        shutil.copy(vault.path + ".orig", vault.path)


def test_flipped_history_blob_names_the_entry(vault):
    vault.put(Set(name="h", value="v1"))
    vault.put(Set(name="h", value="v2"))
    db = raw(vault.path)
    (blob,) = db.execute("SELECT blob FROM history").fetchone()
    db.execute("UPDATE history SET blob = ?", (_flip(blob, 30),))
    db.close()
    with pytest.raises(VaultIntegrityError) as exc:
        vault.reveal("h", 1)
    assert exc.value.name == "h"
    assert vault.get("h") == "v2"
    assert vault.check() == ["entry 'h': version 1 failed authentication"]


def test_vault_header_tamper_is_detected(vault):
    vault.put(Set(name="a", value="1"))
    vault.close()
    db = raw(vault.path)
    gen, digest, mac = db.execute("SELECT generation, digest, mac FROM vault").fetchone()
    tampered = (("generation", gen + 5), ("digest", _flip(digest, 3)), ("mac", _flip(mac, 0)))
    for column, bad in tampered:
        db.execute(f"UPDATE vault SET {column} = ?", (bad,))
        v = _fresh(vault.path, vault.state_dir)
        v.unlock(TEST_PASSPHRASE)
        with pytest.raises(VaultIntegrityError):
            v.get("a")
        assert v.check()
        v.close()
        db.execute("UPDATE vault SET generation = ?, digest = ?, mac = ?", (gen, digest, mac))
    db.close()


def test_whole_file_rollback_is_detected_with_the_state_dir(vault, tmp_path):
    vault.put(Set(name="a", value="1"))
    vault.close()
    shutil.copy(vault.path, tmp_path / "old.db")
    v = reopen(vault)
    v.put(Set(name="a", value="2"))
    v.close()
    shutil.copy(tmp_path / "old.db", vault.path)
    v = _fresh(vault.path, vault.state_dir)
    v.unlock(TEST_PASSPHRASE)
    with pytest.raises(IntegrityError, match="rolled back"):
        v.get("a")
    assert any("rolled back" in p for p in v.check())
    v.close()
    # Without the remembered generation an old but intact copy opens: the documented limit.
    v = Vault.open(vault.path, state_dir=None)
    v.unlock(TEST_PASSPHRASE)
    assert v.get("a") == "1"
    v.close()


def test_a_clean_vault_checks_clean(vault):
    for i in range(30):
        vault.put(Set(name=f"e{i % 7}", value=str(i)))
    vault.delete("e1")
    assert vault.check() == []


@pytest.mark.parametrize("column", ["meta", "secret"])
def test_a_damaged_entry_can_be_purged_by_name(vault, column):
    vault.put(Set(name="broken", value="b"))
    vault.put(Set(name="broken", value="b2"))
    vault.put(Set(name="fine", value="f"))
    broken_id = _rows(vault.path)[0][0]  # ordered by rev: "broken" (2), "fine" (3)
    db = raw(vault.path)
    (blob,) = db.execute(f"SELECT {column} FROM entries WHERE id = ?", (broken_id,)).fetchone()
    db.execute(f"UPDATE entries SET {column} = ? WHERE id = ?", (_flip(blob, 15), broken_id))
    db.close()
    v = reopen(vault)
    with pytest.raises(VaultIntegrityError):
        v.get("broken")
    v.purge("broken")
    assert [e.name for e in v.list()] == ["fine"] and v.check() == []
    v.close()


@pytest.mark.parametrize("m,t,p", [(8 * 1024, 3, 4), (19456, 1, 1), (2 ** 31, 3, 4),
                                   (65536, 1000, 4), (65536, 3, 255)])
def test_weakened_or_absurd_stored_kdf_is_refused_fast(vault, derivations, m, t, p):
    vault.close()
    db = raw(vault.path)
    (header,) = db.execute("SELECT header FROM slots WHERE id = 1").fetchone()
    forged = header[:32] + struct.pack(">III", m, t, p) + header[44:]
    db.execute("UPDATE slots SET header = ? WHERE id = 1", (forged,))
    db.close()
    v = _fresh(vault.path, vault.state_dir)
    kind, derived, elapsed = _refusal(v, TEST_PASSPHRASE, derivations)
    assert (kind, derived) == (VaultIntegrityError, 0) and elapsed < 0.2
    v.close()


@pytest.fixture
def small_chunks(monkeypatch):
    """Unlock in chunks of 3 rows, so a few entries exercise the bulk path and its fallback."""
    from credd.vault import load
    monkeypatch.setattr(load, "CHUNK", 3)


def _ten(vault: Vault) -> list[bytes]:
    for i in range(10):
        vault.put(Set(name=f"bulk/{i}", value=f"v{i}", tags=["t"]))
    return [row[0] for row in _rows(vault.path)]  # by rev: bulk/0 … bulk/9


def test_bulk_unlock_names_a_bad_row_in_the_middle_and_loads_the_rest(vault, small_chunks):
    ids = _ten(vault)
    vault.close()
    db = raw(vault.path)
    (blob,) = db.execute("SELECT meta FROM entries WHERE id = ?", (ids[4],)).fetchone()
    db.execute("UPDATE entries SET meta = ? WHERE id = ?", (_flip(blob, 20), ids[4]))
    db.close()
    v = _fresh(vault.path, vault.state_dir)
    v.unlock(TEST_PASSPHRASE)
    assert v.entry_count == 9
    assert [v.get(f"bulk/{i}") for i in range(10) if i != 4] == [f"v{i}" for i in range(10)
                                                                 if i != 4]
    with pytest.raises(VaultIntegrityError) as exc:
        v.get("bulk/4")
    assert exc.value.name == "bulk/4"
    with pytest.raises(VaultIntegrityError):
        v.list()
    assert len(v.check()) == 1
    v.close()


@pytest.mark.parametrize("rev", [-1, "x7", 2.5, 2 ** 63 - 1])
def test_bulk_unlock_with_a_malformed_rev_refuses_data_but_reads_every_row(vault, small_chunks,
                                                                            rev):
    ids = _ten(vault)
    vault.close()
    db = raw(vault.path)
    db.execute("UPDATE entries SET rev = ? WHERE id = ?", (rev, ids[1]))
    db.close()
    v = _fresh(vault.path, vault.state_dir)
    v.unlock(TEST_PASSPHRASE)
    assert v.entry_count == 9  # every other row, in every chunk, still decrypted
    with pytest.raises(VaultIntegrityError, match="replayed, removed or added"):
        v.get("bulk/9")
    assert any("does not match" in p for p in v.check())
    v.close()


def test_bulk_and_row_by_row_unlock_agree(vault, monkeypatch):
    from credd.vault import load
    _ten(vault)
    vault.delete("bulk/3")
    expected = [(e.name, e.version, e.tags) for e in vault.list()]
    for chunk in (1, 3, 4096):
        monkeypatch.setattr(load, "CHUNK", chunk)
        vault.lock()
        db = raw(vault.path)
        db.execute("DELETE FROM manifest")  # this test is about the row-by-row unlock
        db.close()
        vault.unlock(TEST_PASSPHRASE)
        assert not vault.from_snapshot
        assert [(e.name, e.version, e.tags) for e in vault.list()] == expected
        assert vault.entry_count == 9 and [e.name for e in vault.trash()] == ["bulk/3"]


def test_rollback_counter_record_is_in_place_checked_and_read_in_both_formats(vault):
    from credd.vault import counter, header
    vault.put(Set(name="a", value="1"))
    path = header.Rollback(vault.state_dir, vault.vault_id).path
    with open(path, "rb") as f:
        record = f.read()
    assert record.startswith(b"%020d " % vault.session.generation) and len(record) == 30
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert counter.remembered(path) == vault.session.generation
    inode = os.stat(path).st_ino
    vault.put(Set(name="a", value="2"))
    assert os.stat(path).st_ino == inode and counter.remembered(path) == vault.session.generation
    for damaged in (record[:5] + b"9" + record[6:], record[:-3] + b"zz\n", b"", b"-5",
                    b"12x", b"\xff" * 30):
        with open(path, "wb") as f:
            f.write(damaged)
        assert counter.remembered(path) == 0  # untrusted: no alarm, only less detection
    with open(path, "w") as f:
        f.write("999")  # the first format: bare digits
    assert counter.remembered(path) == 999
    vault.lock()
    vault.unlock(TEST_PASSPHRASE)
    with pytest.raises(IntegrityError, match="rolled back"):
        vault.get("a")
