"""Every request type against a real agent, over raw frames."""

from __future__ import annotations

import os
import socket
import sys

import msgspec
import pytest

from credd import protocol as p
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status


@pytest.fixture
def conn(agent, raw):
    """A greeted connection to an agent with a fresh, unlocked vault."""
    c = raw(agent)
    init_unlock(c)
    return c


def put(conn, name, **fields) -> p.EntryMeta:
    reply = conn.call(p.Set(name=name, **fields))
    assert isinstance(reply, p.EntryReply), reply
    return reply.entry


def error(reply, code: str) -> p.Error:
    assert isinstance(reply, p.Error) and reply.code == code, reply
    return reply


class TestSession:
    def test_hello_first_and_version_mismatch(self, agent, raw):
        c = raw(agent, greet=False)
        error(c.call(p.Status()), "bad_request")
        reply = error(c.call(p.Hello(protocol=p.PROTOCOL_VERSION + 1)), "version_mismatch")
        assert "credd stop" in reply.message
        welcome = c.call(p.Hello(protocol=p.PROTOCOL_VERSION, client="t"))
        assert isinstance(welcome, p.Welcome) and welcome.pid == agent.pid
        assert "subscribe" in welcome.capabilities and welcome.protocol == p.PROTOCOL_VERSION

    def test_states_from_no_vault_to_locked(self, agent, raw):
        c = raw(agent)
        s = status(c)
        assert (s.state, s.entries, s.socket, s.vault) == ("no_vault", None, agent.socket,
                                                           agent.vault)
        error(c.call(p.Get(name="x")), "no_vault")
        error(c.call(p.Unlock(passphrase="x")), "no_vault")
        init_unlock(c)
        s = status(c)
        assert s.state == "unlocked" and s.entries == 0 and 0 < s.idle_left <= s.idle_timeout
        assert isinstance(c.call(p.Lock()), p.Ok)
        assert status(c).state == "locked"
        error(c.call(p.Init(passphrase="another one", **FAST_KDF)), "exists")

    def test_init_validates_kdf(self, agent, raw):
        c = raw(agent)
        error(c.call(p.Init(passphrase=TEST_PASSPHRASE, kdf_memory_kib=1024)), "bad_request")
        assert status(c).state == "no_vault" and not os.path.exists(agent.vault)

    def test_unlock_needs_exactly_one_secret(self, conn):
        error(conn.call(p.Unlock()), "bad_request")
        error(conn.call(p.Unlock(passphrase="a", recovery_key="b")), "bad_request")

    def test_failed_unlocks_are_throttled(self, conn):
        conn.call(p.Lock())
        error(conn.call(p.Unlock(passphrase="wrong 1")), "bad_passphrase")
        error(conn.call(p.Unlock(passphrase="wrong 2")), "bad_passphrase")
        limited = error(conn.call(p.Unlock(passphrase=TEST_PASSPHRASE)), "rate_limited")
        assert 0 < limited.retry_after <= 0.5
        assert status(conn).retry_after > 0 and status(conn).state == "locked"

    def test_recovery_key_and_key_slot_unlock(self, agent, raw):
        c = raw(agent)
        recovery = c.call(p.Init(passphrase=TEST_PASSPHRASE, **FAST_KDF)).recovery_key
        assert isinstance(c.call(p.AddKeySlot(key=b"k" * 32, proof=TEST_PASSPHRASE)), p.Ok)
        c.call(p.Lock())
        assert c.call(p.Unlock(key=b"k" * 32)).state == "unlocked"
        c.call(p.Lock())
        assert c.call(p.Unlock(recovery_key=recovery)).state == "unlocked"
        assert isinstance(c.call(p.RemoveKeySlot(proof=recovery)), p.Ok)
        c.call(p.Lock())
        error(c.call(p.Unlock(key=b"k" * 32)), "bad_passphrase")

    def test_change_passphrase_check_and_rekey(self, conn):
        put(conn, "svc", value=SENTINEL)
        error(conn.call(p.ChangePassphrase(old="wrong", new="new passphrase")), "bad_passphrase")
        assert isinstance(conn.call(p.ChangePassphrase(old=TEST_PASSPHRASE, new="new pass 2")),
                          p.Ok)
        report = conn.call(p.Check())
        assert isinstance(report, p.CheckReport) and report.checked == 1 and not report.problems
        recovery = conn.call(p.Rekey(proof="new pass 2"))
        assert isinstance(recovery, p.RecoveryKey) and recovery.recovery_key
        conn.call(p.Lock())
        assert conn.call(p.Unlock(recovery_key=recovery.recovery_key)).state == "unlocked"
        assert conn.call(p.Get(name="svc")).value == SENTINEL

    def test_stop(self, agent, raw):
        assert isinstance(raw(agent).call(p.Stop()), p.Ok)
        assert agent.proc.wait(5) == 0
        assert not os.path.exists(agent.socket)


class TestEntries:
    def test_set_get_describe_reveal(self, conn):
        meta = put(conn, "db/prod", value=SENTINEL, service="postgres", kind="password",
                   tags=["prod"], notes="n",
                   fields=[p.Field(name="user", value="app", secret=False),
                           p.Field(name="pin", value="1234")])
        assert (meta.name, meta.service, meta.fields, meta.secret_fields) == (
            "db/prod", "postgres", {"user": "app"}, ("pin",))
        assert conn.call(p.Get(name="db/prod")) == p.Secret(name="db/prod", value=SENTINEL)
        assert conn.call(p.Get(name="db/prod", field="pin")).value == "1234"
        described = conn.call(p.Describe(name="db/prod")).entry
        assert described.last_used is not None and described.last_used >= meta.updated
        assert msgspec.structs.replace(described, last_used=None) == meta
        revealed = conn.call(p.Reveal(name="db/prod"))
        assert (revealed.value, revealed.secret_fields, revealed.notes) == (
            SENTINEL, {"pin": "1234"}, "n")
        error(conn.call(p.Set(name="db/prod", value="x", mode="create")), "exists")
        error(conn.call(p.Get(name="nope")), "not_found")
        error(conn.call(p.Get(name="db/prod", field="nope")), "not_found")
        error(conn.call(p.Set(name="", value="x")), "bad_request")

    def test_history_restore_move_trash_purge(self, conn):
        put(conn, "a", value="one")
        put(conn, "a", value="two")
        hist = conn.call(p.History(name="a"))
        assert hist.current == 2 and [v.version for v in hist.versions] == [1]
        assert conn.call(p.Reveal(name="a", version=1)).value == "one"
        assert conn.call(p.Restore(name="a", version=1)).entry.version == 3
        assert conn.call(p.Get(name="a")).value == "one"
        assert conn.call(p.Move(old="a", new="b")).entry.name == "b"
        error(conn.call(p.Get(name="a")), "not_found")
        assert conn.call(p.Delete(name="b")).entry.deleted is not None
        trash = conn.call(p.Trash())
        assert [e.name for e in trash.entries] == ["b"] and trash.total == 1
        assert conn.call(p.Undelete(name="b")).entry.deleted is None
        conn.call(p.Delete(name="b"))
        assert isinstance(conn.call(p.Purge(name="b")), p.Ok)
        assert conn.call(p.Trash()).entries == []
        error(conn.call(p.Purge(name="b")), "not_found")

    def test_get_many_resolves_names_with_slashes(self, conn):
        put(conn, "db/prod", value="pw", fields=[p.Field(name="user", value="app", secret=False)])
        put(conn, "team/x/token", value="tok")
        refs = ["credd://db/prod", "credd://db/prod/user", "credd://team/x/token", "db/prod"]
        assert conn.call(p.GetMany(refs=refs)).values == {
            "credd://db/prod": "pw", "credd://db/prod/user": "app",
            "credd://team/x/token": "tok", "db/prod": "pw"}

    def test_get_many_reports_every_missing_ref_and_returns_nothing(self, conn):
        put(conn, "db/prod", value=SENTINEL)
        body_refs = ["credd://db/prod", "credd://nope", "credd://db/prod/nofield", "credd://x/y"]
        conn.send(p.GetMany(refs=body_refs))
        body = conn.recv_body()
        assert SENTINEL.encode() not in body
        reply = error(p.decode_response(body), "not_found")
        assert reply.names == ["credd://nope", "credd://db/prod/nofield", "credd://x/y"]

    def test_list_filters(self, conn):
        put(conn, "aws/dev", service="aws", kind="api_key", tags=["dev"])
        put(conn, "aws/prod", service="aws", kind="api_key", tags=["prod"], expires=1.0)
        put(conn, "github", service="GitHub", kind="access_token", tags=["prod"])

        def names(**filters):
            reply = conn.call(p.List(**filters))
            assert reply.total == len(reply.entries) and reply.next is None
            return [e.name for e in reply.entries]

        assert names() == ["aws/dev", "aws/prod", "github"]
        assert names(prefix="aws/") == ["aws/dev", "aws/prod"]
        assert names(service="aws", tag="prod") == ["aws/prod"]
        assert names(kind="access_token") == ["github"]
        assert names(contains="HUB") == ["github"]
        assert names(due=True) == ["aws/prod"]
        error(conn.call(p.List(limit=-1)), "bad_request")

    def test_list_pages_by_limit_and_by_frame_size(self, conn):
        big = "x" * 8000
        for i in range(140):  # 140 × ~8 KiB of metadata: more than one frame
            put(conn, f"e{i:03}", fields=[p.Field(name="blob", value=big, secret=False)])
        first = conn.call(p.List(limit=50))
        assert len(first.entries) == 50 and first.next == "e049" and first.total == 140
        seen, cursor, pages = [], None, 0
        while True:
            conn.send(p.List(cursor=cursor))
            body = conn.recv_body()
            assert len(body) <= p.MAX_FRAME
            reply = p.decode_response(body)
            seen += [e.name for e in reply.entries]
            pages += 1
            if reply.next is None:
                break
            cursor = reply.next
        assert seen == [f"e{i:03}" for i in range(140)] and pages >= 2

    def test_locked_agent_reveals_nothing(self, conn):
        put(conn, "secret-name-1", value=SENTINEL)
        conn.call(p.Lock())
        requests = [p.Get(name="secret-name-1"), p.GetMany(refs=["credd://secret-name-1"]),
                    p.Reveal(name="secret-name-1"), p.Describe(name="secret-name-1"),
                    p.Set(name="n", value="v"), p.Delete(name="secret-name-1"),
                    p.Undelete(name="secret-name-1"), p.Purge(name="secret-name-1"),
                    p.Move(old="secret-name-1", new="b"), p.List(), p.Trash(),
                    p.History(name="secret-name-1"), p.Restore(name="secret-name-1", version=1),
                    p.AddKeySlot(key=b"k"), p.RemoveKeySlot(), p.Slots(), p.Audit(), p.Check(),
                    p.Rekey(proof=TEST_PASSPHRASE),
                    p.ChangePassphrase(old=TEST_PASSPHRASE, new="x"), p.VerifyBackup()]
        for request in requests:
            conn.send(request)
            body = conn.recv_body()
            assert b"secret-name-1" not in body and SENTINEL.encode() not in body
            error(p.decode_response(body), "locked")
        assert status(conn).state == "locked"


class TestHandOver:
    """`verify_backup` and `restore_backup`: `ready`, one byte carrying a descriptor, the
    last frame, and the connection closed."""

    def _copy(self, agent, tmp_path) -> int:
        from credd.vault import backup
        path = tmp_path / "copy.db"
        backup.snapshot(agent.vault, str(path))
        return os.open(path, os.O_RDONLY)

    def test_verify_backup(self, agent, conn, tmp_path):
        put(conn, "a", value="v")
        assert isinstance(conn.call(p.VerifyBackup()), p.Ready)
        fd = self._copy(agent, tmp_path)
        try:
            conn.sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         fd.to_bytes(4, sys.byteorder))])
        finally:
            os.close(fd)
        report = conn.recv()
        assert isinstance(report, p.BackupReport) and report.problems == [], report
        assert report.entries == 1 and report.format >= 4 and len(report.vault_id) == 32
        assert conn.closed_within(2)

    def test_a_byte_without_a_descriptor(self, conn):
        assert isinstance(conn.call(p.VerifyBackup()), p.Ready)
        conn.sock.sendall(b"\0")
        assert "descriptors" in error(conn.recv(), "bad_request").message
        assert conn.closed_within(2)

    def test_nothing_may_follow_before_ready(self, conn):
        conn.send(p.encode(p.VerifyBackup()) + p.encode(p.Status()))
        assert "nothing may follow" in error(conn.recv(), "bad_request").message

    def test_refused_before_ready_leaves_the_connection_usable(self, conn):
        error(conn.call(p.RestoreBackup()), "bad_request")  # no proof
        error(conn.call(p.RestoreBackup(passphrase="a", recovery_key="b")), "bad_request")
        conn.call(p.Lock())
        error(conn.call(p.VerifyBackup()), "locked")
        assert status(conn).state == "locked"


class TestEvents:
    def test_subscribe_streams_changes_and_lock_state(self, agent, conn, raw):
        events = raw(agent)
        assert isinstance(events.call(p.Subscribe()), p.Ok)
        put(conn, "a", value="v")
        conn.call(p.Move(old="a", new="b"))
        conn.call(p.Lock())
        conn.call(p.Unlock(passphrase=TEST_PASSPHRASE))
        got = [p.decode_event(events.recv_body()) for _ in range(4)]
        assert got == [p.EntryChanged(name="a", action="set"),
                       p.EntryChanged(name="a", action="move", new_name="b"),
                       p.Locked(reason="request"), p.Unlocked()]
        events.send(p.Status())  # anything sent ends the stream
        assert events.closed_within(2)


def test_every_request_type_is_exercised():
    """Adding a request type to the protocol must come with a test of it here."""
    from pathlib import Path
    sources = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    missing = [tag for tag, cls in p.REQUEST_TYPES.items() if f"p.{cls.__name__}(" not in sources]
    assert not missing
