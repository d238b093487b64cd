"""Key slots through the real agent: a program that can reach the unlocked agent, but knows
neither the passphrase nor the recovery key, cannot add a way back in (a slot of its own,
a replaced keyring slot, a rekey that hands it the new recovery key); the owner sees every
slot (`credd slots`, `status`), and a label renamed in the file is caught."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from credd import protocol as p
from credd.errors import IntegrityError
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import status

OWNER_KEY, EVIL_KEY = b"o" * 32, b"e" * 32


def _error(reply: p.Response, code: str) -> p.Error:
    assert isinstance(reply, p.Error) and reply.code == code, reply
    return reply


def _unlocked(agent, raw) -> tuple[object, str]:
    c = raw(agent)
    recovery = c.call(p.Init(passphrase=TEST_PASSPHRASE, **FAST_KDF)).recovery_key
    assert c.call(p.Set(name="kept", value=SENTINEL)).entry.name == "kept"
    return c, recovery


def _wait_out_throttle(c) -> None:
    time.sleep(status(c).retry_after)


def test_without_the_owners_secret_no_slot_is_added_replaced_or_rekeyed(agent, raw):
    c, recovery = _unlocked(agent, raw)
    assert isinstance(c.call(p.AddKeySlot(key=OWNER_KEY, proof=TEST_PASSPHRASE)), p.Ok)
    attacker = raw(agent)  # same uid, vault unlocked, no passphrase, no recovery key
    for request in (p.AddKeySlot(key=EVIL_KEY, label="backdoor"),
                    p.AddKeySlot(key=EVIL_KEY, label="keyring"),  # replace the owner's
                    p.RemoveKeySlot(label="keyring"), p.Rekey()):
        assert "proof" in _error(attacker.call(request), "bad_request").message
    guessed = attacker.call(p.AddKeySlot(key=EVIL_KEY, label="keyring", proof="a guess"))
    _error(guessed, "bad_passphrase")
    _error(attacker.call(p.Rekey(proof="another guess")), "bad_passphrase")
    # wrong proofs are throttled like wrong unlocks
    limited = _error(attacker.call(p.Rekey(proof="a third guess")), "rate_limited")
    assert limited.retry_after and limited.retry_after > 0

    c.call(p.Lock())
    _wait_out_throttle(c)
    _error(c.call(p.Unlock(key=EVIL_KEY)), "bad_passphrase")
    _wait_out_throttle(c)
    assert c.call(p.Unlock(key=OWNER_KEY)).state == "unlocked"  # still the owner's slot
    c.call(p.Lock())
    assert c.call(p.Unlock(recovery_key=recovery)).state == "unlocked"  # not rekeyed
    listed = c.call(p.Slots())
    assert [(s.label, s.kind) for s in listed.slots] == [
        ("passphrase", "passphrase"), ("recovery", "recovery"), ("keyring", "key")]


def test_with_the_passphrase_or_the_recovery_key_the_owner_changes_slots(agent, raw):
    c, recovery = _unlocked(agent, raw)
    assert isinstance(c.call(p.AddKeySlot(key=OWNER_KEY, label="ci", proof=recovery)), p.Ok)
    assert isinstance(c.call(p.AddKeySlot(key=EVIL_KEY, label="ci", proof=TEST_PASSPHRASE)),
                      p.Ok)  # replaced
    new_recovery = c.call(p.Rekey(proof=TEST_PASSPHRASE)).recovery_key
    c.call(p.Lock())
    _error(c.call(p.Unlock(recovery_key=recovery)), "bad_passphrase")
    _wait_out_throttle(c)
    assert c.call(p.Unlock(recovery_key=new_recovery)).state == "unlocked"
    assert c.call(p.Get(name="kept")).value == SENTINEL
    assert [s.label for s in c.call(p.Slots()).slots] == ["passphrase", "recovery"]


def test_credd_slots_lists_every_slot_and_removes_one(unlocked_agent, run_credd):
    with unlocked_agent.client() as c:
        c.add_key_slot(OWNER_KEY, label="laptop", proof=TEST_PASSPHRASE)
        c.add_key_slot(EVIL_KEY, label="ci", proof=TEST_PASSPHRASE)
    out = run_credd("slots")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["LABEL", "KIND", "KDF", "CREATED", "LAST", "USED"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["passphrase", "passphrase"], ["recovery", "recovery"], ["laptop", "key"], ["ci", "key"]]
    assert "argon2id 19 MiB, t=2, p=1" in lines[1] and "never" in lines[2]
    listed = json.loads(run_credd("slots", "--json").stdout)
    assert listed["problems"] == [] and {"label": "ci", "kind": "key"}.items() <= \
        listed["slots"][3].items()
    assert all(s["created"] for s in listed["slots"]) and listed["slots"][0]["used"]
    shown = json.loads(run_credd("status", "--json").stdout)["slots"]
    assert shown == {"passphrase": 1, "recovery": 1, "key": 2}

    refused = run_credd("slots", "rm", "ci", "--passphrase-stdin", input="not it")
    assert refused.returncode == 6 and "wrong passphrase" in refused.stderr
    done = run_credd("slots", "rm", "ci", "--passphrase-stdin", input=TEST_PASSPHRASE)
    assert done.returncode == 0, done.stderr
    assert json.loads(run_credd("status", "--json").stdout)["slots"]["key"] == 1
    assert "passphrase" in run_credd("slots", "rm", "passphrase", "--passphrase-stdin",
                                     input=TEST_PASSPHRASE).stderr  # never the passphrase


def test_a_label_renamed_in_the_file_is_caught(unlocked_agent, run_credd):
    with unlocked_agent.client() as c:
        c.add_key_slot(EVIL_KEY, label="backdoor", proof=TEST_PASSPHRASE)
    db = sqlite3.connect(unlocked_agent.vault, isolation_level=None)
    db.execute("UPDATE slots SET label = 'keyring' WHERE label = 'backdoor'")  # looks benign
    db.close()
    out = run_credd("slots")
    assert out.returncode == 8, out
    assert "FAILED AUTHENTICATION" in next(line for line in out.stdout.splitlines()
                                           if line.startswith("keyring"))
    assert "key slot 'keyring': changed outside credd" in out.stderr
    checked = run_credd("check")
    assert checked.returncode == 8 and "key slot 'keyring'" in checked.stdout
    with unlocked_agent.client() as c:  # no slot write blesses it; removing it is allowed
        with pytest.raises(IntegrityError, match="changed outside credd"):
            c.add_key_slot(OWNER_KEY, label="laptop", proof=TEST_PASSPHRASE)
        c.remove_key_slot("keyring", proof=TEST_PASSPHRASE)
        assert c.slots().problems == [] and c.check().problems == []


def test_a_header_asking_for_more_than_1_gib_is_refused_before_deriving(agent, raw):
    """A tampered passphrase slot asking Argon2id for 4 GiB (or t=11, or p=17) costs nothing:
    refused before deriving, in well under 50 ms, however often it is tried."""
    c, _ = _unlocked(agent, raw)
    c.call(p.Lock())
    db = sqlite3.connect(agent.vault, isolation_level=None)
    (header,) = db.execute("SELECT header FROM slots WHERE label = 'passphrase'").fetchone()
    for offset, value in ((32, 4 * 1024 * 1024), (32, 1024 * 1024 + 1), (36, 11), (40, 17)):
        tampered = header[:offset] + value.to_bytes(4, "big") + header[offset + 4:]
        db.execute("UPDATE slots SET header = ? WHERE label = 'passphrase'", (tampered,))
        took = []
        for _ in range(3):
            started = time.perf_counter()
            reply = c.call(p.Unlock(passphrase=TEST_PASSPHRASE))
            took.append(time.perf_counter() - started)
            assert isinstance(reply, p.Error) and reply.code == "integrity", reply
            assert "refused without deriving" in reply.message
        assert min(took) < 0.05, (offset, value, took)
    db.execute("UPDATE slots SET header = ? WHERE label = 'passphrase'", (header,))
    db.close()
    assert c.call(p.Unlock(passphrase=TEST_PASSPHRASE)).state == "unlocked"
