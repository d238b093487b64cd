"""Attack 2: mutated request bodies, OpenSSH `agent_fuzz` style, over the real socket.

A corpus of real request frames (one per request type) is mutated by Hypothesis: byte
flips, insertions of awkward MessagePack tokens (NaN, 2^63, ext types, huge container
headers, invalid UTF-8, deep nesting), deletions and truncations; a second strategy
builds well-formed maps with the right tag and wrongly typed or out-of-range fields.
The framing stays correct, so each body is judged by the strict decoder itself:

- a body the protocol rejects gets `bad_request` and the connection stays usable;
- a body that still decodes gets a typed reply, never `internal` (an unexpected
  exception in the agent is a bug, even when it is caught);
- the agent survives and the vault's contents and lock state are unchanged.
"""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from credd import protocol as p
from tests.conftest import SENTINEL
from tests.security.conftest import Raw, status

CORPUS = [
    p.Hello(protocol=1, client="fuzz"), p.Status(), p.Get(name="svc/a"),
    p.Get(name="svc/a", field="user"), p.GetMany(refs=["credd://svc/a", "credd://b"]),
    p.Reveal(name="svc/a", version=1), p.Describe(name="b"), p.List(prefix="svc", limit=5),
    p.List(service="x", kind="password", tag="t", contains="a", due=True, cursor="a"),
    p.Trash(), p.History(name="b"), p.Audit(limit=3), p.Check(),
    p.Unlock(passphrase="pw", idle_timeout=60.0, max_lifetime=600.0),
    p.Init(passphrase="pw", kdf_memory_kib=19456, kdf_iterations=2, kdf_lanes=1),
    p.Set(name="svc/a", value=SENTINEL, fields=[p.Field(name="user", value="u", secret=False)],
          tags=["t"], rotate_after=86400.0, expires=2e9, mode="update", merge=True),
    p.Delete(name="b"), p.Undelete(name="b"), p.Purge(name="b"), p.Move(old="b", new="c"),
    p.Restore(name="b", version=1), p.ChangePassphrase(old="a", new="b"),
    p.AddKeySlot(key=b"k" * 32, label="keyring", proof="pw"),
    p.RemoveKeySlot(label="x", proof="pw"), p.Slots(), p.Rekey(proof="pw"), p.Lock(), p.Stop(),
    p.Subscribe(),
]
BODIES = [p.encode(m)[4:] for m in CORPUS]

TOKENS = [
    b"\xc1",                                   # never used
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",   # NaN
    b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00",   # +inf
    b"\xca\x7f\xc0\x00\x00",                   # float32 NaN (not canonical)
    b"\xcf\x80\x00\x00\x00\x00\x00\x00\x00",   # 2^63
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",   # 2^64 - 1
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",   # -2^63
    b"\xdf\xff\xff\xff\xff",                   # map of 2^32-1 entries
    b"\xdd\xff\xff\xff\xff",                   # array of 2^32-1 items
    b"\xdb\xff\xff\xff\xff",                   # str of 4 GiB
    b"\xc6\xff\xff\xff\xff",                   # bin of 4 GiB
    b"\xd4\x01\x00", b"\xc7\x00\x05", b"\xd6\xff\x00\x00\x00\x00",  # ext, timestamp ext
    b"\xa2\xff\xfe", b"\xa3\xed\xa0\x80",      # invalid UTF-8, a UTF-8 surrogate
    b"\x91" * 1000 + b"\xc0",                  # deep nesting
    b"\xc0", b"\xc2", b"\xc3", b"\x00", b"\xff",
]

#: Requests that would change the agent's state (or take the connection over) if a
#: mutation happened to produce a valid one; they are skipped (this test is about invalid
#: bodies changing nothing).
CHANGING = (p.Init, p.Unlock, p.Lock, p.ChangePassphrase, p.Set, p.Delete, p.Undelete,
            p.Purge, p.Move, p.Restore, p.AddKeySlot, p.RemoveKeySlot, p.Rekey,
            p.Subscribe, p.Stop, p.VerifyBackup, p.RestoreBackup)

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.sampled_from(TOKENS)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("replace"), st.integers(0, 1 << 16), st.sampled_from(TOKENS)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
)


def mutate(body: bytes, ops: list[tuple]) -> bytes:
    data = bytearray(body)
    for kind, offset, arg in ops:
        at = offset % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= arg
        elif kind == "insert":
            data[at:at] = arg
        elif kind == "replace":
            data[at:at + len(arg)] = arg
        elif kind == "delete":
            del data[at:at + arg]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.binary(max_size=20), st.sampled_from(["", SENTINEL, "a" * 300, "x/../y", "\u202e"]),
)
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
FIELDS = sorted({f for m in CORPUS for f in type(m).__struct_fields__} | {"bogus"})


@st.composite
def typed_body(draw) -> bytes:
    """A canonical map with a real tag and fields of any shape."""
    msg: dict = {"type": draw(st.sampled_from(sorted(p.REQUEST_TYPES)))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        msg[name] = draw(value)
    return msgspec.msgpack.encode(msg)


def local_verdict(body: bytes):
    """What the protocol makes of `body`: a request, or None when it must be refused."""
    try:
        return p.decode_request(body)
    except p.FrameError:
        return None


def fingerprint(conn: Raw) -> tuple:
    s = status(conn)
    listing = conn.call(p.List())
    trash = conn.call(p.Trash())
    return (s.state, [(e.name, e.version, e.updated) for e in listing.entries],
            [(e.name, e.version) for e in trash.entries])


@pytest.fixture
def rig(unlocked_agent):
    with unlocked_agent.client() as c:
        c.set("svc/a", value=SENTINEL, fields=[p.Field(name="user", value="u", secret=False)])
        c.set("b", value="two")
        c.set("b", value="three")
        c.delete("b")
    control = Raw(unlocked_agent.socket).hello()
    victim = Raw(unlocked_agent.socket).hello()
    yield unlocked_agent, control, victim, fingerprint(control)
    control.close()
    victim.close()


def _skipped(expected) -> bool:
    return isinstance(expected, CHANGING)


def _check(rig, body: bytes) -> None:
    agent, control, victim, before = rig
    expected = local_verdict(body)
    if len(body) == 0:
        victim.send(p.HEADER.pack(0))
    else:
        victim.send(p.HEADER.pack(len(body)) + body)
    reply_body = victim.recv_body()
    assert reply_body is not None, "the agent closed a connection whose framing was intact"
    reply = p.decode_response(reply_body)
    if expected is None:
        assert isinstance(reply, p.Error) and reply.code == "bad_request", reply
        assert SENTINEL.encode() not in reply_body
    elif isinstance(reply, p.Error):
        assert reply.code != "internal", f"{expected!r} crashed a handler: {reply.message}"
    assert isinstance(victim.call(p.Status()), p.StatusReply)  # the connection survives
    assert fingerprint(control) == before
    assert agent.proc.poll() is None


SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.filter_too_much])


@SETTINGS
@given(base=st.sampled_from(BODIES), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_frames_get_typed_errors_and_change_nothing(rig, base, ops):
    body = mutate(base, ops)
    assume(not _skipped(local_verdict(body)))
    _check(rig, body)


@SETTINGS
@given(body=typed_body())
def test_wrongly_typed_fields_get_typed_errors_and_change_nothing(rig, body):
    assume(not _skipped(local_verdict(body)))
    _check(rig, body)


def test_nan_and_huge_numbers_in_every_numeric_field(rig):
    """The numeric fields one by one with NaN, ±inf, -1, 2^63 and 2^64-1."""
    numeric = [(p.Unlock, "idle_timeout"), (p.Unlock, "max_lifetime"), (p.List, "limit"),
               (p.Audit, "limit"), (p.Restore, "version"), (p.Reveal, "version"),
               (p.Set, "rotate_after"), (p.Set, "expires"), (p.Init, "kdf_memory_kib"),
               (p.Init, "kdf_iterations"), (p.Init, "kdf_lanes"), (p.Hello, "protocol")]
    required = {p.Reveal: {"name": "svc/a"}, p.Restore: {"name": "b"}, p.Set: {"name": "n"},
                p.Init: {"passphrase": "x"}, p.Unlock: {"passphrase": "x"}}
    for cls, field in numeric:
        for number in (math.nan, math.inf, -math.inf, -1, 2**63, 2**64 - 1, -(2**63)):
            msg = {"type": p.tag_of(cls), **required.get(cls, {}), field: number}
            body = msgspec.msgpack.encode(msg)
            if _skipped(local_verdict(body)):
                continue  # a valid state change: not what this test is about
            _check(rig, body)
