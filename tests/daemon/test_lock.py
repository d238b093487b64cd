"""The lock lifecycle: idle and absolute deadlines, per-unlock overrides, signals."""

from __future__ import annotations

import os
import signal
import time

import pytest

from credd import protocol as p
from credd.daemon.state import Deadlines, Throttle, boottime
from tests.conftest import TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status, wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestDeadlineLogic:
    """The deadline and throttle arithmetic, on an injected clock."""

    def test_use_slides_idle_until_the_lifetime(self):
        clock = FakeClock()
        d = Deadlines(clock)
        d.start(idle=10, lifetime=35)
        for _ in range(3):  # a use every 0.9 × idle keeps it open ...
            clock.now += 9
            assert d.expired() is None
            d.touch()
        clock.now += 9  # ... until the absolute maximum
        assert d.expired() == "lifetime" and d.left() == (1.0, 0.0)

    def test_without_use_idle_expires(self):
        clock = FakeClock()
        d = Deadlines(clock)
        d.start(idle=10, lifetime=100)
        clock.now += 9.99
        assert d.expired() is None
        clock.now += 0.01
        assert d.expired() == "idle"

    def test_throttle_grows_and_resets(self):
        clock = FakeClock()
        t = Throttle(clock)
        t.failed()
        t.check()  # the first failure is free
        waits = []
        for _ in range(9):
            t.failed()
            waits.append(t.retry_after())
        assert waits == sorted(waits) and waits[0] == 0.5 and waits[-1] == Throttle.CAP
        with pytest.raises(Exception) as info:
            t.check()
        assert info.value.code == "rate_limited" and info.value.retry_after > 0
        clock.now += Throttle.CAP
        t.check()
        t.succeeded()
        t.failed()
        t.check()

    def test_clock_counts_suspend(self):
        if not hasattr(time, "CLOCK_BOOTTIME"):
            pytest.skip("no CLOCK_BOOTTIME here")
        monotonic = time.clock_gettime(time.CLOCK_MONOTONIC)
        now = boottime()
        assert now >= monotonic and abs(now - time.clock_gettime(time.CLOCK_BOOTTIME)) < 0.1


class TestTimeouts:
    def test_status_does_not_slide_idle(self, make_agent, raw):
        agent = make_agent("--idle-timeout", "1s")
        c = raw(agent)
        init_unlock(c)
        started = time.monotonic()
        while time.monotonic() - started < 3:
            s = status(c)
            if s.state == "locked":
                break
            time.sleep(0.1)
        assert s.state == "locked" and 0.9 <= time.monotonic() - started < 2.5

    def test_use_slides_idle(self, make_agent, raw):
        agent = make_agent("--idle-timeout", "1.5s")
        c = raw(agent)
        init_unlock(c)
        c.call(p.Set(name="a", value="v"))
        for _ in range(5):  # 2 s of use, 0.4 s apart
            time.sleep(0.4)
            assert isinstance(c.call(p.Get(name="a")), p.Secret)
        time.sleep(1.6)
        assert c.call(p.Get(name="a")).code == "locked"

    def test_lifetime_is_absolute_and_the_watchdog_locks_unasked(self, make_agent, raw):
        agent = make_agent("--max-lifetime", "2s")
        c = raw(agent)
        events = raw(agent)
        events.call(p.Subscribe())
        init_unlock(c)
        started = time.monotonic()
        while time.monotonic() - started < 1.6:
            assert isinstance(c.call(p.List()), p.Entries)
            time.sleep(0.2)
        assert p.decode_event(events.recv_body()) == p.Unlocked()
        assert p.decode_event(events.recv_body()) == p.Locked(reason="lifetime")
        assert 1.9 <= time.monotonic() - started < 3.0
        assert status(c).state == "locked"

    def test_per_unlock_overrides(self, agent, raw):
        c = raw(agent)
        init_unlock(c)
        c.call(p.Lock())
        s = c.call(p.Unlock(passphrase=TEST_PASSPHRASE, idle_timeout=1, max_lifetime=60.0))
        assert (s.idle_timeout, s.max_lifetime) == (1.0, 60.0)
        time.sleep(1.2)
        assert status(c).state == "locked"
        for bad in ({"idle_timeout": 0}, {"idle_timeout": -5.0}, {"max_lifetime": float("inf")},
                    {"max_lifetime": 1e12}, {"idle_timeout": float("nan")}):
            reply = c.call(p.Unlock(passphrase=TEST_PASSPHRASE, **bad))
            assert isinstance(reply, p.Error) and reply.code == "bad_request", bad
        assert status(c).state == "locked"
        s = c.call(p.Unlock(passphrase=TEST_PASSPHRASE))  # back to the agent's defaults
        assert (s.idle_timeout, s.max_lifetime) == (15 * 60.0, 8 * 3600.0)


class TestSignals:
    def test_sigusr1_locks(self, agent, raw):
        c = raw(agent)
        init_unlock(c)
        agent.signal(signal.SIGUSR1)
        wait_for(lambda: status(c).state == "locked", 3)
        assert agent.proc.poll() is None

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    def test_term_locks_and_exits_cleanly(self, agent, raw, sig):
        c = raw(agent)
        events = raw(agent)
        events.call(p.Subscribe())
        init_unlock(c)
        assert p.decode_event(events.recv_body()) == p.Unlocked()
        started = time.monotonic()
        agent.signal(sig)
        assert agent.proc.wait(5) == 0 and time.monotonic() - started < 2
        assert p.decode_event(events.recv_body()) == p.Locked(reason="shutdown")
        assert not os.path.exists(agent.socket)
        assert os.path.exists(agent.socket + ".lock")  # never removed: see listener.py
        assert "locked (shutdown)" in agent.log()
