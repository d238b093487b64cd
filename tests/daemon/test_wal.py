"""The vault file on disk under a live agent: after a lock, or a second of quiet after a
write, `vault.db` alone holds every entry (the WAL is checkpointed into it), so a plain copy
is a backup; and a `-wal` deleted under the agent costs no acknowledged write: the next write
is refused with `vault_file_changed`, reads go on, and a restart finds everything."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3

from credd import protocol as p
from credd.vault import Vault
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, wait_for


def _copy_alone(vault: str, tmp_path) -> str:
    """`vault.db` copied on its own, as `cp` would: no -wal beside the copy."""
    home = tmp_path / "copy"
    home.mkdir(mode=0o700)
    target = str(home / "vault.db")
    shutil.copy(vault, target)
    return target


def _names(path: str, tmp_path) -> list[str]:
    state = tmp_path / "copy-state"  # its own rollback counter
    copy = Vault.open(path, state_dir=str(state))
    try:
        copy.unlock(TEST_PASSPHRASE)
        return [e.name for e in copy.list()]
    finally:
        copy.close()


def test_a_copy_of_the_vault_file_after_a_lock_holds_every_entry(unlocked_agent, raw, tmp_path):
    c = raw(unlocked_agent)
    names = [f"e{i:02d}" for i in range(30)]
    for name in names:
        c.call(p.Set(name=name, value=SENTINEL))
    assert isinstance(c.call(p.Lock()), p.Ok)  # answered once the vault's lock has run
    assert os.path.getsize(unlocked_agent.vault + "-wal") == 0
    assert _names(_copy_alone(unlocked_agent.vault, tmp_path), tmp_path) == names


def test_writes_that_settle_reach_the_vault_file_while_unlocked(unlocked_agent, raw, tmp_path):
    c = raw(unlocked_agent)
    c.call(p.Set(name="first", value=SENTINEL))
    wal = unlocked_agent.vault + "-wal"
    wait_for(lambda: os.path.getsize(wal) == 0, timeout=10)  # a second of quiet, then copied
    assert _names(_copy_alone(unlocked_agent.vault, tmp_path), tmp_path) == ["first"]


def test_a_deleted_wal_loses_no_acknowledged_write(make_agent, raw):
    agent = make_agent()
    c = raw(agent)
    init_unlock(c)
    c.call(p.Set(name="a", value="1"))
    c.call(p.Set(name="b", value="2"))  # acknowledged, and (for a second) only in the WAL
    os.unlink(agent.vault + "-wal")
    refused = c.call(p.Set(name="c", value="3"))
    assert isinstance(refused, p.Error) and refused.code == "vault_file_changed", refused
    assert "write-ahead log" in refused.message and "restart the agent" in refused.message
    assert c.call(p.Get(name="b")).value == "2"  # reads go on from what was verified
    assert [e.name for e in c.call(p.List()).entries] == ["a", "b"]
    again = c.call(p.Set(name="d", value="4"))  # refused for good, not only once
    assert isinstance(again, p.Error) and again.code == "vault_file_changed"
    agent.proc.send_signal(signal.SIGKILL)  # no clean shutdown to save anything
    agent.proc.wait(5)

    second = make_agent()
    c = raw(second)
    assert c.call(p.Unlock(passphrase=TEST_PASSPHRASE)).state == "unlocked"
    assert [(e.name, c.call(p.Get(name=e.name)).value) for e in c.call(p.List()).entries] == [
        ("a", "1"), ("b", "2")]
    assert isinstance(c.call(p.Set(name="c", value="3")), p.EntryReply)


def test_a_replaced_vault_file_refuses_writes_and_keeps_a_copy(unlocked_agent, raw):
    c = raw(unlocked_agent)
    c.call(p.Set(name="a", value="1"))
    vault = unlocked_agent.vault
    os.rename(vault, vault + ".moved")
    sqlite3.connect(vault).close()  # something else now lies at the path
    refused = c.call(p.Set(name="b", value="2"))
    assert isinstance(refused, p.Error) and refused.code == "vault_file_changed", refused
    assert "the vault file of" in refused.message and ".rescued-" in refused.message
    rescued = refused.message.split("is at ")[-1]
    assert os.stat(rescued).st_mode & 0o777 == 0o600
    assert c.call(p.Get(name="a")).value == "1"
    copy = Vault.open(rescued)
    copy.unlock(TEST_PASSPHRASE)
    assert copy.get("a") == "1"
    copy.close()
