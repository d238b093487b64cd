"""The audit trail: HMACs of names, never names or values; written before a reveal; fail closed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

from credd import protocol as p
from credd.daemon.audit import AuditLog, name_hmac
from credd.daemon.audit_trail import Query
from credd.errors import NoSpace
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock, status


def test_reveals_and_writes_are_audited_as_hmacs(unlocked_agent, raw, run_credd):
    c = raw(unlocked_agent)
    c.call(p.Set(name="github", value=SENTINEL))
    c.call(p.Get(name="github"))
    c.call(p.GetMany(refs=["credd://github"]))
    c.call(p.Get(name="missing"))
    path = os.path.join(unlocked_agent.state_dir, "audit.jsonl")
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = open(path).read()
    assert "github" not in text and SENTINEL not in text and "missing" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    ops = [(r["op"], r["outcome"]) for r in lines]
    assert ops[-4:] == [("set", "ok"), ("get", "ok"), ("get_many", "ok"), ("get", "not_found")]
    assert all(r["pid"] == os.getpid() for r in lines[-4:])
    # the owner can recompute a name's HMAC with the vault's audit key
    from credd.vault import Vault
    vault = Vault.open(unlocked_agent.vault, state_dir=unlocked_agent.state_dir)
    vault.unlock(TEST_PASSPHRASE)
    key = vault.audit_key
    vault.close()
    expected = "hmac-sha256:" + hmac.new(key, b"github", hashlib.sha256).hexdigest()
    assert lines[-3]["name_hmac"] == expected == name_hmac(key, "github")
    records = c.call(p.Audit(limit=3)).records
    assert [r.op for r in records] == ["get", "get_many", "get"]
    out = run_credd("audit", "--json", "--limit", "2")
    assert out.returncode == 0, out.stderr
    assert [r["op"] for r in json.loads(out.stdout)] == ["get_many", "get"]
    out = run_credd("audit")
    assert out.returncode == 0 and "get_many" in out.stdout and "github" not in out.stdout


def test_reveal_fails_closed_when_the_audit_log_cannot_be_written(make_agent, raw, isolated_env):
    state = isolated_env["CREDD_STATE_DIR"]
    os.makedirs(state, mode=0o700)
    trap = os.path.join(state, "audit.jsonl")
    os.symlink("/dev/full", trap)  # refused (O_NOFOLLOW); and /dev/full could not be written
    try:
        agent = make_agent()
        c = raw(agent)
        init_unlock(c)
        c.call(p.Set(name="github", value=SENTINEL))  # committed; its audit is best effort
        for request in (p.Get(name="github"), p.GetMany(refs=["github"]),
                        p.Reveal(name="github")):
            assert_fails_closed(c, request)
    finally:
        os.unlink(trap)  # the leak check at teardown reads every file: not an endless one


def assert_fails_closed(c, request: p._Message) -> None:
    """`request` is answered audit_unavailable, with no secret byte; status still works."""
    c.send(request)
    body = c.recv_body()
    assert SENTINEL.encode() not in body
    reply = p.decode_response(body)
    assert isinstance(reply, p.Error) and reply.code == "audit_unavailable", reply
    assert status(c).state == "unlocked"


def test_write_failure_is_reported_not_swallowed(tmp_path):
    log = AuditLog(str(tmp_path / "audit.jsonl"))
    log.record("get", "ok", names=["a"], key=b"k")
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, log._fd)  # the open log now fails with ENOSPC, like a full disk
    os.close(full)
    try:
        log.record("get", "ok", names=["a"], key=b"k")
    except NoSpace as exc:  # a full disk has its own code: the advice is to free space
        assert "no space left on the device holding the audit log" in exc.message
        assert exc.code == "no_space"
    else:
        raise AssertionError("a failed audit write was not reported")
    assert newest_ops(log, 10) == ["get"]
    log.record("set", "ok")  # the same file again: reopened, not taken for a new one
    assert newest_ops(log, 10) == ["get", "set"]


def newest_ops(log: AuditLog, limit: int) -> list[str]:
    """The ops of the newest `limit` records, oldest first."""
    with log.trail() as trail:
        return [r.op for r in reversed(trail.search(Query(), limit))]


def test_search_reads_only_what_it_needs(tmp_path):
    log = AuditLog(str(tmp_path / "audit.jsonl"))
    for i in range(3000):
        log.record(f"op{i}", "ok")
    assert newest_ops(log, 3) == ["op2997", "op2998", "op2999"]
    assert len(newest_ops(log, 3000)) == 3000


def _rename(path: str) -> None:
    os.rename(path, path + ".old")


def _symlink_to_dev_null(path: str) -> None:
    os.unlink(path)
    os.symlink("/dev/null", path)


def _copy_in_place(path: str) -> None:
    """A look-alike: a private regular file with the same lines, but not the agent's."""
    data = open(path, "rb").read()
    os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.close(fd)


class TestTheTrailCannotBeDodged:
    """The agent holds the log's descriptor: moving the file away, or putting something
    else at its path, must not let a reveal go unrecorded where the owner looks."""

    def setup_agent(self, unlocked_agent, raw):
        c = raw(unlocked_agent)
        c.call(p.Set(name="github", value=SENTINEL))
        assert c.call(p.Get(name="github")).value == SENTINEL
        return c, os.path.join(unlocked_agent.state_dir, "audit.jsonl")

    @pytest.mark.parametrize("move", [_rename, os.unlink], ids=["renamed", "deleted"])
    def test_moved_away_fails_once_then_starts_a_new_file(self, unlocked_agent, raw, move):
        c, path = self.setup_agent(unlocked_agent, raw)
        move(path)
        assert_fails_closed(c, p.Get(name="github"))
        assert c.call(p.Get(name="github")).value == SENTINEL  # the path was free: a new file
        lines = [json.loads(line) for line in open(path)]
        assert [(r["op"], r["outcome"]) for r in lines] == [("audit_log", "recreated"),
                                                            ("get", "ok")]
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert "moved, deleted or replaced" in unlocked_agent.log()

    @pytest.mark.parametrize("replace", [_symlink_to_dev_null, _copy_in_place],
                             ids=["symlink-to-dev-null", "look-alike-file"])
    def test_replaced_fails_until_moved_away(self, unlocked_agent, raw, replace):
        c, path = self.setup_agent(unlocked_agent, raw)
        replace(path)
        assert_fails_closed(c, p.Get(name="github"))
        assert_fails_closed(c, p.Get(name="github"))  # never adopted, never followed
        assert os.path.islink(path) or "recreated" not in open(path).read()
        os.unlink(path)
        assert c.call(p.Get(name="github")).value == SENTINEL
        assert json.loads(open(path).readline())["op"] == "audit_log"
