"""Whatever a client sends, the agent answers or closes that one connection, and keeps serving."""

from __future__ import annotations

import time

import pytest

from credd import protocol as p
from tests.daemon.conftest import Raw, status

H = p.HEADER.pack
STATUS = p.encode(p.Status())


def frame(body: bytes) -> bytes:
    return H(len(body)) + body


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


# (id, bytes to send, what must happen: "answer" = a bad_request reply on a connection that
#  stays usable, "close" = a bad_request reply or none, then the connection closed at once:
#  well before the agent's read timeout, which would close it anyway)
TABLE = [
    ("length-0", H(0), "answer"),
    ("length-1", frame(b"\xc0"), "answer"),
    ("length-cap", frame(b"\xc5\xff\xfc" + b"x" * (p.MAX_FRAME - 3)), "answer"),
    ("length-cap+1", H(p.MAX_FRAME + 1) + b"x" * 64, "close"),
    ("length-2^31", H(2**31), "close"),
    ("length-2^32-1", H(2**32 - 1), "close"),
    ("invalid-msgpack", frame(b"\xc1\xc1"), "answer"),
    ("invalid-utf8", frame(b"\x82\xa4type\xa3get\xa4name\xa2\xff\xfe"), "answer"),
    ("deep-nesting-100k", frame(nested(100_000)), "answer"),
    ("not-a-map", frame(b"\x93\x01\x02\x03"), "answer"),
    ("unknown-tag", frame(b"\x81\xa4type\xa4nope"), "answer"),
    ("no-tag", frame(b"\x81\xa4name\xa1a"), "answer"),
    ("unknown-field", frame(b"\x82\xa4type\xa6status\xa3foo\x01"), "answer"),
    ("wrong-type", frame(b"\x82\xa4type\xa3get\xa4name\x01"), "answer"),
    ("duplicate-key", frame(b"\x83\xa4type\xa3get\xa4name\xa1a\xa4name\xa1b"), "answer"),
    ("trailing-byte", frame(b"\x81\xa4type\xa6status\x00"), "answer"),
    ("huge-container-header", frame(b"\xdd\xff\xff\xff\xff"), "answer"),
    ("ext-type", frame(b"\xd4\x01\x00"), "answer"),
    ("negative-ttl", p.encode(p.Unlock(passphrase="x", idle_timeout=-1.0)), "answer"),
    ("2^63-limit", frame(b"\x82\xa4type\xa5audit\xa5limit\xcf" + (2**63).to_bytes(8, "big")),
     "answer"),
]


@pytest.mark.parametrize("data, outcome", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_bad_frame(agent, raw, data, outcome):
    c = raw(agent)
    started = time.monotonic()
    c.send(data)
    if outcome == "answer":
        reply = c.recv()
        assert isinstance(reply, p.Error) and reply.code == "bad_request", reply
        assert status(c).state == "no_vault"  # the same connection still works
    else:
        c.sock.settimeout(1)
        reply = c.recv()
        assert reply is None or (isinstance(reply, p.Error) and reply.code == "bad_request")
        assert c.closed_within(1)
        # the frame cap, not the read timeout (10 s here), closed it
        assert time.monotonic() - started < 1.0
    assert status(raw(agent)).pid == agent.pid  # and so does a fresh one


def test_split_header_and_one_byte_per_send(agent, raw):
    c = raw(agent)
    c.send(STATUS[:2])
    time.sleep(0.2)
    c.send(STATUS[2:])
    assert isinstance(c.recv(), p.StatusReply)
    for byte in STATUS:
        c.send(bytes([byte]))
    assert isinstance(c.recv(), p.StatusReply)


def test_pipelined_frames_answered_in_order(agent, raw):
    c = raw(agent)
    c.send(STATUS + frame(b"\xc1") + p.encode(p.Get(name="x")) + STATUS)
    replies = [c.recv() for _ in range(4)]
    assert [type(r) for r in replies] == [p.StatusReply, p.Error, p.Error, p.StatusReply]
    assert [r.code for r in replies[1:3]] == ["bad_request", "no_vault"]


@pytest.mark.parametrize("data", [STATUS[:2], STATUS[:7]], ids=["mid-header", "mid-body"])
def test_eof_mid_frame(agent, raw, data):
    c = raw(agent)
    c.send(data)
    c.sock.shutdown(1)
    assert c.closed_within(2)
    assert isinstance(raw(agent).call(p.Status()), p.StatusReply)


def test_garbage_lock_frame_leaves_the_vault_as_it_was(agent, raw):
    from tests.daemon.conftest import init_unlock
    c = raw(agent)
    init_unlock(c)
    assert c.call(frame(b"\x82\xa4type\xa4lock\xa3now\xc3")).code == "bad_request"
    assert status(c).state == "unlocked"
    assert isinstance(c.call(p.Lock()), p.Ok) and status(c).state == "locked"


def test_stalled_half_frames_do_not_starve_the_owner(make_agent, raw):
    agent = make_agent("--read-timeout", "2s")
    stalled = []
    for _ in range(200):
        conn = Raw(agent.socket, timeout=5)
        conn.send(STATUS[:1])
        stalled.append(conn)
    try:
        started = time.monotonic()
        c = raw(agent, greet=False, timeout=1)
        c.hello()
        assert isinstance(c.call(p.Status()), p.StatusReply)
        assert time.monotonic() - started < 1.0
        time.sleep(2.5)  # past the read timeout, every stalled connection is gone
        assert all(conn.closed_within(0.5) for conn in stalled[-20:])
        assert isinstance(c.call(p.Status()), p.StatusReply)  # a greeted connection may idle
    finally:
        for conn in stalled:
            conn.close()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_client_that_never_reads_cannot_grow_the_agent(make_agent, raw):
    from tests.daemon.conftest import init_unlock
    agent = make_agent("--read-timeout", "2s")
    c = raw(agent)
    init_unlock(c)
    c.call(p.Set(name="big", fields=[p.Field(name="blob", value="x" * 60_000, secret=False)]))
    before = _rss_kib(agent.pid)
    hog = raw(agent)
    hog.sock.setblocking(False)
    request, sent, blocked_since = p.encode(p.Describe(name="big")), 0, None
    while sent < 50_000:  # 1.5 MB of requests, 3 GB of replies if the agent buffered them
        try:
            hog.sock.send(request)
            sent, blocked_since = sent + 1, None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 0.5:
                break  # the agent stopped reading requests it cannot answer
            time.sleep(0.01)
    assert sent < 50_000
    assert isinstance(raw(agent).call(p.Status()), p.StatusReply)
    assert _rss_kib(agent.pid) - before < 32 * 1024
    time.sleep(2.5)  # its replies stall longer than the read timeout: it is dropped
    hog.sock.setblocking(True)
    assert hog.closed_within(5)


def test_connection_cap(make_agent, raw):
    agent = make_agent("--max-connections", "2", "--read-timeout", "5s")
    first, second = raw(agent), raw(agent)
    third = raw(agent, greet=False)
    assert third.closed_within(2)  # both slots hold greeted connections: refused
    first.close()
    time.sleep(0.2)
    newcomer = raw(agent, greet=False)
    newcomer.send(STATUS[:1])  # a stalled stranger holds the freed slot ...
    time.sleep(0.2)
    late = raw(agent)  # ... and is dropped to make room for a newcomer
    assert isinstance(late.call(p.Status()), p.StatusReply)
    assert newcomer.closed_within(2)
    assert isinstance(second.call(p.Status()), p.StatusReply)
