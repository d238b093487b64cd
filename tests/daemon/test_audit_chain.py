"""The audit trail's hash chain: it verifies, it finds a removed, edited or inserted line where
it happened, a recomputed chain is caught by the anchor, and rotation keeps it whole."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import msgspec
import pytest

from credd import protocol as p
from credd.daemon.audit import AuditLog
from tests.conftest import SENTINEL, TEST_PASSPHRASE


def trail_file(agent, suffix: str = "") -> str:
    return os.path.join(agent.state_dir, "audit.jsonl" + suffix)


def lines_of(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.read().splitlines()


def rewrite_in_place(path: str, lines: list[bytes]) -> None:
    """Replace the content but keep the file (same inode): the agent's path check passes."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(b"".join(line + b"\n" for line in lines))


def rechained(lines: list[bytes]) -> list[bytes]:
    """What a forger without the vault key can do: renumber and recompute every link."""
    out, prev = [], ""
    for seq, line in enumerate(lines, 1):
        record = json.loads(line)
        record.update(seq=seq, prev=prev)
        if not prev:
            del record["prev"]  # as the agent writes the first record: the same bytes
        encoded = msgspec.json.encode(record)
        out.append(encoded)
        prev = hashlib.sha256(encoded).hexdigest()
    return out


def verify(conn) -> p.AuditReport:
    reply = conn.call(p.AuditVerify())
    assert isinstance(reply, p.AuditReport), reply
    return reply


def busy(conn, n: int = 8) -> None:
    conn.call(p.Set(name="github", value=SENTINEL))
    for i in range(n):
        assert isinstance(conn.call(p.Get(name="github")), p.Secret)
        conn.call(p.Set(name=f"e{i}", value="x"))


def test_the_chain_links_every_line_and_verifies(unlocked_agent, raw, run_credd):
    c = raw(unlocked_agent)
    busy(c)
    lines = lines_of(trail_file(unlocked_agent))
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, len(lines) + 1))
    assert records[0].get("prev", "") == ""
    for before, record in zip(lines, records[1:]):
        assert record["prev"] == hashlib.sha256(before).hexdigest()
    report = verify(c)
    assert report.ok and report.records == len(lines) and report.files == ["audit.jsonl"]
    assert report.head_seq == len(lines) and report.anchored_seq is not None
    out = run_credd("audit", "verify")
    assert out.returncode == 0 and out.stdout.startswith("audit trail intact"), out
    data = json.loads(run_credd("audit", "verify", "--json").stdout)
    assert data["ok"] is True and data["anchored_at"].endswith("Z")


def _remove(lines: list[bytes], k: int) -> list[bytes]:
    return lines[:k - 1] + lines[k:]


def _edit(lines: list[bytes], k: int) -> list[bytes]:
    edited = lines[k - 1].replace(b'"outcome":"ok"', b'"outcome":"not_found"')
    assert edited != lines[k - 1]
    return [*lines[:k - 1], edited, *lines[k:]]


def _insert(lines: list[bytes], k: int) -> list[bytes]:
    return [*lines[:k - 1], lines[k - 3], *lines[k - 1:]]  # a copy of an earlier record


def _insert_crafted(lines: list[bytes], k: int) -> list[bytes]:
    """A record made to link to the one before it, with the next seq."""
    before = json.loads(lines[k - 2])
    crafted = dict(before, seq=before["seq"] + 1, prev=hashlib.sha256(lines[k - 2]).hexdigest())
    return [*lines[:k - 1], msgspec.json.encode(crafted), *lines[k - 1:]]


@pytest.mark.parametrize("tamper, says", [(_remove, "missing"), (_edit, "edited"),
                                          (_insert, "inserted"), (_insert_crafted, "inserted")],
                         ids=["removed", "edited", "inserted-copy", "inserted-crafted"])
def test_a_changed_line_is_found_where_it_happened(unlocked_agent, raw, run_credd, tamper, says):
    c = raw(unlocked_agent)
    busy(c)
    path = trail_file(unlocked_agent)
    k = 9  # the line tampered with (1-based); removal leaves the gap before line k
    rewrite_in_place(path, tamper(lines_of(path), k))
    report = verify(c)
    assert not report.ok and (report.file, report.line) == ("audit.jsonl", k), report
    assert says in report.problem
    out = run_credd("audit", "verify")
    assert out.returncode == 1 and f"BROKEN: audit.jsonl line {k}: " in out.stdout, out


def test_a_recomputed_chain_while_running_is_caught_by_the_agents_memory(unlocked_agent, raw):
    c = raw(unlocked_agent)
    busy(c)
    path = trail_file(unlocked_agent)
    lines = _remove(lines_of(path), 6)
    rewrite_in_place(path, rechained(lines + lines[-1:]))  # as many records as before
    report = verify(c)
    assert not report.ok and "not the one the agent wrote" in report.problem, report
    assert report.line == len(lines) + 1


def test_a_recomputed_chain_is_found_at_the_record_the_agent_anchored(unlocked_agent, raw):
    c = raw(unlocked_agent)
    busy(c)
    c.call(p.Lock())  # anchors the lock record
    c.call(p.Unlock(passphrase=TEST_PASSPHRASE))
    busy(c, 2)
    path = trail_file(unlocked_agent)
    lines = lines_of(path)
    anchored = next(k for k, line in enumerate(lines, 1) if json.loads(line)["op"] == "lock")
    rewrite_in_place(path, rechained(_remove(lines, 6)))
    report = verify(c)
    assert not report.ok and "differs from the one the agent anchored" in report.problem, report
    assert report.line == anchored  # renumbered: the record now holding the anchored seq


def test_a_trail_rewritten_while_stopped_is_caught_by_the_anchor(make_agent, raw):
    agent = make_agent()
    agent.init_and_unlock()
    busy(raw(agent))
    agent.stop()  # locks: the anchor covers every record
    path = trail_file(agent)
    lines = rechained(_remove(lines_of(path), 6))  # a whole chain, consistent in itself
    rewrite_in_place(path, lines)
    agent.start()
    c = raw(agent)
    c.call(p.Unlock(passphrase=TEST_PASSPHRASE))
    report = verify(c)
    assert not report.ok and "rewritten" in report.problem, report
    found = json.loads(lines_of(path)[report.line - 1])
    assert (found["op"], found["outcome"]) == ("audit_log", "anchor_mismatch")
    assert "does not lead back to its anchor" in agent.log()
    c.call(p.Get(name="github"))
    assert not verify(c).ok  # the finding stays in the chain: a later anchor does not hide it


@pytest.mark.parametrize("damage, outcome", [("delete", "anchor_missing"),
                                             ("forge", "anchor_invalid")])
def test_a_deleted_or_forged_anchor_is_reported(make_agent, raw, damage, outcome):
    agent = make_agent()
    agent.init_and_unlock()
    busy(raw(agent), 2)
    agent.stop()
    head = os.path.join(agent.state_dir, "audit.head")
    assert os.stat(head).st_mode & 0o777 == 0o600
    if damage == "delete":
        os.unlink(head)
    else:  # a well-formed anchor under a key that is not the vault's
        anchor = json.loads(open(head).read())
        anchor["mac"] = ""
        body = b"credd audit head v1\0" + msgspec.json.encode(anchor)
        anchor["mac"] = hmac.new(b"x" * 32, body, "sha256").hexdigest()
        with open(head, "wb") as f:
            f.write(msgspec.json.encode(anchor))
    agent.start()
    c = raw(agent)
    c.call(p.Unlock(passphrase=TEST_PASSPHRASE))
    report = verify(c)
    assert not report.ok and "audit.head" in report.problem, report
    assert json.loads(lines_of(trail_file(agent))[report.line - 1])["outcome"] == outcome


def test_the_chain_runs_on_across_restarts(make_agent, raw):
    agent = make_agent()
    agent.init_and_unlock()
    busy(raw(agent), 2)
    before = len(lines_of(trail_file(agent)))
    agent.stop()
    agent.start()
    c = raw(agent)
    c.call(p.Unlock(passphrase=TEST_PASSPHRASE))
    c.call(p.Get(name="github"))
    report = verify(c)
    assert report.ok and report.records > before, report
    assert json.loads(lines_of(trail_file(agent))[before])["seq"] == before + 1


class TestRotation:
    @pytest.fixture
    def rotating(self, make_agent, raw):
        agent = make_agent("--audit-max-bytes", "3000", "--audit-keep", "2")
        agent.init_and_unlock()
        c = raw(agent)
        busy(c, 40)
        return agent, c

    def test_rotation_keeps_the_chain_across_files(self, rotating):
        agent, c = rotating
        names = sorted(n for n in os.listdir(agent.state_dir) if n.startswith("audit.jsonl"))
        assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
        for name in names:
            assert os.stat(os.path.join(agent.state_dir, name)).st_mode & 0o777 == 0o600
            assert os.path.getsize(os.path.join(agent.state_dir, name)) <= 3000 + 1000
        newest_first = lines_of(trail_file(agent, ".1"))[-1], lines_of(trail_file(agent))[0]
        assert json.loads(newest_first[1])["prev"] == hashlib.sha256(newest_first[0]).hexdigest()
        report = verify(c)
        assert report.ok and report.files == ["audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
        assert report.first_seq > 1  # older files were deleted by rotation: that is no break
        total = sum(len(lines_of(trail_file(agent, s))) for s in ("", ".1", ".2"))
        assert report.records == total
        found = c.call(p.Audit(limit=10_000, op="get")).records  # read across every file
        assert len(found) == sum(1 for s in ("", ".1", ".2") for line in
                                 lines_of(trail_file(agent, s)) if b'"op":"get",' in line)

    @pytest.mark.parametrize("gone, line, says", [(".1", 1, "missing before this line"),
                                                  (".2", 1, "oldest records are missing")])
    def test_a_removed_file_breaks_the_chain(self, rotating, gone, line, says):
        agent, c = rotating
        os.rename(trail_file(agent, gone), os.path.join(agent.state_dir, "elsewhere"))
        report = verify(c)
        assert not report.ok and report.line == line and says in report.problem, report


def test_rotation_waits_for_the_key(tmp_path):
    """Locked, the trail grows past the limit; the first record after unlock rotates it."""
    (tmp_path / "trail").mkdir(mode=0o700)
    log = AuditLog(str(tmp_path / "trail" / "audit.jsonl"), max_bytes=400, keep=3)
    for _ in range(10):
        log.record("unlock", "bad_passphrase")
    assert os.listdir(tmp_path / "trail") == ["audit.jsonl"]
    log.unlocked(b"k" * 32)
    log.record("unlock", "ok")
    assert sorted(os.listdir(tmp_path / "trail")) == ["audit.head", "audit.jsonl",
                                                      "audit.jsonl.1"]
    with log.trail() as trail:
        assert trail.verify(log.expected()).ok
