"""Grants and sessions against a real agent, over raw frames.

The test process itself becomes a session root: a connection it opened before
`session_open` stays the owner's (a binding is decided at accept), every
connection it opens after is bound to the session's grant.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from credd import protocol as p
from tests.conftest import TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status, wait_for


def ok(reply, kind=None):
    assert not isinstance(reply, p.Error), reply
    if kind is not None:
        assert isinstance(reply, kind), reply
    return reply


def error(reply, code: str) -> p.Error:
    assert isinstance(reply, p.Error) and reply.code == code, reply
    return reply


def create(conn, names=("stripe/*",), mode="read", **kw) -> p.Grant:
    return ok(conn.call(p.GrantCreate(names=list(names), mode=mode, **kw)), p.GrantReply).grant


@pytest.fixture
def owner(agent, raw):
    """The owner's connection to an unlocked vault with stripe/key, stripe/live/key, other."""
    c = raw(agent)
    init_unlock(c)
    for name, value in (("stripe/key", "sk_1"), ("stripe/live/key", "sk_2"), ("other", "o")):
        ok(c.call(p.Set(name=name, value=value)))
    return c


@pytest.fixture
def bound(agent, raw, owner):
    """bound(grant) -> a connection bound to `grant` through a session rooted in this
    process; the session is closed at teardown (closing its connection instead locks)."""
    roots = []

    def connect(grant: p.Grant):
        root = raw(agent)
        session = ok(root.call(p.SessionOpen(grant=grant.id)), p.SessionReply).session
        roots.append((root, session))
        return raw(agent)

    yield connect
    for root, session in roots:
        root.call(p.SessionClose(session=session))


class TestOwner:
    def test_create_list_revoke(self, owner):
        g = create(owner, ["stripe/*", "github/token"], "use", ttl=600.0, label="ci", uses=3,
                   commands=["make deploy"], confirm=True)
        assert g.id.startswith("g_") and g.mode == "use" and g.uses == 3 and g.used == 0
        assert g.expires - g.created == pytest.approx(600.0) and g.created_by
        listed = ok(owner.call(p.GrantList()), p.GrantsReply)
        assert [x.id for x in listed.grants] == [g.id] and listed.pending == []
        revoked = ok(owner.call(p.GrantRevoke(id=g.id)), p.GrantReply).grant
        assert revoked.revoked is not None
        assert ok(owner.call(p.GrantList())).grants == []
        assert [x.id for x in ok(owner.call(p.GrantList(all=True))).grants] == [g.id]
        error(owner.call(p.GrantRevoke(id="g_nothing000")), "not_found")

    @pytest.mark.parametrize("fields", [
        {"names": []}, {"names": ["a"], "mode": "root"}, {"names": ["a"], "ttl": 31 * 86400.0},
        {"names": ["a"], "uid": 65534}])
    def test_invalid(self, owner, fields):
        request = {"mode": "use", **fields}
        error(owner.call(p.GrantCreate(**request)), "bad_request")

    def test_grants_are_kept_in_the_vault(self, agent, owner, raw):
        kept = create(owner, ["stripe/*"], "read")
        gone = create(owner, ["other"], "read")
        owner.call(p.GrantRevoke(id=gone.id))
        assert agent.stop() == 0
        agent.start()
        c = raw(agent)
        error(c.call(p.GrantList()), "locked")
        ok(c.call(p.Unlock(passphrase=TEST_PASSPHRASE)))
        listed = ok(c.call(p.GrantList(all=True))).grants
        assert {(g.id, g.revoked is None) for g in listed} == {(kept.id, True), (gone.id, False)}

    def test_answer_unknown_request(self, owner):
        error(owner.call(p.GrantAnswer(request="r_nothing000", approve=True)), "not_found")


class TestBoundRead:
    def test_covered_names_only(self, owner, bound):
        c = bound(create(owner, ["stripe/*"], "read"))
        assert ok(c.call(p.Get(name="stripe/live/key")), p.Secret).value == "sk_2"
        assert [e.name for e in ok(c.call(p.List())).entries] == ["stripe/key", "stripe/live/key"]
        assert ok(c.call(p.List(prefix="o"))).entries == []
        assert status(c).entries == 2 and status(owner).entries == 3
        assert ok(c.call(p.GetMany(refs=["credd://stripe/key"]))).values == {
            "credd://stripe/key": "sk_1"}
        assert ok(c.call(p.Reveal(name="stripe/key")), p.Revealed).value == "sk_1"

    @pytest.mark.parametrize("ask", [
        lambda n: p.Get(name=n), lambda n: p.Describe(name=n), lambda n: p.Reveal(name=n),
        lambda n: p.History(name=n), lambda n: p.GetMany(refs=[f"credd://{n}"]),
        lambda n: p.GetMany(refs=[f"credd://{n}/field"])])
    def test_uncovered_is_exactly_absent(self, owner, bound, ask):
        """`other` exists but is not covered; `nothing` does not exist: the replies differ
        only by the name."""
        c = bound(create(owner, ["stripe/*"], "read"))
        hidden = error(c.call(ask("other")), "not_found")
        absent = error(c.call(ask("nothing")), "not_found")
        assert hidden.message.replace("other", "nothing") == absent.message
        assert [n.replace("other", "nothing") for n in hidden.names] == absent.names

    @pytest.mark.parametrize("ask", [
        lambda n: p.Get(name=n), lambda n: p.Describe(name=n), lambda n: p.Reveal(name=n),
        lambda n: p.History(name=n)])
    def test_no_hidden_name_is_suggested(self, owner, bound, ask):
        """"Did you mean" comes from the names the connection may see: the owner is told
        `other` for `othr`, a bound connection is not; a covered name is still suggested."""
        assert "'other'" in error(owner.call(ask("othr")), "not_found").message
        c = bound(create(owner, ["stripe/*"], "read"))
        assert "did you mean" not in error(c.call(ask("othr")), "not_found").message
        assert "'stripe/key'" in error(c.call(ask("stripe/kye")), "not_found").message

    def test_trash_is_filtered(self, owner, bound):
        ok(owner.call(p.Delete(name="other")))
        ok(owner.call(p.Delete(name="stripe/key")))
        c = bound(create(owner, ["stripe/*"], "read"))
        assert [e.name for e in ok(c.call(p.Trash())).entries] == ["stripe/key"]

    @pytest.mark.parametrize("request_", [
        p.Set(name="stripe/key", value="x"), p.Delete(name="stripe/key"),
        p.Move(old="stripe/key", new="stripe/k2"), p.Purge(name="stripe/key"),
        p.Restore(name="stripe/key", version=1), p.Undelete(name="stripe/key")])
    def test_no_writes(self, owner, bound, request_):
        c = bound(create(owner, ["stripe/*"], "read"))
        assert "`write` grant" in error(c.call(request_), "denied").message


class TestBoundUse:
    @pytest.mark.parametrize("request_", [
        p.Get(name="stripe/key"), p.GetMany(refs=["credd://stripe/key"]),
        p.Reveal(name="stripe/key")])
    def test_no_value_ever(self, owner, bound, request_):
        c = bound(create(owner, ["stripe/*"], "use"))
        reply = error(c.call(request_), "denied")
        assert "credd run" in reply.message and "sk_" not in reply.message

    def test_metadata_of_covered_names(self, owner, bound):
        c = bound(create(owner, ["stripe/*"], "use"))
        assert ok(c.call(p.Describe(name="stripe/key")), p.EntryReply).entry.has_value
        assert len(ok(c.call(p.List())).entries) == 2


class TestOwnerOnly:
    @pytest.mark.parametrize("request_", [
        p.Init(passphrase="x"), p.Unlock(passphrase=TEST_PASSPHRASE), p.Lock(),
        p.ChangePassphrase(old=TEST_PASSPHRASE, new="y"), p.AddKeySlot(key=b"k" * 32),
        p.RemoveKeySlot(), p.Audit(), p.Check(), p.Rekey(), p.Subscribe(), p.Stop(),
        p.GrantAnswer(request="r_x", approve=True), p.Slots(), p.AuditWho(name="stripe/key"),
        p.Migrate(src="stripe/", dst="x/"), p.GetPending(name="stripe/key"),
        p.Fingerprint(name="stripe/key"), p.Inspect(name="stripe/key"),
        p.Incident(name="stripe/key"), p.Rotate(name="stripe/key", value="v")])
    def test_refused_even_to_write(self, owner, bound, request_):
        c = bound(create(owner, ["*"], "write"))
        assert "only the owner" in error(c.call(request_), "denied").message
        assert status(owner).state == "unlocked"

    def test_write_changes_covered_entries_only(self, owner, bound):
        c = bound(create(owner, ["stripe/*"], "write"))
        ok(c.call(p.Set(name="stripe/new", value="n")))
        ok(c.call(p.Move(old="stripe/new", new="stripe/newer")))
        error(c.call(p.Set(name="other", value="x")), "not_found")
        error(c.call(p.Move(old="stripe/newer", new="other2")), "not_found")
        assert ok(owner.call(p.Get(name="other"))).value == "o"


class TestNarrowing:
    def test_a_grant_made_inside_narrows(self, owner, bound):
        outer = create(owner, ["stripe/*"], "read", ttl=600.0)
        c = bound(outer)
        inner = create(c, ["stripe/live/*"], "use", ttl=60.0)
        assert inner.parent == outer.id
        for wider in ({"names": ["*"], "mode": "use"}, {"names": ["stripe/x"], "mode": "write"},
                      {"names": ["stripe/x"], "mode": "use", "ttl": 3600.0}):
            assert "only narrow" in error(c.call(p.GrantCreate(**wider)), "denied").message
        error(c.call(p.GrantCreate(names=["stripe/x"], mode="use", uid=65534,
                                   commands=["/bin/true"])), "denied")
        other = create(owner, ["other"], "read")
        assert {g.id for g in ok(c.call(p.GrantList())).grants} == {outer.id, inner.id}
        error(c.call(p.GrantRevoke(id=other.id)), "not_found")
        ok(c.call(p.GrantRevoke(id=inner.id)))

    def test_a_session_inside_narrows(self, agent, owner, bound, raw):
        outer = bound(create(owner, ["stripe/*"], "read"))
        wide = create(owner, ["*"], "read")
        assert "only narrow" in error(outer.call(p.SessionOpen(grant=wide.id)), "denied").message

    def test_revoking_the_outer_revokes_the_inner(self, owner, bound):
        outer = create(owner, ["stripe/*"], "read")
        inner = create(bound(outer), ["stripe/live/*"], "read")
        ok(owner.call(p.GrantRevoke(id=outer.id)))
        assert all(g.revoked for g in ok(owner.call(p.GrantList(all=True))).grants
                   if g.id in (outer.id, inner.id))


class TestLifecycle:
    def test_revoke_takes_effect_at_the_next_request(self, owner, bound):
        g = create(owner, ["stripe/*"], "read")
        c = bound(g)
        ok(c.call(p.Get(name="stripe/key")))
        ok(owner.call(p.GrantRevoke(id=g.id)))
        assert "revoked" in error(c.call(p.List()), "denied").message
        assert status(c).state == "unlocked"  # hello and status still answer

    def test_expiry(self, owner, bound):
        g = create(owner, ["stripe/*"], "read", ttl=1.0)
        c = bound(g)
        ok(c.call(p.Get(name="stripe/key")))
        time.sleep(max(0.0, g.expires - time.time()) + 0.1)
        assert "expired" in error(c.call(p.Get(name="stripe/key")), "denied").message

    def test_uses_are_counted_and_kept(self, owner, bound):
        g = create(owner, ["stripe/*"], "read", uses=2)
        c = bound(g)
        ok(c.call(p.Get(name="stripe/key")))
        ok(c.call(p.Describe(name="stripe/key")))  # metadata is not a use
        ok(owner.call(p.Lock()))
        ok(owner.call(p.Unlock(passphrase=TEST_PASSPHRASE)))
        (kept,) = ok(owner.call(p.GrantList())).grants
        assert kept.used == 1
        ok(c.call(p.GetMany(refs=["credd://stripe/key", "credd://stripe/live/key"])))
        assert "used all its 2 uses" in error(c.call(p.Get(name="stripe/key")), "denied").message
        assert "used all" in error(c.call(p.List()), "denied").message  # used up: ended

    def test_a_field_by_path_is_a_use(self, owner, bound):
        """`get card/pin` reaches the field `pin` of the covered entry `card` (credd.refs'
        rule): it spends a use like `get card --field pin` would."""
        ok(owner.call(p.Set(name="card", fields=[p.Field(name="pin", value="1234")])))
        g = create(owner, ["card"], "read", uses=1)
        c = bound(g)
        assert ok(c.call(p.Get(name="card/pin")), p.Secret).value == "1234"
        assert "used all its 1 uses" in error(c.call(p.Get(name="card/pin")), "denied").message

    def test_confirm(self, agent, owner, bound, raw):
        g = create(owner, ["stripe/*"], "read", confirm=True)
        events = raw(agent)  # the owner's: opened before the session
        ok(events.call(p.Subscribe()))
        c = bound(g)
        for approve, expect in ((True, "sk_1"), (False, "denied")):
            replies: list = []
            asking = threading.Thread(target=lambda: replies.append(
                c.call(p.Get(name="stripe/key"))))
            asking.start()
            (waiting,) = wait_for(lambda: ok(owner.call(p.GrantList())).pending)
            assert (waiting.grant, waiting.op, waiting.names) == (g.id, "get", ("stripe/key",))
            event = p.decode_event(events.recv_body())
            assert isinstance(event, p.AccessRequested) and event.request.id == waiting.id
            ok(owner.call(p.GrantAnswer(request=waiting.id, approve=approve)))
            asking.join(5)
            reply = replies[0]
            assert (reply.value if approve else error(reply, "denied").code) == expect
        error(c.call(p.Get(name="other")), "not_found")  # uncovered: nothing is asked

    def test_confirm_times_out(self, make_agent, raw):
        agent = make_agent("--approval-timeout", "1s")
        c = raw(agent)
        init_unlock(c)
        ok(c.call(p.Set(name="a", value="1")))
        g = create(c, ["a"], "read", confirm=True)
        root = raw(agent)
        session = ok(root.call(p.SessionOpen(grant=g.id))).session
        try:
            reply = error(raw(agent).call(p.Get(name="a")), "denied")
            assert "did not answer" in reply.message
        finally:
            root.call(p.SessionClose(session=session))


class TestSessions:
    def test_close_unbinds(self, agent, owner, raw):
        g = create(owner, ["stripe/*"], "use")
        root = raw(agent)
        session = ok(root.call(p.SessionOpen(grant=g.id)), p.SessionReply).session
        error(raw(agent).call(p.Get(name="other")), "denied")
        error(root.call(p.SessionOpen(grant=g.id)), "bad_request")  # one session per root
        ok(root.call(p.SessionClose(session=session)), p.Ok)
        assert ok(raw(agent).call(p.Get(name="other"))).value == "o"
        error(root.call(p.SessionClose(session=session)), "not_found")

    def test_a_session_that_ends_unclosed_locks_the_vault(self, agent, owner, raw):
        """Its root died (a clean end closes it): orphans may be loose, unbound."""
        g = create(owner, ["stripe/*"], "use")
        root = raw(agent)
        ok(root.call(p.SessionOpen(grant=g.id)))
        root.close()
        wait_for(lambda: status(owner).state == "locked")
        assert status(raw(agent)).state == "locked"

    def test_a_nested_session_that_ends_unclosed_locks_nothing(self, agent, owner, bound,
                                                                 credd_env):
        """Its orphans fall back to the session around it, whose grant binds them anyway."""
        outer = create(owner, ["stripe/*"], "use")
        bound(outer)  # this process is now the outer session's root
        inner = create(owner, ["stripe/live/*"], "use", ttl=60.0)
        opener = ("import sys\nfrom credd.client import Client\n"
                  "Client().session_open(sys.argv[1])\n")  # and exits: never closed
        done = subprocess.run([sys.executable, "-c", opener, inner.id], env=credd_env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        time.sleep(0.3)
        assert status(owner).state == "unlocked"

    def test_an_ended_grant_opens_no_session(self, owner, raw, agent):
        g = create(owner, ["stripe/*"], "use")
        ok(owner.call(p.GrantRevoke(id=g.id)))
        error(raw(agent).call(p.SessionOpen(grant=g.id)), "denied")
        error(raw(agent).call(p.SessionOpen(grant="g_nothing000")), "not_found")

    def test_a_sandbox_grant_opens_no_session(self, owner, raw, agent):
        g = create(owner, ["stripe/*"], "use", uid=65534, commands=["/bin/true"])
        error(raw(agent).call(p.SessionOpen(grant=g.id)), "bad_request")


class TestSandboxSocket:
    def test_lives_with_its_grant(self, agent, owner, raw):
        g = create(owner, ["stripe/*"], "use", uid=65534, commands=["/usr/bin/env"])
        assert g.socket and stat.S_ISSOCK(os.stat(g.socket).st_mode)
        assert stat.S_IMODE(os.stat(g.socket).st_mode) == 0o666
        assert stat.S_IMODE(os.stat(os.path.dirname(g.socket)).st_mode) == 0o711
        assert ok(owner.call(p.GrantList())).grants[0].socket == g.socket
        with pytest.raises((ConnectionError, AssertionError)):  # the owner is not its uid
            raw(g.socket)
        ok(owner.call(p.GrantRevoke(id=g.id)))
        assert not os.path.exists(g.socket) and not os.path.exists(os.path.dirname(g.socket))

    def test_closes_at_expiry_and_comes_back_after_a_restart(self, agent, owner, raw):
        short = create(owner, ["a"], "use", uid=65534, commands=["/bin/true"], ttl=1.0)
        kept = create(owner, ["a"], "use", uid=65534, commands=["/bin/true"])
        wait_for(lambda: not os.path.exists(short.socket), timeout=5)
        agent.stop()
        agent.start()
        c = raw(agent)
        ok(c.call(p.Unlock(passphrase=TEST_PASSPHRASE)))
        (again,) = ok(c.call(p.GrantList())).grants
        assert again.id == kept.id and again.socket != kept.socket
        assert os.path.exists(again.socket) and not os.path.exists(kept.socket)


class TestAudit:
    def test_records_carry_the_grant_the_session_and_the_program(self, agent, owner, raw):
        """What a bound connection does is found by its grant (`credd audit --grant`), with
        its session and program; what it was refused too; the owner's records name none."""
        g = create(owner, ["stripe/*"], "read")
        root = raw(agent)
        session = ok(root.call(p.SessionOpen(grant=g.id)), p.SessionReply).session
        try:
            c = raw(agent)
            ok(c.call(p.Get(name="stripe/key")))
            error(c.call(p.Set(name="stripe/key", value="x")), "denied")
        finally:
            root.call(p.SessionClose(session=session))
        records = ok(owner.call(p.Audit(grant=g.id)), p.AuditLog).records
        assert {(r.op, r.outcome) for r in records} >= {("get", "ok"), ("set", "denied")}
        assert {(r.grant, r.session, r.pid) for r in records if r.op in ("get", "set")} == {
            (g.id, session, os.getpid())}
        assert all(r.program for r in records)
        (reader,) = ok(owner.call(p.AuditWho(name="stripe/key"))).readers
        assert reader.grant == g.id
        ok(owner.call(p.GrantRevoke(id=g.id)))
        changes = [(r.op, r.grant, r.subject) for r in ok(owner.call(
            p.Audit(grant=g.id)), p.AuditLog).records if r.op.startswith(("grant", "session"))]
        assert changes == [("grant_create", "", g.id), ("session_open", "", g.id),
                           ("session_close", "", g.id), ("grant_revoke", "", g.id)]
