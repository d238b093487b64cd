"""What a program of the same user can do to unlocking (issue 13): re-unlock for a year,
reset the throttle with a restart, or lock the owner out with wrong guesses."""

from __future__ import annotations

import json
import os
import re
import stat
import time

import pytest

from credd import protocol as p
from credd.daemon.state import THROTTLE_FILE, Throttle
from credd.errors import RateLimited
from tests.cli.conftest import run_on_pty
from tests.conftest import FAST_KDF, TEST_PASSPHRASE
from tests.daemon.conftest import status

YEAR = 365 * 86400.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def error(reply: p.Response, code: str) -> p.Error:
    assert isinstance(reply, p.Error) and reply.code == code, reply
    return reply


def locked_vault(agent, raw):
    """A connection to `agent` whose fresh vault is locked."""
    c = raw(agent)
    assert isinstance(c.call(p.Init(passphrase=TEST_PASSPHRASE, **FAST_KDF)), p.RecoveryKey)
    c.call(p.Lock())
    return c


def fail_until(c, failures: int) -> None:
    """Wrong guesses, each once the last one's window has passed (a patient program)."""
    for i in range(failures):
        time.sleep(status(c).retry_after)
        error(c.call(p.Unlock(passphrase=f"wrong {i}")), "bad_passphrase")


class TestThrottleFile:
    """The arithmetic of a throttle kept on disk, on injected clocks."""

    def test_a_new_throttle_picks_up_count_and_window(self, tmp_path):
        path, boot, wall = str(tmp_path / THROTTLE_FILE), Clock(), Clock(1.7e9)
        t = Throttle(boot, path, wall)
        for _ in range(4):
            t.failed()
        assert t.retry_after() == 2.0
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert json.loads(open(path).read()) == {"failures": 4, "until": 1.7e9 + 2.0}
        wall.now += 0.5  # a restart later; the new process's boot clock reads anything
        again = Throttle(Clock(5.0), path, wall)
        assert again.failures == 4 and again.retry_after() == 1.5
        again.failed()  # and it keeps growing from there
        assert again.retry_after() == 4.0
        again.succeeded()
        assert Throttle(Clock(), path, wall).failures == 0

    def test_a_wall_clock_set_back_waits_at_most_the_cap(self, tmp_path):
        path = tmp_path / THROTTLE_FILE
        path.write_text(json.dumps({"failures": 3, "until": 1.7e9 + 1e6}))
        assert Throttle(Clock(), str(path), Clock(1.7e9)).retry_after() == Throttle.CAP

    def test_an_unreadable_file_starts_afresh(self, tmp_path, caplog):
        path = tmp_path / THROTTLE_FILE
        path.write_text("{not json")
        assert Throttle(Clock(), str(path)).failures == 0
        assert "unreadable" in caplog.text

    def test_never_says_zero_seconds(self):
        """issue 12: `retry in 0.0 s` with a window still running."""
        clock = Clock()
        t = Throttle(clock)
        t.failed()
        t.failed()
        clock.now += 0.4999
        assert t.retry_after() == 0.001
        with pytest.raises(RateLimited) as info:
            t.check()
        assert "retry in 0.1 s" in info.value.message and info.value.retry_after == 0.001


class TestThrottleSurvivesARestart:
    def test_stop_and_start_does_not_reset_it(self, make_agent, raw):
        """A client that reaches only the socket can ask the agent to stop, and systemd
        starts a new one on its next connection: that must not buy it fresh guesses."""
        first = make_agent()
        c = locked_vault(first, raw)
        fail_until(c, 5)  # windows of 0.5, 1, 2 and now 4 s
        assert isinstance(c.call(p.Stop()), p.Ok)
        first.proc.wait(10)
        second = make_agent()
        limited = error(raw(second).call(p.Unlock(passphrase=TEST_PASSPHRASE)), "rate_limited")
        assert 0 < limited.retry_after <= 4.0
        text = open(os.path.join(second.state_dir, THROTTLE_FILE)).read()
        assert TEST_PASSPHRASE not in text and "wrong" not in text  # a count and a time only


class TestTheOwnerIsNotLockedOut:
    def test_an_unlock_typed_at_a_terminal_waits_out_the_window(self, agent, raw):
        owner, program = locked_vault(agent, raw), raw(agent)
        fail_until(program, 3)  # a script with a stale passphrase: a 1 s window
        # a non-interactive caller, even with the right passphrase, is refused at once
        limited = error(owner.call(p.Unlock(passphrase=TEST_PASSPHRASE)), "rate_limited")
        assert limited.retry_after > 0 and "retry in 0.0 s" not in limited.message
        started = time.monotonic()
        owner.send(p.Unlock(passphrase=TEST_PASSPHRASE, wait=True))
        time.sleep(0.1)
        # while the owner waits, the program's guesses are refused, not queued
        asked = time.monotonic()
        error(program.call(p.Unlock(passphrase="wrong again")), "rate_limited")
        assert time.monotonic() - asked < 0.5
        reply = owner.recv()
        waited = time.monotonic() - started
        assert isinstance(reply, p.StatusReply) and reply.state == "unlocked", reply
        assert 0.3 < waited < Throttle.CAP
        assert status(owner).retry_after == 0  # a success resets it

    def test_credd_unlock_on_a_terminal_says_it_waits_and_gets_in(self, agent, raw, credd_env):
        program = locked_vault(agent, raw)
        fail_until(program, 4)  # a 2 s window: room for the CLI to start within it
        code, shown = run_on_pty(["unlock"], credd_env, [TEST_PASSPHRASE])
        assert code == 0, shown
        assert re.search(r"throttled after failed attempts; trying yours in [12]s", shown), shown
        assert "unlocked: locks after" in shown

    def test_credd_unlock_from_a_pipe_is_refused_with_a_nonzero_wait(self, agent, raw,
                                                                    run_credd):
        program = locked_vault(agent, raw)
        fail_until(program, 4)
        done = run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE)
        assert done.returncode == 1, done.stderr
        assert "retry in" in done.stderr and "retry in 0.0 s" not in done.stderr
        assert re.search(r"wait [12]s before trying again", done.stderr), done.stderr


class TestUnlockCap:
    def test_a_year_gets_the_default_8h_and_says_so(self, agent, raw):
        c = locked_vault(agent, raw)
        reply = c.call(p.Unlock(passphrase=TEST_PASSPHRASE, idle_timeout=YEAR, max_lifetime=YEAR))
        assert isinstance(reply, p.StatusReply) and reply.capped, reply
        assert reply.idle_timeout == reply.max_lifetime == 8 * 3600
        assert reply.lifetime_left <= 8 * 3600
        assert status(c).capped
        reply = c.call(p.Unlock(passphrase=TEST_PASSPHRASE, idle_timeout=60))
        assert not reply.capped and reply.idle_timeout == 60 and reply.max_lifetime == 8 * 3600

    def test_max_unlock_caps_the_idle_timeout_and_the_defaults(self, make_agent, raw):
        agent = make_agent("--max-unlock", "10m")
        c = locked_vault(agent, raw)
        assert status(c).idle_timeout == status(c).max_lifetime == 600  # the defaults, capped
        reply = c.call(p.Unlock(passphrase=TEST_PASSPHRASE, idle_timeout=3600))
        assert reply.capped and reply.idle_timeout == 600

    def test_the_owners_own_longer_deadlines_stay_allowed(self, make_agent, raw):
        agent = make_agent("--max-lifetime", "12h")
        c = locked_vault(agent, raw)
        reply = c.call(p.Unlock(passphrase=TEST_PASSPHRASE))
        assert not reply.capped and reply.max_lifetime == 12 * 3600

    def test_credd_unlock_prints_what_it_got(self, agent, raw, run_credd):
        locked_vault(agent, raw)
        done = run_credd("unlock", "--passphrase-stdin", "--timeout", "365d",
                         input=TEST_PASSPHRASE)
        assert done.returncode == 0, done.stderr
        assert ("asked for 365d; the agent allows at most 8h (credd serve --max-unlock)"
                in done.stderr)
        assert "locks after 8h idle, 8h at most" in done.stdout

