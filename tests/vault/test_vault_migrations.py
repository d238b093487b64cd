"""Format migrations: the committed first-format vault opens, is backed up, then upgraded."""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import stat

import pytest

from credd.errors import BadRequest, IntegrityError, InternalError
from credd.protocol import Set
from credd.vault import Vault, migrations
from tests.vault.conftest import file_bytes
from tests.vault.fixtures import make_format3, make_format4
from tests.vault.fixtures.make_format1 import KEY, PASSPHRASE, TARGET

RECOVERY = "TBRH-WXTF-6TUI-V2DD-HPUJ-AUEX-GRYH-BM55"


def _copy(tmp_path, fixture: str) -> str:
    home = tmp_path / "vaultdir"
    home.mkdir(mode=0o700)
    path = str(home / "vault.db")
    shutil.copy(fixture, path)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def old_vault(tmp_path) -> str:
    return _copy(tmp_path, TARGET)


def _immutable(path: str) -> sqlite3.Connection:
    # A committed fixture is opened immutable: reading it must not create -wal/-shm beside it.
    return sqlite3.connect(f"file:{path}?immutable=1", uri=True) \
        if path in (TARGET, make_format3.TARGET, make_format4.TARGET) else sqlite3.connect(path)


def _format(path: str) -> int:
    conn = _immutable(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_fixture_is_format_one_and_the_registry_goes_further():
    assert _format(TARGET) == 1
    assert migrations.LATEST >= 2
    assert set(migrations.MIGRATIONS) == set(range(2, migrations.LATEST + 1))


def test_first_format_fixture_migrates_with_a_backup(old_vault):
    vault = Vault.open(old_vault)
    assert _format(old_vault) == migrations.LATEST
    backups = glob.glob(old_vault + ".format1-*.bak")
    assert len(backups) == 1 and _format(backups[0]) == 1
    assert stat.S_IMODE(os.stat(backups[0]).st_mode) == 0o600
    conn = sqlite3.connect(old_vault)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'history_entry'").fetchone()
    conn.close()
    vault.unlock(PASSPHRASE)
    assert [e.name for e in vault.list()] == ["cloud/aws/prod", "db/main"]
    assert [e.name for e in vault.trash()] == ["old/token"]
    assert vault.get("cloud/aws/prod") == "AKIA-v2"
    assert vault.get("cloud/aws/prod", "region") == "eu-west-1"
    assert vault.get("cloud/aws/prod", "secret_access_key") == "sak-v1"
    assert vault.reveal("cloud/aws/prod", 1).value == "AKIA-v1"
    assert vault.reveal("db/main").notes == "main db"
    assert vault.check() == []
    vault.put(Set(name="new", value="after migration"))
    vault.lock()
    vault.unlock(key=KEY)
    vault.lock()
    vault.unlock(recovery_key=RECOVERY)
    assert vault.get("new") == "after migration"
    vault.close()
    again = Vault.open(old_vault)  # already current: no second backup
    assert len(glob.glob(old_vault + ".*.bak")) == 1
    again.close()


def test_a_newer_format_is_refused(old_vault):
    conn = sqlite3.connect(old_vault)
    conn.execute(f"PRAGMA user_version={migrations.LATEST + 1}")
    conn.close()
    with pytest.raises(BadRequest, match="upgrade credd"):
        Vault.open(old_vault)


def test_a_failing_step_rolls_back_and_keeps_the_backup(old_vault, monkeypatch):
    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("step failed")

    monkeypatch.setitem(migrations.MIGRATIONS, 2, broken)
    with pytest.raises(InternalError, match="stays at format 1; a backup .* is at") as exc:
        Vault.open(old_vault)
    assert "step failed" not in exc.value.message
    assert _format(old_vault) == 1
    conn = sqlite3.connect(old_vault)
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchone()
    conn.close()
    assert len(glob.glob(old_vault + ".format1-*.bak")) == 1


def test_a_file_that_is_not_a_vault_is_refused(old_vault):
    with open(old_vault, "wb") as f:
        f.write(b"this is not sqlite at all" * 100)
    with pytest.raises(IntegrityError, match="cannot be read as a vault"):
        Vault.open(old_vault)


def test_a_format_3_vault_migrates_and_its_snapshot_leaves_the_file(tmp_path):
    """Format 3 sealed all metadata as one snapshot blob: format 4 drops it with its pages
    zeroed (the backup keeps it, as it keeps everything), and the first unlock after the
    migration goes row by row until a seal writes the chunks."""
    assert _format(make_format3.TARGET) == 3
    conn = _immutable(make_format3.TARGET)
    (snapshot,) = conn.execute("SELECT blob FROM snapshot").fetchone()
    conn.close()
    path = _copy(tmp_path, make_format3.TARGET)
    vault = Vault.open(path)
    assert _format(path) == migrations.LATEST >= 4
    (backup,) = glob.glob(path + ".format3-*.bak")
    assert _format(backup) == 3
    data = file_bytes(path)
    assert not any(snapshot[i:i + 32] in data for i in range(12, len(snapshot) - 32, 32))
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "snapshot" not in tables and {"chunks", "manifest", "records"} <= tables
    vault.unlock(make_format3.PASSPHRASE)
    assert not vault.from_snapshot  # nothing sealed yet: row by row
    expected = _everything(vault)
    assert [e.name for e in vault.list()] == ["cloud/aws/prod", "db/main"]
    assert [e.name for e in vault.trash()] == ["old/token"]
    assert vault.get("cloud/aws/prod") == "AKIA-v2" and vault.check() == []
    vault.close()  # seals the chunks
    again = Vault.open(path)
    again.unlock(key=make_format3.KEY)
    assert again.from_snapshot and _everything(again) == expected
    again.close()


def _everything(vault: Vault) -> tuple:
    return ([(e.name, e.service, e.fields, e.version) for e in vault.list() + vault.trash()],
            vault.get("cloud/aws/prod", "secret_access_key"),
            vault.reveal("cloud/aws/prod", 1).value,
            vault.reveal("db/main").notes)


def test_a_format_4_vault_migrates_and_its_first_unlock_authenticates_the_slots(tmp_path):
    """Format 5 authenticates the key slots' labels. A migration needs no key, so the first
    unlock MACs the slots the file has; from then on a renamed label is caught, and so is a
    header stripped of the slots' digest."""
    assert _format(make_format4.TARGET) == 4
    path = _copy(tmp_path, make_format4.TARGET)
    vault = Vault.open(path)
    assert _format(path) == migrations.LATEST >= 5
    (backup,) = glob.glob(path + ".format4-*.bak")
    assert _format(backup) == 4
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("SELECT slots FROM vault").fetchone() == (None,)
    vault.unlock(make_format4.PASSPHRASE)
    assert vault.from_snapshot  # the chunks the format-4 code sealed are still good
    assert conn.execute("SELECT count(*) FROM slots WHERE mac IS NULL").fetchone() == (0,)
    assert conn.execute("SELECT slots FROM vault").fetchone()[0] is not None
    infos, problems = vault.slots()
    assert [(i.label, i.kind, i.created) for i in infos] == [
        ("passphrase", "passphrase", None), ("recovery", "recovery", None),
        ("keyring", "key", None)] and problems == []
    expected = _everything(vault)
    assert vault.check() == []
    vault.close()

    conn.execute("UPDATE slots SET label = 'work laptop' WHERE label = 'keyring'")
    again = Vault.open(path)
    again.unlock(key=make_format4.KEY)  # it still opens the vault: the owner's key
    assert _everything(again) == expected
    problems = again.slots()[1]
    assert problems == ["key slot 'work laptop': changed outside credd (its label, kind or "
                        "parameters)"]
    assert problems[0] in again.check()
    again.close()

    conn.execute("UPDATE vault SET slots = NULL")  # as if never authenticated: refused
    stripped = Vault.open(path)
    stripped.unlock(make_format4.PASSPHRASE)
    with pytest.raises(IntegrityError, match="header failed authentication"):
        stripped.list()
    stripped.close()
    conn.close()
