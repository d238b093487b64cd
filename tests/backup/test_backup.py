"""`credd backup` against a real agent: a consistent copy under a stream of writes, 0600,
no overwrite without --force, checked by the agent with the vault's key, timed copies."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time

import pytest

from credd.vault import Vault
from tests.backup.conftest import open_copy
from tests.conftest import SENTINEL

pytestmark = pytest.mark.timeout(120)


def test_backup_during_writes_holds_every_acknowledged_write(client, unlocked_agent,
                                                              run_credd, tmp_path):
    """A writer keeps setting entries while `credd backup` runs: every write acknowledged
    before the backup started is in the copy, and the copy authenticates."""
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with unlocked_agent.client() as c:
            n = 0
            while not stop.is_set():
                c.set(f"stream/{n:05d}", value=f"value-{n}")
                acknowledged.append(f"stream/{n:05d}")
                n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(acknowledged) < 50:
            time.sleep(0.01)
        before = list(acknowledged)
        target = tmp_path / "out" / "copy.db"
        target.parent.mkdir()
        result = run_credd("backup", str(target), timeout=60)
        after = len(acknowledged)
    finally:
        stop.set()
        thread.join(30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(target)
    assert "checked with the vault's key" in result.stderr
    copy = open_copy(target, unlocked_agent.state_dir, tmp_path)
    try:
        names = {m.name for m in copy.list()}
        assert set(before) <= names, "an acknowledged write is missing from the backup"
        assert len(names) <= after + 1  # nothing that was not written
        assert copy.get(before[-1]) == f"value-{int(before[-1].split('/')[1])}"
        assert copy.check() == []
    finally:
        copy.close()


def test_backup_file_is_private_single_and_refuses_to_overwrite(client, run_credd, tmp_path):
    client.set("sentinel", value=SENTINEL)
    target = tmp_path / "copy.db"
    assert run_credd("backup", str(target)).returncode == 0
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert not {"copy.db-wal", "copy.db-shm", "copy.db-journal"} & set(os.listdir(tmp_path))
    assert SENTINEL.encode() not in target.read_bytes()  # encrypted, like the vault
    with sqlite3.connect(f"file:{target}?mode=ro&immutable=1", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    first = target.read_bytes()

    again = run_credd("backup", str(target))
    assert again.returncode == 1 and "exists" in again.stderr and "--force" in again.stderr
    assert target.read_bytes() == first
    assert [n for n in os.listdir(tmp_path) if n.startswith(".copy.db")] == []  # no temp left

    client.set("later", value="x")
    forced = run_credd("backup", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes() != first
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_backup_into_a_directory_names_copies_by_time_and_keeps_n(client, run_credd,
                                                                  tmp_path):
    client.set("a", value="1")
    directory = tmp_path / "backups"
    made = []
    for _ in range(3):
        result = run_credd("backup", f"{directory}/", "--keep", "2")
        assert result.returncode == 0, result.stderr
        made.append(result.stdout.strip())
        time.sleep(1.05)  # names carry the second
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    left = sorted(os.listdir(directory))
    assert left == sorted(os.path.basename(p) for p in made[1:])
    assert all(n.startswith("vault-") and n.endswith(".db") for n in left)
    assert "removed the older copy" in result.stderr


def test_default_target_is_backups_beside_the_vault(client, unlocked_agent, run_credd):
    client.set("a", value="1")
    result = run_credd("backup", "--json")
    assert result.returncode == 0, result.stderr
    import json
    report = json.loads(result.stdout)
    assert os.path.dirname(report["path"]) == os.path.join(
        os.path.dirname(unlocked_agent.vault), "backups")
    assert report["checked"] == "key" and report["entries"] == 1
    assert report["vault_id"] and report["generation"] >= 1


def test_locked_vault_gets_a_structural_check_only(client, run_credd, tmp_path):
    client.set("a", value="1")
    client.lock()
    result = run_credd("backup", str(tmp_path / "copy.db"))
    assert result.returncode == 0, result.stderr
    assert "unlock the vault to have every entry checked" in result.stderr


def test_without_an_agent_the_vault_file_is_read(client, unlocked_agent, run_credd,
                                                 tmp_path):
    client.set("a", value="1")
    client.close()
    unlocked_agent.stop()
    result = run_credd("backup", str(tmp_path / "copy.db"))
    assert result.returncode == 0, result.stderr
    copy = open_copy(tmp_path / "copy.db", unlocked_agent.state_dir, tmp_path)
    try:
        assert copy.get("a") == "1"
    finally:
        copy.close()


def test_the_agent_checks_a_copy_with_the_vaults_key(client, unlocked_agent, tmp_path):
    """The agent's verification sees a row damaged in a copy (the structural check cannot)."""
    from credd import protocol as p
    from credd.vault import backup

    client.set("a", value="1")
    good, bad = tmp_path / "good.db", tmp_path / "bad.db"
    backup.snapshot(unlocked_agent.vault, str(good))
    backup.snapshot(unlocked_agent.vault, str(bad))
    with sqlite3.connect(bad) as conn:
        (blob,) = conn.execute("SELECT secret FROM entries").fetchone()
        conn.execute("UPDATE entries SET secret = ?", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    reports = {}
    for copy in (good, bad):
        fd = os.open(copy, os.O_RDONLY)
        try:
            reports[copy] = client.hand_over(p.VerifyBackup(), [fd], p.BackupReport)
        finally:
            os.close(fd)
    assert reports[good].problems == [] and reports[good].entries == 1
    assert "entry 'a': secret failed authentication" in reports[bad].problems


def test_verify_refuses_what_is_not_a_regular_file(client):
    from credd import protocol as p
    from credd.errors import BadRequest

    r, w = os.pipe()
    try:
        with pytest.raises(BadRequest, match="regular file"):
            client.hand_over(p.VerifyBackup(), [r], p.BackupReport)
    finally:
        os.close(r)
        os.close(w)
    assert client.status().state == "unlocked"  # the agent serves on


def test_no_vault_is_reported(agent, run_credd, tmp_path):
    result = run_credd("backup", str(tmp_path / "copy.db"))
    assert result.returncode == 5 and "no vault" in result.stderr
    assert not (tmp_path / "copy.db").exists()


def test_open_copy_helper_sees_the_vault(client, unlocked_agent, tmp_path):
    """The helper the tests above rely on opens a copy, not the live vault."""
    client.set("a", value="1")
    copy_path = tmp_path / "c.db"
    from credd.vault import backup
    backup.snapshot(unlocked_agent.vault, str(copy_path))
    client.set("b", value="2")
    copy: Vault = open_copy(copy_path, unlocked_agent.state_dir, tmp_path)
    try:
        assert [m.name for m in copy.list()] == ["a"]
    finally:
        copy.close()
