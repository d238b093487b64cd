"""`credd restore-backup` against a real agent: confirmation, proof, the old file kept aside,
the agent serving the restored vault, and the rollback counter still catching a rollback
nobody asked for."""

from __future__ import annotations

import glob
import os
import shutil
import stat
import sys

import pytest

from credd.errors import BadPassphrase, IntegrityError
from tests.conftest import TEST_PASSPHRASE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def backed_up(client, run_credd, tmp_path):
    """A vault with `a` and `b`, its backup, then changes after it: `a` changed, `c` added."""
    client.set("a", value="a-1")
    client.set("b", value="b-1")
    path = tmp_path / "backup.db"
    assert run_credd("backup", str(path)).returncode == 0
    client.set("a", value="a-2")
    client.set("c", value="c-1")
    return path


def restore(run_credd, path, *args, input=TEST_PASSPHRASE):
    return run_credd("restore-backup", str(path), *args, input=input, timeout=60)


def test_restore_puts_the_backup_back_and_keeps_the_old_file(backed_up, unlocked_agent,
                                                              run_credd):
    vault = unlocked_agent.vault
    result = restore(run_credd, backed_up, "--yes", "--passphrase-stdin")
    assert result.returncode == 0, result.stderr
    assert "next: `credd unlock`" in result.stderr
    [aside] = glob.glob(vault + ".replaced-*")
    assert f"kept as {aside}" in result.stderr
    assert stat.S_IMODE(os.stat(vault).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(aside).st_mode) == 0o600
    with unlocked_agent.client() as c:  # the same agent, never restarted
        assert c.status().state == "locked"
        c.unlock(TEST_PASSPHRASE)
        assert [m.name for m in c.list()] == ["a", "b"]
        assert c.get("a") == "a-1" and c.get("b") == "b-1"
        assert c.check().problems == []
        c.set("d", value="after the restore")  # and it writes
    assert unlocked_agent.proc.poll() is None


def test_restore_without_proof_is_refused(backed_up, unlocked_agent, run_credd):
    before = open(unlocked_agent.vault, "rb").read()
    result = restore(run_credd, backed_up, "--yes", "--passphrase-stdin", input="wrong")
    assert result.returncode == BadPassphrase.exit_code, result.stderr
    assert glob.glob(unlocked_agent.vault + ".replaced-*") == []
    with unlocked_agent.client() as c:
        assert c.status().state == "unlocked"  # nothing happened to the vault
        assert c.get("a") == "a-2" and c.get("c") == "c-1"
        assert c.status().retry_after == 0  # the first failure is free, as for unlock
    assert open(unlocked_agent.vault, "rb").read() == before


def test_restore_asks_first(backed_up, unlocked_agent, run_credd, credd_env):
    """Without --yes: no terminal means no restore; at a terminal, `n` keeps the vault."""
    result = run_credd("restore-backup", str(backed_up), input="")
    assert result.returncode == 2 and "--yes" in result.stderr
    import pty
    pid, fd = pty.fork()
    if pid == 0:  # the child: credd on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "credd", "restore-backup",
                                   str(backed_up)], credd_env)
    out = _talk(fd, b"Replace the vault? [y/N] ", b"n\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1, out
    assert b"nothing was restored" in out and b"vault" in out
    assert glob.glob(unlocked_agent.vault + ".replaced-*") == []


def _talk(fd: int, prompt: bytes, answer: bytes) -> bytes:
    seen = b""
    while prompt not in seen:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
    os.write(fd, answer)
    try:
        while chunk := os.read(fd, 4096):
            seen += chunk
    except OSError:
        pass
    return seen


def test_a_backup_of_another_vault_is_refused(backed_up, unlocked_agent, run_credd, tmp_path,
                                              make_agent, credd_env):
    other_env = dict(credd_env)
    other_dir = tmp_path / "other"
    other_dir.mkdir(mode=0o700)
    other_env.update(CREDD_SOCK=os.path.join(os.path.dirname(credd_env["CREDD_SOCK"]),
                                             "other.sock"),
                     CREDD_VAULT=str(other_dir / "vault.db"),
                     CREDD_STATE_DIR=str(other_dir / "state"))
    other = make_agent(env=other_env)
    other.init_and_unlock()
    other_backup = tmp_path / "other.db"
    assert run_credd("backup", str(other_backup), env=other_env).returncode == 0
    result = restore(run_credd, other_backup, "--yes", "--passphrase-stdin")
    assert result.returncode == 2 and "another vault" in result.stderr, result.stderr
    assert glob.glob(unlocked_agent.vault + ".replaced-*") == []


def test_restore_with_the_recovery_key(client, unlocked_agent, run_credd, tmp_path):
    """The recovery key is proof too (a passphrase changed since the backup)."""
    unlocked_agent.stop()
    shutil.rmtree(os.path.dirname(unlocked_agent.vault))
    unlocked_agent.start()
    recovery = unlocked_agent.init_and_unlock()
    with unlocked_agent.client() as c:
        c.set("a", value="1")
    path = tmp_path / "b.db"
    assert run_credd("backup", str(path)).returncode == 0
    with unlocked_agent.client() as c:
        c.change_passphrase(TEST_PASSPHRASE, "a new passphrase")
    old = restore(run_credd, path, "--yes", "--passphrase-stdin", input="a new passphrase")
    assert old.returncode == BadPassphrase.exit_code  # the backup has the old one
    result = restore(run_credd, path, "--yes", "--recovery-stdin", input=recovery)
    assert result.returncode == 0, result.stderr
    with unlocked_agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
        assert c.get("a") == "1"


def test_rollback_behind_the_agents_back_is_still_detected(backed_up, unlocked_agent,
                                                           run_credd):
    """After a restore the counter is above the replaced file and the backup: copying either
    over the vault while the agent is stopped is refused at unlock."""
    assert restore(run_credd, backed_up, "--yes", "--passphrase-stdin").returncode == 0
    [aside] = glob.glob(unlocked_agent.vault + ".replaced-*")
    for old in (aside, str(backed_up)):
        unlocked_agent.stop()
        shutil.copyfile(old, unlocked_agent.vault)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(unlocked_agent.vault + suffix):
                os.unlink(unlocked_agent.vault + suffix)
        unlocked_agent.start()
        with unlocked_agent.client() as c, pytest.raises(IntegrityError, match="rolled back"):
            c.unlock(TEST_PASSPHRASE)
            c.list()


def test_restore_into_an_agent_without_a_vault(backed_up, unlocked_agent, run_credd):
    """Disaster recovery: the vault is gone; restore-backup starts an agent if need be."""
    unlocked_agent.stop()
    shutil.rmtree(os.path.dirname(unlocked_agent.vault))
    os.makedirs(os.path.dirname(unlocked_agent.vault), mode=0o700)
    result = restore(run_credd, backed_up, "--yes", "--passphrase-stdin")
    assert result.returncode == 0, result.stderr
    assert "kept as" not in result.stderr
    with unlocked_agent.client() as c:  # the agent restore-backup started
        c.unlock(TEST_PASSPHRASE)
        assert c.get("a") == "a-1"
        pid = c.status().pid
    os.kill(pid, 15)


def test_restore_of_a_file_that_is_not_a_vault(unlocked_agent, run_credd, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    result = restore(run_credd, junk, "--yes", "--passphrase-stdin")
    assert result.returncode == IntegrityError.exit_code, result.stderr
    assert glob.glob(unlocked_agent.vault + ".replaced-*") == []


def test_restore_leaves_no_staged_file(backed_up, unlocked_agent, run_credd):
    restore(run_credd, backed_up, "--yes", "--passphrase-stdin", input="wrong")
    restore(run_credd, backed_up, "--yes", "--passphrase-stdin")
    directory = os.path.dirname(unlocked_agent.vault)
    assert [n for n in os.listdir(directory) if n.startswith(".")] == []


def test_the_replaced_file_can_itself_be_restored(backed_up, unlocked_agent, run_credd):
    """Changing one's mind: the file kept aside is a backup like any other."""
    assert restore(run_credd, backed_up, "--yes", "--passphrase-stdin").returncode == 0
    [aside] = glob.glob(unlocked_agent.vault + ".replaced-*")
    result = restore(run_credd, aside, "--yes", "--passphrase-stdin")
    assert result.returncode == 0, result.stderr
    with unlocked_agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
        assert c.get("a") == "a-2" and c.get("c") == "c-1"

