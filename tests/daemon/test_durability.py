"""An acknowledged write survives kill -9; slow writes do not stall other clients."""

from __future__ import annotations

import sqlite3
import threading
import time

from credd import protocol as p
from credd.vault import Vault
from tests.conftest import TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status, wait_for


def test_kill_9_loses_no_acknowledged_write(agent, make_agent, raw):
    c = raw(agent)
    init_unlock(c)
    acknowledged = []
    killer = threading.Timer(1.0, agent.proc.kill)
    killer.start()
    try:
        for i in range(100_000):
            try:
                reply = c.call(p.Set(name=f"k/{i}", value=f"value-{i}"))
            except (AssertionError, OSError):
                break  # the agent died mid-request: that write was never acknowledged
            assert isinstance(reply, p.EntryReply)
            acknowledged.append(i)
    finally:
        killer.join()
    agent.proc.wait(5)
    assert len(acknowledged) > 5
    second = make_agent()
    c2 = raw(second)
    assert c2.call(p.Unlock(passphrase=TEST_PASSPHRASE)).state == "unlocked"
    got = c2.call(p.GetMany(refs=[f"k/{i}" for i in acknowledged]))
    assert isinstance(got, p.Secrets), got
    assert all(got.values[f"k/{i}"] == f"value-{i}" for i in acknowledged)


def test_the_loop_stays_responsive_during_writes(agent, raw):
    """Writes run on the writer thread: status answers quickly while a writer is busy."""
    c = raw(agent)
    init_unlock(c)
    writer = raw(agent)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            writer.call(p.Set(name=f"w/{i}", value="v"))
            i += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        worst = 0.0
        for _ in range(30):
            started = time.monotonic()
            status(c)
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
    assert worst < 0.25


def _manifest(vault: str) -> bytes | None:
    """The file's sealed manifest: each seal writes a new one, writes never touch it."""
    db = sqlite3.connect(vault)
    try:
        row = db.execute("SELECT blob FROM manifest").fetchone()
        return row and row[0]
    finally:
        db.close()


def test_once_writes_settle_a_crash_keeps_a_current_snapshot(make_agent, raw):
    """The agent seals the metadata chunks `--seal-after` a burst of writes, not only at
    lock, so kill -9 leaves the next unlock its fast path (docs/vault.md)."""
    agent = make_agent("--seal-after", "0.5s")
    c = raw(agent)
    init_unlock(c)
    before = _manifest(agent.vault)
    for i in range(5):
        c.call(p.Set(name=f"s/{i}", value=f"v{i}"))
        assert _manifest(agent.vault) == before  # the seal waits for quiet
    wait_for(lambda: _manifest(agent.vault) != before, timeout=10)
    agent.proc.kill()
    agent.proc.wait(5)
    offline = Vault.open(agent.vault, state_dir=agent.state_dir)
    offline.unlock(TEST_PASSPHRASE)
    assert offline.from_snapshot and offline.entry_count == 5  # nothing decrypted row by row
    offline.close()
    second = make_agent()
    c2 = raw(second)
    assert c2.call(p.Unlock(passphrase=TEST_PASSPHRASE)).state == "unlocked"
    got = c2.call(p.GetMany(refs=[f"s/{i}" for i in range(5)]))
    assert got.values == {f"s/{i}": f"v{i}" for i in range(5)}
