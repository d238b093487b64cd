"""A write racing a lock: the reply must tell the truth about what was committed.

Found by the state-machine fuzz (test_state_machine.py). A vault write runs on the
agent's writer thread; a `lock` (request, SIGUSR1, idle watchdog) arriving meanwhile
queues `vault.lock` right behind it. The handler once asked the vault for its audit key
only after the write, when a racing lock had already locked it: the client was told
`locked` although its write was committed, the write went unaudited, subscribers never
heard of it, and for `rekey` the new recovery key was lost. These tests keep it fixed.
"""

from __future__ import annotations

import time

from credd import protocol as p
from tests.conftest import FAST_KDF, TEST_PASSPHRASE
from tests.security.conftest import Raw, audit_records


def _race(agent, request, rounds: int, lied) -> list[int]:
    """Send `request` on one connection and `lock` on another right after; return the rounds
    where `lied(conn, i, reply)` finds the reply contradicts what was committed."""
    a, b = Raw(agent.socket).hello(), Raw(agent.socket).hello()
    lying = []
    try:
        for i in range(rounds):
            assert isinstance(a.call(p.Unlock(passphrase=TEST_PASSPHRASE)), p.StatusReply)
            a.send(request(i))
            time.sleep((i % 6) * 0.001)
            b.send(p.Lock())
            reply = a.recv()
            assert isinstance(b.recv(), p.Ok)
            assert not isinstance(reply, p.Error) or reply.code == "locked", reply
            if lied(a, i, reply):
                lying.append(i)
                break  # one proven lie is enough
    finally:
        a.close()
        b.close()
    return lying


def test_a_set_answered_locked_was_not_committed(unlocked_agent):
    padding = "y" * 200_000  # a write long enough for the lock to arrive during it

    def committed(conn: Raw, i: int, reply) -> bool:
        if not isinstance(reply, p.Error):
            return False
        conn.call(p.Unlock(passphrase=TEST_PASSPHRASE))
        return conn.call(p.Get(name="x")).value == f"v{i}{padding}"

    with unlocked_agent.client() as c:
        c.set("x", value="initial")
    def sets_audited() -> int:
        return sum(r["op"] == "set" for r in audit_records(unlocked_agent.state_dir))

    before = sets_audited()
    lying = _race(unlocked_agent, lambda i: p.Set(name="x", value=f"v{i}{padding}"), 40,
                  committed)
    assert not lying, (f"set #{lying[0]} was answered `locked` but committed "
                       f"({sets_audited() - before} set audit lines for {lying[0] + 1} sets)")


def test_a_rekey_answered_locked_leaves_the_old_recovery_key_working(make_agent):
    agent = make_agent()
    with agent.client() as c:
        recovery = [c.init(TEST_PASSPHRASE, **FAST_KDF)]
        c.unlock(TEST_PASSPHRASE)
        for i in range(300):  # enough entries for the rekey to take a while
            c.set(f"e{i}", value=f"value {i}")

    def committed(conn: Raw, i: int, reply) -> bool:
        if isinstance(reply, p.RecoveryKey):
            recovery[0] = reply.recovery_key
            return False
        opened = conn.call(p.Unlock(recovery_key=recovery[0]))
        # the last recovery key shown no longer opens the vault
        return isinstance(opened, p.Error) and opened.code == "bad_passphrase"

    def rekey(i: int) -> p.Rekey:
        return p.Rekey(proof=TEST_PASSPHRASE)

    lying = _race(agent, rekey, 30, committed)
    assert not lying, f"rekeys {lying} were answered `locked`, yet the recovery key changed"


def test_a_lock_acknowledged_during_init_wins(agent):
    a, b = Raw(agent.socket).hello(), Raw(agent.socket).hello()
    try:
        a.send(p.Init(passphrase=TEST_PASSPHRASE))  # the shipped KDF: a wide window
        time.sleep(0.03)
        assert isinstance(b.call(p.Lock()), p.Ok)
        assert isinstance(a.recv(), p.RecoveryKey)  # the key must still be shown once
        assert b.call(p.Status()).state == "locked"
    finally:
        a.close()
        b.close()
