"""Key slots: passphrase, key and recovery unlock; passphrase change; rekey."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from credd.errors import BadPassphrase, BadRequest, NotFound
from credd.protocol import Set
from credd.vault import Vault
from tests.conftest import REPO, TEST_PASSPHRASE
from tests.vault.conftest import file_bytes, raw, reopen

NEW = "a different, longer passphrase"


def _open(vault: Vault) -> Vault:
    return Vault.open(vault.path, state_dir=vault.state_dir)


def test_every_unlock_method(created):
    vault, recovery = created
    vault.put(Set(name="a", value="1"))
    vault.add_key_slot(b"k" * 32, proof=TEST_PASSPHRASE)
    vault.close()
    v = _open(vault)
    for kwargs in ({"passphrase": TEST_PASSPHRASE}, {"key": b"k" * 32},
                   {"recovery_key": recovery},
                   {"recovery_key": recovery.lower().replace("-", " ")}):
        v.unlock(**kwargs)
        assert v.get("a") == "1"
        v.lock()
    for kwargs in ({"passphrase": "nope"}, {"key": b"x" * 32},
                   {"recovery_key": "AAAA-" * 7 + "AAAA"}):
        with pytest.raises(BadPassphrase, match="wrong passphrase or damaged vault"):
            v.unlock(**kwargs)
        assert not v.unlocked
    for kwargs in ({}, {"passphrase": "a", "key": b"k" * 32}, {"key": b"short"},
                   {"passphrase": ""}, {"recovery_key": "too-short"}):
        with pytest.raises(BadRequest):
            v.unlock(**kwargs)
    v.close()


def test_key_slots_add_replace_remove(vault):
    vault.add_key_slot(b"1" * 32, proof=TEST_PASSPHRASE)
    vault.add_key_slot(b"2" * 32, proof=TEST_PASSPHRASE)  # same label: replaced
    vault.add_key_slot(b"3" * 32, label="ci", proof=TEST_PASSPHRASE)
    with pytest.raises(BadRequest):
        vault.add_key_slot(b"4" * 32, label="passphrase", proof=TEST_PASSPHRASE)
    v = reopen(vault)
    with pytest.raises(BadPassphrase):
        v.unlock(key=b"1" * 32)
    v.unlock(key=b"2" * 32)
    v.remove_key_slot("keyring", proof=TEST_PASSPHRASE)
    with pytest.raises(NotFound):
        v.remove_key_slot("keyring", proof=TEST_PASSPHRASE)
    with pytest.raises(BadRequest, match="passwd"):
        v.remove_key_slot("passphrase", proof=TEST_PASSPHRASE)
    v.lock()
    with pytest.raises(BadPassphrase):
        v.unlock(key=b"2" * 32)
    v.unlock(key=b"3" * 32)
    v.close()


def test_change_passphrase_leaves_no_old_blob(vault):
    vault.put(Set(name="a", value="1"))
    db = raw(vault.path)
    old_header, old_wrapped = db.execute(
        "SELECT header, wrapped FROM slots WHERE id = 1").fetchone()
    db.close()
    with pytest.raises(BadPassphrase):
        vault.change_passphrase("wrong", NEW)
    vault.change_passphrase(TEST_PASSPHRASE, NEW)
    assert vault.get("a") == "1"
    data = file_bytes(vault.path)
    assert old_wrapped not in data and old_header[-16:] not in data  # blob and salt both gone
    assert os.path.getsize(vault.path + "-wal") == 0
    vault.close()
    v = _open(vault)
    with pytest.raises(BadPassphrase):
        v.unlock(TEST_PASSPHRASE)
    v.unlock(NEW)
    assert v.get("a") == "1"
    v.close()


_CHANGER = textwrap.dedent("""
    import sys
    from credd.vault import Vault
    v = Vault.open(sys.argv[1])
    v.unlock(sys.argv[2])
    print("ready", flush=True)
    v.change_passphrase(sys.argv[2], sys.argv[3])
    print("done", flush=True)
""")


def test_kill_9_during_change_leaves_exactly_one_passphrase(vault):
    vault.put(Set(name="a", value="1"))
    vault.close()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(1234)
    current, outcomes = TEST_PASSPHRASE, set()
    delays = [0.0, None] + [rng.uniform(0.0, 0.35) for _ in range(6)]  # None: after "done"
    for attempt, delay in enumerate(delays):
        new = f"passphrase number {attempt}"
        proc = subprocess.Popen([sys.executable, "-c", _CHANGER, vault.path, current, new],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        if delay is None:
            assert proc.stdout.readline().strip() == b"done"
        else:
            time.sleep(delay)  # the change derives twice (~0.1 s each)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        works = []
        for candidate in (current, new):
            v = Vault.open(vault.path)
            try:
                v.unlock(candidate)
                assert v.get("a") == "1"
                works.append(candidate)
            except BadPassphrase:
                pass
            v.close()
        assert len(works) == 1, f"attempt {attempt}: {len(works)} passphrases work"
        outcomes.add(works[0] == new)
        current = works[0]
    assert outcomes == {True, False}  # kills landed both before and after the commit
    v = Vault.open(vault.path)
    v.unlock(current)
    assert v.check() == []
    v.close()


def test_rekey_reencrypts_everything_under_a_new_dek(created):
    vault, old_recovery = created
    for i in range(1200):
        vault.put(Set(name=f"e{i}", value=f"v{i}"))
    vault.put(Set(name="e0", value="v0b"))
    vault.add_key_slot(b"k" * 32, proof=TEST_PASSPHRASE)
    db = raw(vault.path)
    before = {r[0] for r in db.execute("SELECT secret FROM entries")}
    db.close()
    old_audit = vault.audit_key
    seen = []
    new_recovery = vault.rekey(lambda done, total: seen.append((done, total)),
                               proof=TEST_PASSPHRASE)
    assert seen[0] == (0, 1201) and seen[-1] == (1201, 1201) and len(seen) > 3
    assert vault.audit_key != old_audit
    assert vault.get("e0") == "v0b" and vault.reveal("e0", 1).value == "v0"
    data = file_bytes(vault.path)
    assert not any(b[:28] in data for b in before)
    assert vault.check() == []
    v = reopen(vault)
    assert v.get("e999") == "v999"
    v.lock()
    for kwargs in ({"recovery_key": old_recovery}, {"key": b"k" * 32}):
        with pytest.raises(BadPassphrase):
            v.unlock(**kwargs)
    v.unlock(recovery_key=new_recovery)
    with pytest.raises(BadRequest, match="passphrase"):  # no passphrase KEK to rewrap with
        v.rekey(proof=new_recovery)
    newest = v.rekey(proof=TEST_PASSPHRASE)  # the proof gives the passphrase slot's KEK
    v.lock()
    v.unlock(recovery_key=newest)
    v.close()
