"""Attack 5: well-framed requests whose fields are hostile.

Names with NUL, `/`, `..`, control and bidi characters, a 1 MB name; passphrases of
100 MB or of the wrong type; TTLs, versions and times out of range. Each must get a
validation error (never `internal`, never a crash), lose nothing, and the agent must
not touch any file outside the vault and state directories: names are HMACed into
row ids, never used as paths (the CVE-2023-38408 lesson: never open what a peer names).
"""

from __future__ import annotations

import math
import os
import time
import unicodedata

import msgspec
import pytest

from credd import protocol as p
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE
from tests.security.conftest import Raw, init_unlock, rss_kib, status, tree

BAD_NAMES = {
    "nul": "a\x00b", "nul-only": "\x00", "absolute": "/etc/passwd", "dotdot": "../../etc/passwd",
    "inner-dotdot": "a/../b", "dot": ".", "dotdot-only": "..", "double-slash": "a//b",
    "trailing-slash": "a/", "newline": "a\nb", "escape": "a\x1b[2Jb", "del": "a\x7fb",
    "rtl-override": "evil\u202etxt.exe", "zero-width": "pay\u200bpal", "bom": "\ufeffname",
    "line-separator": "a\u2028b", "space-padded": " a", "empty": "", "one-mb": "n" * 1_000_000,
}
NAMED = [
    lambda n: p.Set(name=n, value=SENTINEL), lambda n: p.Get(name=n),
    lambda n: p.Describe(name=n), lambda n: p.Reveal(name=n), lambda n: p.Delete(name=n),
    lambda n: p.Undelete(name=n), lambda n: p.Purge(name=n), lambda n: p.History(name=n),
    lambda n: p.Restore(name=n, version=1), lambda n: p.Move(old="ok", new=n),
    lambda n: p.Move(old=n, new="ok2"),
]


def _outside(before: set[str], after: set[str], allowed: tuple[str, ...]) -> list[str]:
    return sorted(path for path in after - before if not path.startswith(allowed))


@pytest.fixture
def watched(unlocked_agent, tmp_path):
    """(agent, connection, check) where check() fails on any file created outside the
    vault and state directories, anywhere under the test's HOME, XDG dirs or runtime dir."""
    roots = (str(tmp_path), os.path.dirname(unlocked_agent.socket), os.getcwd())
    allowed = (os.path.dirname(unlocked_agent.vault) + "/", unlocked_agent.state_dir + "/",
               str(tmp_path / "agent"))  # the fixture's agent logs
    before = tree(*roots[:2]) | set(os.listdir(roots[2]))
    conn = Raw(unlocked_agent.socket).hello()
    conn.call(p.Set(name="ok", value="fine"))

    def check() -> None:
        after = tree(*roots[:2]) | set(os.listdir(roots[2]))
        assert not _outside(before, after, allowed)
        assert not os.path.lexists("/etc/passwd.credd") and not os.path.lexists("/ok2")

    yield unlocked_agent, conn, check
    conn.close()


def test_hostile_names_are_validation_errors(watched):
    agent, conn, check = watched
    for label, name in BAD_NAMES.items():
        for make in NAMED:
            request = make(name)
            conn.send(request)
            body = conn.recv_body()
            reply = p.decode_response(body)
            assert isinstance(reply, p.Error) and reply.code == "bad_request", (label, request,
                                                                                 reply)
            assert SENTINEL.encode() not in body
            assert len(body) < 4096, f"an error reply echoes the whole hostile name ({label})"
        if len(name) < 1000:  # a 1 MB reference: see test_get_many_of_a_1_mb_reference
            reply = conn.call(p.GetMany(refs=[f"credd://{name}", name]))
            assert isinstance(reply, p.Error) and reply.code in ("bad_request", "not_found"), (
                label, reply)
    assert [e.name for e in conn.call(p.List()).entries] == ["ok"]
    assert conn.call(p.Get(name="ok")).value == "fine"
    check()
    assert agent.proc.poll() is None


def test_get_many_of_a_1_mb_reference(watched):
    _agent, conn, _check = watched
    reply = conn.call(p.GetMany(refs=["credd://" + "n" * 1_000_000]))
    assert isinstance(reply, p.Error) and reply.code in ("bad_request", "not_found"), reply
    many = [f"credd://missing/{i:05d}/" + "n" * 360 for i in range(2700)]  # ~1 MiB, all absent
    reply = conn.call(p.GetMany(refs=many))
    assert isinstance(reply, p.Error) and reply.code == "not_found", reply
    assert reply.names == many[:len(reply.names)] and len(reply.names) > 500


def test_unicode_forms_of_one_name_are_one_entry(watched):
    """NFC and NFD spellings must not become two look-alike entries."""
    _agent, conn, _check = watched
    nfc = "caf\u00e9/cl\u00e9"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    conn.call(p.Set(name=nfd, value="one"))
    assert conn.call(p.Get(name=nfc)).value == "one"
    reply = conn.call(p.Set(name=nfc, value="two", mode="create"))
    assert isinstance(reply, p.Error) and reply.code == "exists", reply
    assert sorted(e.name for e in conn.call(p.List()).entries) == sorted(["ok", nfc])


def test_100_mb_passphrase_is_refused_by_the_frame_cap(agent, raw):
    """The header announces 100 MB: the agent must close without reading or allocating it."""
    c = raw(agent)
    init_unlock(c)
    c.call(p.Lock())
    before = rss_kib(agent.pid)
    big = Raw(agent.socket).hello()
    header = p.HEADER.pack(100 * 1024 * 1024)
    started = time.monotonic()
    try:
        big.sock.sendall(header + msgspec.msgpack.encode({"type": "unlock"})[:8] + b"x" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert big.closed_within(1.0) and time.monotonic() - started < 1.5
    big.close()
    assert rss_kib(agent.pid) - before < 1024, "the agent allocated for an oversized frame"
    assert status(raw(agent)).state == "locked"
    assert status(c).state == "locked"


def test_100_mb_passphrase_through_the_cli_is_a_clear_error(agent, run_credd):
    with agent.client() as c:
        c.init(TEST_PASSPHRASE, **FAST_KDF)
        c.lock()
    out = run_credd("unlock", "--passphrase-stdin", input="p" * (100 * 1024 * 1024), timeout=60)
    assert out.returncode == 2, out.returncode  # the CLI reads one line, of 64 KiB at most
    assert "Traceback" not in out.stderr and "longer than" in out.stderr, out.stderr[-500:]
    assert status(Raw(agent.socket).hello()).state == "locked"


WRONG_PASSPHRASES = [123, 1.5, True, [TEST_PASSPHRASE], {"a": 1}, TEST_PASSPHRASE.encode(),
                     math.nan]
TTLS = [-1, 0, -(2**63), 2**63, 2**64 - 1, 1e308, math.inf, -math.inf, math.nan,
        366 * 86400 + 1, "60", [60]]


def _raw_call(conn: Raw, message: dict) -> p.Response:
    body = msgspec.msgpack.encode(message)
    return conn.call(p.HEADER.pack(len(body)) + body)


def test_wrong_passphrase_types_and_ttls_leave_it_locked(agent, raw):
    c = raw(agent)
    init_unlock(c)
    c.call(p.Lock())
    for passphrase in WRONG_PASSPHRASES:
        for tag in ("unlock", "init"):
            reply = _raw_call(c, {"type": tag, "passphrase": passphrase})
            assert isinstance(reply, p.Error) and reply.code == "bad_request", (passphrase, reply)
    for field in ("idle_timeout", "max_lifetime"):
        for number in TTLS:
            reply = _raw_call(c, {"type": "unlock", "passphrase": TEST_PASSPHRASE, field: number})
            assert isinstance(reply, p.Error) and reply.code == "bad_request", (field, number)
    s = status(c)
    assert s.state == "locked" and s.retry_after == 0  # not even counted as failed unlocks


def test_entry_times_out_of_range(watched):
    _agent, conn, _check = watched
    for field in ("rotate_after", "expires"):
        for number in (-1, -(2**63), math.inf, math.nan, "tomorrow"):
            reply = _raw_call(conn, {"type": "set", "name": "ok", "value": "changed",
                                     field: number})
            assert isinstance(reply, p.Error) and reply.code == "bad_request", (field, number)
    assert conn.call(p.Get(name="ok")).value == "fine"


@pytest.mark.parametrize("field", ["rotate_after", "expires"])
def test_absurd_future_times_are_refused_or_shown(watched, run_credd, field):
    _agent, conn, _check = watched
    reply = conn.call(p.Set(name="far", value="v", **{field: 1e300}))
    if isinstance(reply, p.Error):
        assert reply.code == "bad_request", reply
        return
    out = run_credd("show", "far")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-400:]


@pytest.mark.parametrize("tag", ["reveal", "restore"])
def test_version_beyond_sqlite_range(watched, tag):
    _agent, conn, _check = watched
    conn.call(p.Set(name="ok", value="second"))
    for version in (2**63, 2**64 - 1):
        body = msgspec.msgpack.encode({"type": tag, "name": "ok", "version": version})
        reply = conn.call(p.HEADER.pack(len(body)) + body)
        assert isinstance(reply, p.Error) and reply.code in ("bad_request", "not_found"), reply


def test_key_slot_labels_and_keys(watched):
    """Labels are data, not paths; a key of the wrong size is refused before any write."""
    _agent, conn, check = watched
    for key in (b"", b"k" * 31, b"k" * 33, b"k" * 100_000):
        reply = conn.call(p.AddKeySlot(key=key, label="keyring"))
        assert isinstance(reply, p.Error) and reply.code == "bad_request", (len(key), reply)
    for label in ("../../../tmp/evil", "/etc/passwd", "a\x00b", "x" * 100_000):
        reply = conn.call(p.AddKeySlot(key=b"k" * 32, label=label, proof=TEST_PASSPHRASE))
        assert isinstance(reply, (p.Error, p.Ok)), reply
        if isinstance(reply, p.Error):
            assert reply.code == "bad_request", reply
        else:
            assert isinstance(conn.call(p.RemoveKeySlot(label=label, proof=TEST_PASSPHRASE)),
                              p.Ok)
    check()


def test_huge_get_many_and_list_paging_values(watched):
    _agent, conn, check = watched
    reply = conn.call(p.GetMany(refs=[f"credd://n{i}" for i in range(50_000)]))
    assert isinstance(reply, p.Error) and reply.code == "not_found", reply
    assert len(reply.message) < 1000
    for limit in (-1, -(2**63)):
        reply = conn.call(p.List(limit=limit))
        assert isinstance(reply, p.Error) and reply.code == "bad_request", reply
    assert [e.name for e in conn.call(p.List(limit=2**63)).entries] == ["ok"]
    assert [e.name for e in conn.call(p.List(cursor="\x00" * 1000)).entries] == ["ok"]
    check()
