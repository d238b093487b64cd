"""An acknowledged write survives kill -9; slow writes do not stall other clients."""

from __future__ import annotations

import threading
import time

from credd import protocol as p
from tests.conftest import TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status


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
