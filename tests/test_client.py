"""credd.client.Client against a real agent on a real socket.

Fake servers appear only where a real agent cannot be made to misbehave:
a socket owned by another uid, and an agent speaking another protocol
version.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from credd import errors, protocol
from credd.client import Client
from credd.protocol import EntryChanged, Field, Locked, Unlocked
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE
from tests.tools import needs


class TestConnection:
    def test_connects_lazily_and_reuses_one_connection(self, unlocked_agent):
        c = Client(unlocked_agent.socket)
        assert c._conn is None
        c.status()
        first = c._conn
        c.status()
        assert c._conn is first
        assert c.hello().pid == unlocked_agent.pid
        c.close()
        assert c._conn is None

    def test_missing_socket_is_agent_unavailable_with_a_hint(self, tmp_path):
        with pytest.raises(errors.AgentUnavailable) as info:
            Client(str(tmp_path / "none.sock")).status()
        assert "credd serve" in info.value.message
        assert info.value.exit_code == errors.EXIT_NO_AGENT

    def test_refused_socket_is_agent_unavailable(self, tmp_path):
        path = str(tmp_path / "dead.sock")
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)  # a stale node: nobody listens
        with pytest.raises(errors.AgentUnavailable, match="credd serve"):
            Client(path).status()

    def test_too_long_path_is_a_clear_error(self):
        with pytest.raises(errors.BadRequest, match="too long"):
            Client("/tmp/" + "x" * 200).status()

    def test_dropped_connection_is_reported_then_reconnected(self, make_agent, credd_env):
        agent = make_agent()
        c = Client(agent.socket)
        assert c.status().state == "no_vault"
        agent.stop()
        make_agent()
        try:
            c.status()  # the old connection is dead: typed error, never a hang
        except errors.AgentUnavailable:
            pass
        assert c.status().state == "no_vault"  # a fresh connection
        c.close()


class TestVaultLifecycle:
    def test_init_unlock_lock(self, agent):
        with agent.client() as c:
            assert c.status().state == "no_vault"
            recovery = c.init(TEST_PASSPHRASE, **FAST_KDF)
            assert isinstance(recovery, str) and recovery
            c.lock()
            assert c.status().state == "locked"
            with pytest.raises(errors.BadPassphrase):
                c.unlock("wrong")
            status = c.unlock(TEST_PASSPHRASE, idle_timeout=60, max_lifetime=120)
            assert (status.state, status.idle_timeout, status.max_lifetime) == \
                ("unlocked", 60, 120)
            c.lock()
            c.unlock(recovery_key=recovery)
            assert c.status().state == "unlocked"

    def test_locked_vault_raises_locked(self, client):
        client.set("x", value="v")
        client.lock()
        with pytest.raises(errors.LockedError) as info:
            client.get("x")
        assert info.value.exit_code == errors.EXIT_LOCKED

    def test_change_passphrase(self, client):
        client.change_passphrase(TEST_PASSPHRASE, "a new passphrase for tests")
        client.lock()
        with pytest.raises(errors.BadPassphrase):
            client.unlock(TEST_PASSPHRASE)
        client.unlock("a new passphrase for tests")

    def test_check_rekey_audit(self, client):
        client.set("a", value=SENTINEL)
        assert client.check().problems == []
        recovery = client.rekey(proof=TEST_PASSPHRASE)
        assert client.get("a") == SENTINEL
        client.lock()
        client.unlock(recovery_key=recovery)
        records = client.audit(limit=10)
        assert records and all(isinstance(r, protocol.AuditRecord) for r in records)

    def test_key_slots(self, client):
        """A slot added through the client unlocks the vault; once removed, it does not."""
        key = os.urandom(32)
        client.set("a", value=SENTINEL)
        client.add_key_slot(key, label="test", proof=TEST_PASSPHRASE)
        client.lock()
        client.unlock(key=key)
        assert client.status().state == "unlocked" and client.get("a") == SENTINEL
        client.remove_key_slot(label="test", proof=TEST_PASSPHRASE)
        client.lock()
        with pytest.raises(errors.BadPassphrase):
            client.unlock(key=key)
        client.unlock(TEST_PASSPHRASE)  # the passphrase slot is untouched

    def test_stop(self, agent):
        with agent.client() as c:
            c.stop()
        agent.proc.wait(10)
        with pytest.raises(errors.AgentUnavailable):
            agent.client().status()


class TestEntries:
    def test_set_get_describe_reveal(self, client):
        meta = client.set("github", kind="api_key", service="github.com", tags=["work"],
                          value=SENTINEL, fields=[Field(name="user", value="alice", secret=False),
                                                  Field(name="token", value="t0k")])
        assert (meta.name, meta.kind, meta.version) == ("github", "api_key", 1)
        assert client.get("github") == SENTINEL
        assert client.get("github", "token") == "t0k"
        described = client.describe("github")
        assert described.fields == {"user": "alice"} and described.secret_fields == ("token",)
        assert SENTINEL not in repr(described)
        revealed = client.reveal("github")
        assert revealed.value == SENTINEL and SENTINEL not in repr(revealed)

    def test_get_many_names_every_missing_ref(self, client):
        client.set("a", value="1", fields=[Field(name="f", value="2")])
        assert client.get_many(["credd://a", "credd://a/f"]) == \
            {"credd://a": "1", "credd://a/f": "2"}
        with pytest.raises(errors.NotFound) as info:
            client.get_many(["credd://a", "credd://nope", "credd://a/nofield"])
        assert set(info.value.names) == {"credd://nope", "credd://a/nofield"}

    def test_not_found_and_exists(self, client):
        with pytest.raises(errors.NotFound) as info:
            client.get("nope")
        assert info.value.exit_code == errors.EXIT_NOT_FOUND
        client.set("x", value="1")
        with pytest.raises(errors.Exists):
            client.set("x", value="2", mode="create")

    def test_bad_set_arguments_are_bad_request_locally(self, client):
        with pytest.raises(errors.BadRequest):
            client.set("x", colour="red")
        with pytest.raises(errors.BadRequest):
            client.list(colour="red")

    def test_oversized_request_is_refused_and_the_connection_survives(self, client):
        with pytest.raises(errors.BadRequest, match="frame"):
            client.set("big", value="x" * protocol.MAX_FRAME)
        assert client.status().state == "unlocked"

    def test_delete_trash_undelete_purge(self, client):
        client.set("x", value="1")
        assert client.delete("x").name == "x"
        assert [e.name for e in client.trash()] == ["x"]
        with pytest.raises(errors.NotFound):
            client.get("x")
        client.undelete("x")
        assert client.get("x") == "1"
        client.delete("x")
        client.purge("x")
        assert client.trash() == []

    def test_move_history_restore(self, client):
        client.set("old", value="v1")
        client.set("old", value="v2")
        assert client.move("old", "new").name == "new"
        history = client.history("new")
        assert history.current == 2 and [v.version for v in history.versions] == [1]
        assert client.restore("new", 1).version == 3
        assert client.get("new") == "v1"

    def test_list_follows_pages(self, client):
        for i in range(25):
            client.set(f"e{i:02d}", value="v", service="s" if i % 2 else "t")
        assert [e.name for e in client.list(limit=4)] == [f"e{i:02d}" for i in range(25)]
        assert len(client.list(service="s", limit=3)) == 12
        assert [e.name for e in client.list(prefix="e1")] == [f"e1{i}" for i in range(10)]


class TestSubscribe:
    def test_events_arrive_on_their_own_connection(self, client, unlocked_agent):
        events = client.subscribe()
        got: list = []

        def read():
            for event in events:
                got.append(event)
                if len(got) == 3:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        client.set("x", value="v")   # the ordinary connection keeps working meanwhile
        client.lock()
        client.unlock(TEST_PASSPHRASE)
        reader.join(10)
        assert [type(e) for e in got] == [EntryChanged, Locked, Unlocked]
        assert (got[0].name, got[0].action) == ("x", "set")
        events.close()

    def test_errors_surface_when_subscribing_not_when_iterating(self, tmp_path):
        with pytest.raises(errors.AgentUnavailable):
            Client(str(tmp_path / "none.sock")).subscribe()

    def test_stream_ends_when_the_agent_stops(self, unlocked_agent):
        events = unlocked_agent.client().subscribe()
        unlocked_agent.stop()
        assert [e for e in events if not isinstance(e, Locked)] == []


# ---------------------------------------------------------------- fake servers

def _fake_agent(path: str, replies: list[bytes]) -> threading.Thread:
    """Answer each frame received on one connection with the next canned reply."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def run():
        conn, _ = server.accept()
        with conn, server:
            for reply in replies:
                header = conn.recv(4)
                conn.recv(int.from_bytes(header, "big"))
                conn.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class TestVersionMismatch:
    def test_newer_agent_gets_a_restart_hint(self, tmp_path):
        path = str(tmp_path / "v.sock")
        _fake_agent(path, [protocol.encode(protocol.Welcome(protocol=99, version="9.9", pid=1))])
        with pytest.raises(errors.VersionMismatch) as info:
            Client(path).status()
        assert "credd stop" in info.value.message and "99" in info.value.message

    def test_agent_refusing_our_hello_gets_the_hint_too(self, tmp_path):
        path = str(tmp_path / "v.sock")
        _fake_agent(path, [protocol.encode(protocol.Error(code="version_mismatch",
                                                          message="protocol 1 unsupported"))])
        with pytest.raises(errors.VersionMismatch, match="credd stop"):
            Client(path).status()


NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to run a server as another uid")

FOREIGN_SERVER = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
conn.settimeout(3)
received = b""
try:
    while chunk := conn.recv(65536):
        received += chunk
except OSError:
    pass
print(len(received), flush=True)
"""


@pytest.fixture
def foreign_socket():
    """A socket whose listener runs as uid 65534; yields (path, bytes-it-received)."""
    shared = tempfile.mkdtemp(prefix="crf")
    os.chmod(shared, 0o777)  # on purpose: uid 65534 must be able to bind here
    path = os.path.join(shared, "agent.sock")
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-c", FOREIGN_SERVER, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"

    def received() -> int:
        return int(proc.stdout.readline())

    yield path, received
    proc.kill()
    proc.wait()
    shutil.rmtree(shared, ignore_errors=True)


@needs_root
@needs("setpriv")
def test_client_refuses_an_agent_of_another_uid_before_sending(foreign_socket):
    path, received = foreign_socket
    with pytest.raises(errors.Denied) as info:
        Client(path).unlock(SENTINEL)
    assert "uid 65534" in info.value.message and info.value.exit_code == errors.EXIT_DENIED
    assert received() == 0


class TestDecode:
    """Big replies decode without touching the collector: its state is the caller's."""

    BIG = protocol.encode(protocol.Entries(
        entries=[protocol.EntryMeta(name=f"e{i}", tags=("t",)) for i in range(5000)]))[4:]

    @staticmethod
    def decode(body: bytes) -> protocol.Entries:
        """`body` as the reply to a list request, through the client core."""
        from credd.client_core import Core
        core = Core()
        core.encode(protocol.List())
        return core.take(body, "reply")

    def test_gc_state_is_restored(self):
        import gc
        assert len(self.BIG) > 64 * 1024 and gc.isenabled()
        assert len(self.decode(self.BIG).entries) == 5000
        assert gc.isenabled()
        gc.disable()
        try:
            self.decode(self.BIG)
            assert not gc.isenabled()  # a caller's choice is left alone
        finally:
            gc.enable()

    def test_bad_reply_is_a_protocol_error_and_gc_comes_back(self):
        import gc
        with pytest.raises(errors.ProtocolError):
            self.decode(self.BIG[:-1])
        assert gc.isenabled()
