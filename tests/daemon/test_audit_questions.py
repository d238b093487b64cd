"""What the audit trail answers: who each record was (program names a person knows, never an
argument), the filters of `credd audit`, `credd audit who`, and last-used times."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from credd import protocol as p
from credd.daemon.audit import name_hmac
from credd.daemon.last_used import LastUsed
from credd.daemon.peer import program_name
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import wait_for
from tests.scripting.conftest import installed
from tests.scripting.test_helpers import git_runner

PYTHON = os.path.basename(sys.executable)
CLIENT_SCRIPT = """\
import sys
from credd.client import Client
with Client() as c:
    for name in sys.argv[1:]:
        c.get(name)
"""


def records(agent) -> list[dict]:
    with open(os.path.join(agent.state_dir, "audit.jsonl"), "rb") as f:
        return [json.loads(line) for line in f]


def last_reveal(agent) -> dict:
    reveals = [r for r in records(agent) if r["op"] in ("get", "get_many") and r["outcome"] == "ok"]
    return reveals[-1]


@pytest.fixture
def client_script(tmp_path, credd_env):
    """Run `python myscript.py NAME...`: a Python program that uses credd.Client."""
    path = tmp_path / "myscript.py"
    path.write_text(CLIENT_SCRIPT)

    def run(*names: str) -> None:
        subprocess.run([sys.executable, str(path), *names], env=credd_env, check=True,
                       timeout=30, capture_output=True)
    return run


class TestWhoEachRecordIs:
    def test_credd_get(self, unlocked_agent, client, run_credd):
        client.set("github", value=SENTINEL)
        out = run_credd("get", "github")
        assert out.returncode == 0
        r = last_reveal(unlocked_agent)
        assert r["program"] == "credd get"
        assert r["uid"] == os.geteuid() and r["pid"] not in (None, os.getpid())
        assert r["exe"] == os.path.realpath(sys.executable)
        assert "grant" not in r and "session" not in r  # the owner: empty, so left out
        assert "github" not in json.dumps(r) and SENTINEL not in json.dumps(records(unlocked_agent))

    def test_a_python_script(self, unlocked_agent, client, client_script):
        client.set("github", value=SENTINEL)
        client_script("github")
        assert last_reveal(unlocked_agent)["program"] == f"{PYTHON} myscript.py"

    def test_gits_credential_helper(self, unlocked_agent, client, credd_env, tmp_path):
        git = git_runner("git", credd_env, tmp_path / "gitconfig",
                         installed("git-credential-credd"))
        attrs = {"protocol": "https", "host": "git.example.com", "username": "alice",
                 "password": "gitpw-123456"}
        assert git("approve", attrs).returncode == 0
        assert git("fill", {"protocol": "https", "host": "git.example.com"}).returncode == 0
        r = [r for r in records(unlocked_agent) if r["outcome"] == "ok"][-1]
        assert r["program"] == "git-credential-credd", r

    @pytest.mark.parametrize("argv, name", [
        (["/usr/bin/python3", "-m", "pytest", "-k", "x"], "python3 -m pytest"),
        (["/venv/bin/python", "/venv/bin/pytest", "-q"], "pytest"),
        (["python3", "./tool.py", "--token", SENTINEL], "python3 tool.py"),
        (["/venv/bin/python", "-IS", "/venv/bin/credd", "get", "github"], "credd get"),
        (["python3", "-m", "credd", "audit", "who", "github"], "credd audit"),
        (["/usr/bin/credd", SENTINEL], "credd"),
        (["python3.11", "-W", "ignore", "-Xdev", "-u", "x.py"], "python3.11 x.py"),
        (["python3", "-c", f"print('{SENTINEL}')"], "python3 -c"),
        (["python3", "-Im", "tool.cli", SENTINEL], "python3 -m tool.cli"),
        (["bash", "-c", f"credd get {SENTINEL}"], "bash -c"),
        (["/bin/bash", "deploy.sh", SENTINEL], "bash deploy.sh"),
        (["git", "fetch", "origin"], "git"),
        (["/v/bin/python", "/v/bin/docker-credential-credd", "get"], "docker-credential-credd"),
        (["-zsh"], "zsh"),
        ([], "python3.11"),  # an unreadable command line: the executable
        (["evil\nname"], "evil?name"),
    ])
    def test_program_names_hold_no_arguments(self, argv, name):
        assert program_name(argv, "/usr/bin/python3.11") == name


class TestFilters:
    @pytest.fixture
    def trail(self, unlocked_agent, client, run_credd):
        client.set("alpha", value=SENTINEL)
        client.set("beta", value="b")
        assert run_credd("get", "alpha").returncode == 0
        client.get("beta")
        client.get("alpha")
        assert run_credd("get", "missing").returncode == 5
        return client

    def ask(self, client, **filters) -> list[p.AuditRecord]:
        return client.call(p.Audit(limit=100, **filters)).records

    def test_by_name_program_op_and_outcome(self, trail, unlocked_agent):
        alpha = name_hmac(self.key(unlocked_agent), "alpha")
        assert [(r.op, r.name_hmac) for r in self.ask(trail, name="alpha")] == [
            ("set", alpha), ("get", alpha), ("get", alpha)]
        assert [r.op for r in self.ask(trail, program="credd")] == ["get", "get"]
        assert [r.outcome for r in self.ask(trail, program="credd get")] == ["ok", "not_found"]
        assert self.ask(trail, program="*redd g*") == self.ask(trail, program="credd get")
        assert [r.outcome for r in self.ask(trail, op="get", outcome="not_found")] == ["not_found"]
        assert self.ask(trail, grant="g-none") == []  # no grants yet: nothing is bound
        newest = self.ask(trail, op="get")
        assert [r.time for r in newest] == sorted(r.time for r in newest)  # oldest first
        assert trail.call(p.Audit(limit=1, op="get")).records == newest[-1:]

    def test_since(self, trail):
        everything = self.ask(trail)
        cut = everything[-2].time
        assert self.ask(trail, since=cut) == everything[-2:]
        assert self.ask(trail, since=everything[-1].time + 1) == []

    def test_the_command(self, trail, run_credd):
        out = run_credd("audit", "--name", "alpha", "--op", "get", "--json")
        assert out.returncode == 0, out.stderr
        found = json.loads(out.stdout)
        assert found[0]["program"] == "credd get" and len(found) == 2
        assert all(r["time"].endswith("Z") and "T" in r["time"] for r in found)
        table = run_credd("audit", "--since", "1h", "--program", "credd").stdout
        assert "credd get" in table and "alpha" not in table  # names stay HMACs
        assert "alpha" in run_credd("audit", "--name", "alpha").stdout  # the name asked
        assert run_credd("audit", "--since", "2999-01-01", "--json").stdout.strip() == "[]"
        bad = run_credd("audit", "--since", "yesterday")
        assert bad.returncode == 2 and "--since" in bad.stderr

    @staticmethod
    def key(agent) -> bytes:
        from credd.vault import Vault
        vault = Vault.open(agent.vault, state_dir=agent.state_dir)
        try:
            vault.unlock(TEST_PASSPHRASE)
            return vault.audit_key
        finally:
            vault.close()


def test_who_received_a_value(unlocked_agent, client, run_credd, client_script, credd_env,
                              tmp_path):
    client.set("alpha", value=SENTINEL)
    client.set("beta", value="b")
    for _ in range(2):
        assert run_credd("get", "alpha").returncode == 0
    client_script("alpha", "beta")
    env_file = tmp_path / "app.env"
    env_file.write_text("TOKEN=credd://alpha\n")
    assert run_credd("run", "--env-file", str(env_file), "--", "true").returncode == 0
    assert run_credd("get", "alpha/nope").returncode == 5  # not a reveal
    reply = client.call(p.AuditWho(name="alpha"))
    counts = {r.program: r.count for r in reply.readers}
    assert counts == {"credd get": 2, f"{PYTHON} myscript.py": 1, "credd run": 1}, counts
    assert reply.readers[0].program == "credd run"  # the most recent first
    by_program = {r.program: r for r in reply.readers}
    assert by_program["credd get"].first < by_program["credd get"].last
    assert all(r.grant == "" for r in reply.readers)
    out = run_credd("audit", "who", "alpha", "--json")
    data = json.loads(out.stdout)
    assert data["name"] == "alpha" and data["name_hmac"] == reply.name_hmac
    assert {r["program"]: r["count"] for r in data["readers"]} == counts
    assert data["readers"][0]["last"].endswith("Z")
    table = run_credd("audit", "who", "beta").stdout
    assert f"{PYTHON} myscript.py" in table and "credd get" not in table
    assert "no program received" in run_credd("audit", "who", "nobody").stdout


class TestLastUsed:
    def ls_json(self, run_credd) -> dict[str, str | None]:
        out = run_credd("ls", "--json")
        assert out.returncode == 0, out.stderr
        return {e["name"]: e["last_used"] for e in json.loads(out.stdout)}

    def test_batched_and_kept_across_a_restart(self, make_agent, run_credd):
        agent = make_agent()
        agent.init_and_unlock()
        saved = os.path.join(agent.state_dir, "last-used.json")
        with agent.client() as c:
            c.set("alpha", value=SENTINEL)
            c.set("beta", value="b")
            c.get("alpha")
            c.lock()  # written back off the event loop: soon after the reply
            first = wait_for(lambda: os.path.exists(saved) and os.stat(saved))
            c.unlock(TEST_PASSPHRASE)
            for _ in range(5):
                c.get("alpha")
                c.get_many(["credd://beta"])
            during = os.stat(saved)
            assert (during.st_ino, during.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
            shown = self.ls_json(run_credd)
            assert shown["alpha"].endswith("Z") and shown["beta"] is not None
            assert "last used:" in run_credd("show", "alpha").stdout
            c.lock()  # written back now, in one write
        after = wait_for(lambda: (s := os.stat(saved)).st_ino != first.st_ino and s)
        assert after.st_mode & 0o777 == 0o600
        saved_text = open(saved).read()
        assert "alpha" not in saved_text and "beta" not in saved_text
        assert all(k.startswith("hmac-sha256:") for k in json.loads(saved_text)["used"])
        agent.stop()
        agent.start()
        with agent.client() as c:
            c.unlock(TEST_PASSPHRASE)
            assert c.describe("alpha").last_used is not None
        assert self.ls_json(run_credd) == shown

    def test_list_pages_show_a_new_use(self, unlocked_agent, raw):
        c = raw(unlocked_agent)
        for name in ("a", "b", "c"):
            c.call(p.Set(name=name, value="v"))
        before = c.call(p.List())
        assert [e.last_used for e in before.entries] == [None, None, None]
        c.call(p.Get(name="b"))
        after = c.call(p.List())  # the same page, cached encoded: it must not be reused
        assert [e.last_used is not None for e in after.entries] == [False, True, False]
        c.call(p.Move(old="b", new="bee"))
        moved = {e.name: e.last_used for e in c.call(p.List()).entries}
        assert moved["bee"] == after.entries[1].last_used


def test_times_are_written_within_the_interval_not_per_read(tmp_path):
    path = tmp_path / "last-used.json"
    written: list[float] = []

    async def run() -> None:
        used = LastUsed(str(path), background=lambda work: (work(), written.append(1)),
                        every=0.2)
        used.unlocked(b"k" * 32)
        for _ in range(50):
            used.touch(["alpha"])
        assert not path.exists()
        await asyncio.sleep(0.4)
        assert path.exists() and len(written) == 1
        used.touch(["beta"])
        used.locked()
        assert len(written) == 2

    asyncio.run(run())
    assert set(json.loads(path.read_text())["used"]) == {name_hmac(b"k" * 32, "alpha"),
                                                         name_hmac(b"k" * 32, "beta")}
