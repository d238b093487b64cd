"""The lifecycle requests over raw frames: each reply, bad input, and nothing while locked."""

from __future__ import annotations

import math

import pytest

from credd import protocol as p
from tests.conftest import SENTINEL
from tests.daemon.conftest import init_unlock
from tests.daemon.test_requests import error, put


@pytest.fixture
def conn(agent, raw):
    c = raw(agent)
    init_unlock(c)
    return c


def lifecycle_requests(name: str) -> list[p._Message]:
    return [p.Due(), p.Fingerprint(name=name), p.Inspect(name=name), p.Policy(),
            p.Rotate(name=name, value="v2-value"), p.GetPending(name=name),
            p.RotateFinish(name=name), p.RotateAbandon(name=name),
            p.RecordVerification(name=name, outcome="ok"), p.Incident(name=name)]


def test_each_request_gets_the_reply_it_names(conn):
    put(conn, "e", value=SENTINEL)
    requests = [
        p.Due(), p.Fingerprint(name="e"), p.Inspect(name="e"), p.Policy(),
        p.Rotate(name="e", value="v2-value"), p.GetPending(name="e"),
        p.RotateFinish(name="e"), p.Rotate(name="e", value="v3-value"),
        p.RotateAbandon(name="e"), p.RecordVerification(name="e", outcome="failed",
                                                        exit_status=1, seconds=0.1)]
    replies = [conn.call(r) for r in requests]
    for request, reply in zip(requests, replies):
        assert type(reply) is p.REPLY[type(request)], (request, reply)
    assert replies[5].value == "v2-value"
    assert replies[6].entry.version == 2 and replies[6].entry.pending is None
    assert replies[7].entry.pending is not None and replies[8].entry.pending is None


@pytest.mark.parametrize("request_", [
    p.Due(within=-1.0), p.Due(unused=math.inf), p.Due(now=math.nan),
    p.RecordVerification(name="e", outcome="ok", seconds=-1.0),
    p.Rotate(name="e", value="")])
def test_bad_input_is_refused(conn, request_):
    put(conn, "e", value="v")
    error(conn.call(request_), "bad_request")


def test_incident_marks_the_entry_and_names_no_value(conn):
    put(conn, "e", value=SENTINEL)
    put(conn, "twin", value=SENTINEL)
    conn.send(p.Incident(name="e"))
    body = conn.recv_body()
    assert SENTINEL.encode() not in body
    report = p.decode_response(body)
    assert type(report) is p.IncidentReport and report.entry.compromised is not None
    assert [n for r in report.shared for n in r.names] == ["twin"]
    error(conn.call(p.Incident(name="absent")), "not_found")
    error(conn.call(p.Incident(name="e", since=math.nan)), "bad_request")


def test_unknown_outcome_is_undecodable(conn):
    body = p._encoder.encode({"type": "record_verification", "name": "e", "outcome": "great"})
    error(conn.call(p.HEADER.pack(len(body)) + body), "bad_request")


def test_a_locked_agent_answers_locked_and_names_nothing(conn):
    put(conn, "secret-name-1", value=SENTINEL)
    conn.call(p.Lock())
    for request in lifecycle_requests("secret-name-1"):
        conn.send(request)
        body = conn.recv_body()
        assert b"secret-name-1" not in body and SENTINEL.encode() not in body
        error(p.decode_response(body), "locked")


def test_lock_drops_the_fingerprints(tmp_path):
    """Fingerprints are decrypted data: a lock forgets them, the next unlock starts anew."""
    import asyncio
    import os

    from credd.daemon import handlers as h
    from credd.daemon.binding import OWNER
    from credd.daemon.peer import Peer
    from credd.daemon.state import AgentState, Config
    from tests.conftest import FAST_KDF, TEST_PASSPHRASE

    class Conn:
        greeted, subscription, binding = True, None, OWNER
        peer = Peer(uid=os.geteuid(), pid=os.getpid())

    async def scenario() -> None:
        config = Config(socket=str(tmp_path / "s.sock"), vault=str(tmp_path / "v" / "vault.db"),
                        state_dir=str(tmp_path / "state"))
        state = AgentState(config)
        try:
            await h.init(state, Conn(), p.Init(passphrase=TEST_PASSPHRASE, **FAST_KDF))
            await h.unlock(state, Conn(), p.Unlock(passphrase=TEST_PASSPHRASE))
            key = state.store().audit_key
            first = state.lifecycle.fingerprints(key)
            assert state.lifecycle.fingerprints(key) is first  # kept while unlocked
            state.lock("request")
            await h.unlock(state, Conn(), p.Unlock(passphrase=TEST_PASSPHRASE))
            assert state.lifecycle.fingerprints(key) is not first
        finally:
            await state.close()

    asyncio.run(scenario())
