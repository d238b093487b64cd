"""The agent's error paths that ordinary requests do not reach, each through a real agent:
an unexpected exception in a handler, a reply too big for a frame, accept() failing with
EMFILE, a lock arriving while the unlock KDF runs, process hardening that fails, and
`credd check` finding damage."""

from __future__ import annotations

import os
import resource
import sqlite3
import threading
import time

import pytest

from credd import errors
from credd import protocol as p
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status, wait_for
from tests.daemon.inject import agent_running

#: A bug in a read (sync handler) and in a write (on the writer thread), for one name only;
#: the exception's message holds a secret, which must reach neither the reply nor the log.
FAULTY_VAULT = f"""
from credd.vault.vault import Vault

def _faulty(method):
    def wrapped(self, request_or_name, *args, **kwargs):
        name = getattr(request_or_name, "name", request_or_name)
        if name == "boom":
            raise RuntimeError("{SENTINEL}")
        return method(self, request_or_name, *args, **kwargs)
    return wrapped

Vault.describe, Vault.put = _faulty(Vault.describe), _faulty(Vault.put)
"""


def test_an_unexpected_exception_is_an_internal_reply_that_names_no_data(
        make_agent, credd_env, tmp_path, raw):
    agent = agent_running(make_agent, credd_env, tmp_path, FAULTY_VAULT)
    conn = raw(agent)
    init_unlock(conn)
    for request in (p.Describe(name="boom"), p.Set(name="boom", value="v")):
        conn.send(request)
        body = conn.recv_body()
        assert body is not None and SENTINEL.encode() not in body
        reply = p.decode_response(body)
        assert isinstance(reply, p.Error) and reply.code == "internal", reply
        assert reply.message == "internal error (RuntimeError) in the agent; see its log"
        assert status(conn).state == "unlocked"  # the same connection goes on
    log = agent.log()
    assert "internal error RuntimeError at" in log and "handling describe" in log
    assert "handling set" in log  # the writer thread's path too; SENTINEL checked at teardown
    with agent.client() as c, pytest.raises(errors.InternalError, match="see its log"):
        c.describe("boom")


def test_a_reply_too_big_for_a_frame_is_an_error_not_a_broken_stream(unlocked_agent, raw):
    half = "x" * (p.MAX_FRAME * 6 // 10)  # each write fits in a frame, both together do not
    with unlocked_agent.client() as c:
        c.set("big", value=half)
        c.set("big", fields=[p.Field(name="more", value=half)], merge=True)
    conn = raw(unlocked_agent)
    reply = conn.call(p.Reveal(name="big"))
    assert isinstance(reply, p.Error) and reply.code == "internal"
    assert reply.message == "the reply exceeds the frame limit"
    assert conn.call(p.Get(name="big")).value == half  # one half still comes back
    assert status(conn).state == "unlocked"


def test_accept_failing_with_emfile_keeps_the_agent_serving(agent, raw):
    """With its file descriptors used up, the agent cannot accept: it says so, backs off,
    and serves the waiting client as soon as a descriptor is free."""
    first = raw(agent)
    open_now = len(os.listdir(f"/proc/{agent.pid}/fd"))
    resource.prlimit(agent.pid, resource.RLIMIT_NOFILE, (open_now + 1, open_now + 1))
    last = raw(agent)                           # takes the last descriptor
    waiting = raw(agent, greet=False)           # in the listen backlog: accept() fails
    waiting.send(p.Hello(protocol=p.PROTOCOL_VERSION, client="late"))
    wait_for(lambda: "accept failed: Too many open files" in agent.log(), 10)
    assert status(first).pid == agent.pid       # connections already made are served
    last.close()                                # one descriptor free again
    assert isinstance(waiting.recv(), p.Welcome)
    assert status(waiting).pid == agent.pid


def test_a_lock_during_the_unlock_kdf_wins(agent):
    """The KDF runs on the writer thread; a lock that arrives meanwhile is not undone by
    the unlock finishing after it."""
    with agent.client() as c:
        c.init(TEST_PASSPHRASE, kdf_memory_kib=128 * 1024, kdf_iterations=4, kdf_lanes=1)
        c.lock()
    outcome: list[object] = []

    def unlock() -> None:
        with agent.client(timeout=60) as c:
            try:
                outcome.append(c.unlock(TEST_PASSPHRASE))
            except errors.CreddError as exc:
                outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=unlock)
    thread.start()
    time.sleep(0.3)
    with agent.client() as c:
        c.lock()
    thread.join(60)
    assert outcome and isinstance(outcome[0], errors.LockedError), outcome
    assert "locked while unlocking" in str(outcome[0])
    assert time.monotonic() - started > 0.3  # the unlock was still running at the lock
    with agent.client() as c:
        assert c.status().state == "locked"
        assert c.unlock(TEST_PASSPHRASE).state == "unlocked"  # and a later unlock works


#: prctl as a kernel that refuses it (EPERM): the one step no test machine fails by itself.
PRCTL_REFUSED = """
import ctypes, errno
import credd.daemon.hardening as hardening

class _RefusingLibc:
    def prctl(self, *args):
        ctypes.set_errno(errno.EPERM)
        return -1

hardening._libc = lambda: _RefusingLibc()
"""


def test_failed_hardening_refuses_to_start_unless_insecure_memory_is_allowed(
        make_agent, credd_env, tmp_path, raw):
    refused = agent_running(make_agent, credd_env, tmp_path, PRCTL_REFUSED, start=False)
    refused.start(wait=False)
    assert refused.proc.wait(30) != 0
    log = refused.log()
    assert "process hardening failed" in log and "--allow-insecure-memory" in log
    assert "refusing to hold secrets" in log

    allowed = agent_running(make_agent, credd_env, tmp_path, PRCTL_REFUSED,
                            "--allow-insecure-memory")
    assert status(raw(allowed)).pid == allowed.pid
    assert "continuing: --allow-insecure-memory" in allowed.log()


def test_credd_check_reports_damage_through_the_cli(unlocked_agent, run_credd):
    with unlocked_agent.client() as c:
        c.set("fine", value="ok-123456")
        c.set("damaged", value="will-be-flipped")
    r = run_credd("check")
    assert r.returncode == 0 and "checked 2 entries: ok" in r.stdout, r.stdout + r.stderr
    db = sqlite3.connect(unlocked_agent.vault, isolation_level=None)
    row_id, secret = db.execute("SELECT id, secret FROM entries LIMIT 1").fetchone()
    flipped = bytes([secret[0] ^ 1]) + secret[1:]
    db.execute("UPDATE entries SET secret = ? WHERE id = ?", (flipped, row_id))
    db.close()
    r = run_credd("check")
    assert r.returncode == errors.IntegrityError.exit_code, r.stdout + r.stderr
    assert "problem:" in r.stdout and "checked 2 entries: 1 problem" in r.stdout
    assert "the vault failed its check" in r.stderr
    r = run_credd("check", "--json")
    assert r.returncode == errors.IntegrityError.exit_code and '"problems"' in r.stdout
