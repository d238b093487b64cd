"""request_access against a real agent, over raw frames: a bound program asks the owner,
and only the owner's approval widens its grant (for connections made from then on)."""

from __future__ import annotations

import threading

from credd import protocol as p
from tests.daemon.conftest import wait_for
from tests.daemon.test_grant_requests import bound, create, error, ok, owner  # noqa: F401


def ask(c, names=("other",), mode="use", reason="need it") -> tuple[threading.Thread, list]:
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(
        c.call(p.RequestAccess(names=list(names), mode=mode, reason=reason))))
    thread.start()
    return thread, replies


def answer(owner, approve: bool) -> p.AccessRequest:
    (waiting,) = wait_for(lambda: ok(owner.call(p.GrantList())).pending)
    ok(owner.call(p.GrantAnswer(request=waiting.id, approve=approve)))
    return waiting


def test_the_owner_needs_none(owner):
    error(owner.call(p.RequestAccess(names=["other"])), "bad_request")


def test_approved_widens_for_new_connections(agent, owner, bound, raw):
    g = create(owner, ["stripe/*"], "use")
    c = bound(g)
    thread, replies = ask(c, mode="read", reason="deploy")
    waiting = answer(owner, True)
    thread.join(5)
    assert (waiting.op, waiting.names, waiting.mode, waiting.reason) == (
        "request_access", ("other",), "read", "deploy")
    widened = ok(replies[0], p.GrantReply).grant
    assert (widened.id, widened.names, widened.mode) == (g.id, ("stripe/*", "other"), "read")
    error(c.call(p.Describe(name="other")), "not_found")  # this connection keeps what it had
    assert ok(raw(agent).call(p.Get(name="other")), p.Secret).value == "o"
    assert ok(owner.call(p.GrantList())).grants[0].names == ("stripe/*", "other")


def test_denied_changes_nothing(agent, owner, bound, raw):
    g = create(owner, ["stripe/*"], "use")
    thread, replies = ask(bound(g))
    answer(owner, False)
    thread.join(5)
    assert "denied" in error(replies[0], "denied").message
    error(raw(agent).call(p.Describe(name="other")), "not_found")
    assert ok(owner.call(p.GrantList())).grants[0].names == ("stripe/*",)


def test_malformed_is_refused_before_anyone_is_asked(owner, bound):
    c = bound(create(owner, ["stripe/*"], "use"))
    error(c.call(p.RequestAccess(names=[], mode="use")), "bad_request")
    error(c.call(p.RequestAccess(names=["x"], mode="root")), "bad_request")
    assert ok(owner.call(p.GrantList())).pending == []
