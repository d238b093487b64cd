"""`credd incident`: readers from a real audit trail, the entries sharing the value, the
mark (kept across a restart, shown everywhere, cleared by a new value), and no value text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from credd import protocol as p
from credd.protocol import Field
from tests.conftest import SENTINEL, TEST_PASSPHRASE

PYTHON = os.path.basename(sys.executable)
READER = """\
import sys
from credd.client import Client
with Client() as c:
    c.get(sys.argv[1])
"""


@pytest.fixture
def reader(tmp_path, credd_env):
    """`python reader.py NAME`: a program of its own that receives a value."""
    path = tmp_path / "reader.py"
    path.write_text(READER)

    def run(name: str) -> None:
        subprocess.run([sys.executable, str(path), name], env=credd_env, check=True,
                       timeout=30, capture_output=True)
    return run


@pytest.fixture
def leaked(client, run_credd, reader):
    """`github` read by the owner's CLI twice and by a script once; `ci` and `db`'s field
    hold the same value; `other` is read but is another value."""
    client.set("github", value=SENTINEL, service="github.com")
    client.set("ci/token", value=SENTINEL)
    client.set("db", fields=[Field(name="password", value=SENTINEL)])
    client.set("other", value="another-value-entirely")
    for _ in range(2):
        assert run_credd("get", "github").returncode == 0
    reader("github")
    reader("other")
    return client


def test_readers_shares_and_the_mark(leaked):
    before = time.time()
    report = leaked.incident("github")
    assert {r.program: r.count for r in report.readers} == {
        "credd get": 2, f"{PYTHON} reader.py": 1}
    assert report.readers[0].program == f"{PYTHON} reader.py"  # the most recent first
    assert all(r.grant == "" for r in report.readers)  # the owner's (no grants on this branch)
    assert report.since == report.entry.value_changed  # since the value was set
    assert [(r.reason, r.field, sorted(r.names)) for r in report.shared] == [
        ("duplicate", "", ["ci/token", "db/password"])]
    assert report.entry.compromised is not None and report.entry.compromised >= before
    assert leaked.describe("github").compromised == report.entry.compromised
    assert leaked.describe("ci/token").compromised is None  # only the entry asked about


def test_since_filters_the_readers(leaked, run_credd):
    cut = time.time()
    time.sleep(0.05)
    assert run_credd("get", "github").returncode == 0
    report = leaked.incident("github", since=cut)
    assert {r.program: r.count for r in report.readers} == {"credd get": 1}
    assert report.since == cut
    later = leaked.incident("github", since=time.time() + 60)
    assert later.readers == []


def test_the_value_set_again_starts_the_readers_afresh(leaked, run_credd):
    leaked.set("github", value="a-new-value-after-rotation")
    assert run_credd("get", "github").returncode == 0
    report = leaked.incident("github")
    assert {r.program: r.count for r in report.readers} == {"credd get": 1}
    assert report.shared == []


def test_the_mark_is_shown_kept_and_cleared_by_a_new_value(leaked, unlocked_agent, run_credd):
    leaked.incident("github")
    leaked.set("github", service="github.com/org", merge=True)  # the value stays
    assert leaked.describe("github").compromised is not None
    unlocked_agent.stop()
    unlocked_agent.start()
    with unlocked_agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
        assert c.describe("github").compromised is not None  # in the vault: kept
        due = {e.name: [r.reason for r in e.reasons] for e in c.due(unused=0.0).entries}
        assert due["github"][0] == "compromised"
        assert "compromised" in [r.reason for r in c.inspect("github").reasons]
    ls = run_credd("ls")
    assert [line.split()[-1] for line in ls.stdout.splitlines() if line.startswith("github")
            ] == ["COMPROMISED"]
    listed = {e["name"]: e for e in json.loads(run_credd("ls", "--json").stdout)}
    assert listed["github"]["compromised"].endswith("Z") and listed["other"]["compromised"] is None
    show = run_credd("show", "github")
    assert "compromised:" in show.stdout and "credd incident github" in show.stdout
    assert json.loads(run_credd("show", "github", "--json").stdout)["compromised"]
    assert "compromised" in run_credd("due").stdout
    assert run_credd("set", "github", "--value-stdin", input="rotated-value-xyz\n"
                     ).returncode == 0
    with unlocked_agent.client() as c:
        assert c.describe("github").compromised is None
        assert "compromised" not in [r.reason for r in c.inspect("github").reasons]
    assert "COMPROMISED" not in run_credd("ls").stdout
    assert "compromised" not in run_credd("show", "github").stdout


def test_a_restore_to_another_value_clears_it_too(leaked):
    leaked.set("github", value="second-value-for-restore")
    leaked.incident("github")
    leaked.call(p.Restore(name="github", version=1))
    assert leaked.describe("github").compromised is None


def test_the_command_text_and_json_hold_no_value(leaked, run_credd, unlocked_agent):
    text = run_credd("incident", "github")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "credd get" in out and f"{PYTHON} reader.py" in out
    assert "ci/token, db/password" in out
    assert "credd rotate github" in out and "credd scan --git" in out
    assert "provider's logs (github.com)" in out
    data = json.loads(run_credd("incident", "github", "--json").stdout)
    assert set(data) == {"entry", "since", "readers", "shared", "unread", "next_steps"}
    assert data["entry"]["name"] == "github" and data["entry"]["compromised"].endswith("Z")
    assert data["since"].endswith("Z")
    assert {r["program"]: r["count"] for r in data["readers"]} == {
        "credd get": 2, f"{PYTHON} reader.py": 1}
    assert data["shared"][0]["names"] == ["ci/token", "db/password"]
    assert any("credd scan --git" in step for step in data["next_steps"])
    since = run_credd("incident", "github", "--since", "2999-01-01", "--json")
    assert json.loads(since.stdout)["readers"] == []
    for shown in (out, text.stderr, json.dumps(data), since.stdout):
        assert SENTINEL not in shown
    with open(os.path.join(unlocked_agent.state_dir, "audit.jsonl")) as f:
        trail = [json.loads(line) for line in f]
    assert [r["op"] for r in trail if r["op"] in ("incident", "mark_compromised")][:2] == [
        "incident", "mark_compromised"]
    assert SENTINEL not in json.dumps(trail) and "github" not in json.dumps(trail)


def test_an_unknown_entry(client, run_credd):
    out = run_credd("incident", "nope")
    assert out.returncode == 5 and "nope" in out.stderr
