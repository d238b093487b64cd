"""`credd grant ...` and `credd session` as a person and a script run them, against a real
agent (docs/grants.md's Commands)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.cli.conftest import ok, run_on_pty

VALUE = "sk_live_grant_cli"


@pytest.fixture
def cli(unlocked_agent, run_credd):
    ok(run_credd("set", "stripe/key", input=VALUE))
    ok(run_credd("set", "other", input="o"))
    return run_credd


def create(cli, *args: str) -> str:
    done = cli("grant", "create", *args)
    out = ok(done)
    assert out.count("\n") == 1 and out.startswith("g_"), out  # the id alone: G=$(...)
    return out.strip()


def listed(cli, *args: str) -> dict:
    return json.loads(ok(cli("grant", "ls", "--json", *args)))


class TestGrant:
    def test_create_ls_show_revoke(self, cli):
        gid = create(cli, "--names", "stripe/*", "--names", "github/token", "--mode", "use",
                     "--ttl", "2h", "--label", "claude", "--uses", "3",
                     "--command", "git push **", "--confirm")
        table = ok(cli("grant", "ls"))
        assert gid in table and "claude" in table and "0/3" in table
        (grant,) = listed(cli)["grants"]
        assert (grant["id"], grant["mode"], grant["names"], grant["uses"], grant["commands"],
                grant["confirm"], grant["label"]) == (
            gid, "use", ["stripe/*", "github/token"], 3, ["git push **"], True, "claude")
        shown = ok(cli("grant", "show", gid))
        assert "git push **" in shown and "each use" in shown and "claude" in shown
        assert json.loads(ok(cli("grant", "show", gid, "--json")))["id"] == gid

        done = cli("grant", "revoke", gid)
        assert done.returncode == 0 and f"revoked {gid}" in done.stderr
        assert listed(cli)["grants"] == []
        (gone,) = listed(cli, "--all")["grants"]
        assert gone["revoked"] is not None
        assert "revoked" in ok(cli("grant", "show", gid))

    def test_expiry_is_what_ttl_says(self, cli):
        gid = create(cli, "--names", "stripe/key", "--mode", "read", "--ttl", "2h")
        (grant,) = listed(cli)["grants"]
        assert grant["id"] == gid
        assert abs(_epoch(grant["expires"]) - (time.time() + 7200)) < 60

    @pytest.mark.parametrize("args, exit_code, says", [
        (["show", "g_aaaaaaaaaa"], 5, "credd grant ls"),
        (["revoke", "g_aaaaaaaaaa"], 5, "g_aaaaaaaaaa"),
        (["approve", "r_aaaaaaaaaa"], 5, "r_aaaaaaaaaa"),
        (["create", "--names", "x", "--mode", "read", "--ttl", "31d"], 2, "30 days"),
        (["create", "--names", "x", "--mode", "sudo"], 2, "invalid choice"),
    ])
    def test_errors_say_what_to_do(self, cli, args, exit_code, says):
        done = cli("grant", *args)
        assert (done.returncode, says in done.stderr) == (exit_code, True), done.stderr
        assert "Traceback" not in done.stderr

    def test_a_sandbox_grant_prints_its_socket(self, cli):
        done = cli("grant", "create", "--names", "stripe/key", "--mode", "use", "--uid",
                   "nobody", "--command", "/bin/true")
        gid = ok(done).strip()
        assert "uid 65534 reaches it on /" in done.stderr
        assert f"CREDD_AGENT_UID={os.geteuid()}" in done.stderr
        (grant,) = listed(cli)["grants"]
        assert grant["id"] == gid and os.path.exists(grant["socket"])

    @pytest.mark.parametrize("approve, exit_code", [(True, 0), (False, 7)])
    def test_approve_and_deny(self, cli, credd_env, approve, exit_code):
        gid = create(cli, "--names", "stripe/*", "--mode", "read", "--confirm")
        asking = subprocess.Popen(
            [sys.executable, "-m", "credd", "session", "--grant", gid, "--",
             sys.executable, "-m", "credd", "get", "stripe/key"],
            env=credd_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not (pending := listed(cli)["pending"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            (request,) = pending
            assert (request["grant"], request["op"], request["names"]) == (
                gid, "get", ["stripe/key"])
            assert request["id"] in ok(cli("grant", "ls"))  # shown to the owner
            verb = "approve" if approve else "deny"
            done = cli("grant", verb, request["id"])
            assert done.returncode == 0, done.stderr
            out, err = asking.communicate(timeout=20)
        finally:
            asking.kill()
            asking.wait()
        assert asking.returncode == exit_code, err
        assert (out.strip() == VALUE) is approve
        assert listed(cli)["pending"] == []


class TestSession:
    def test_with_a_grant(self, cli):
        gid = create(cli, "--names", "stripe/*", "--mode", "read", "--ttl", "1h")
        done = cli("session", "--grant", gid, "--", sys.executable, "-m", "credd", "get",
                   "stripe/key")
        assert (done.returncode, done.stdout.strip()) == (0, VALUE), done.stderr
        assert f"grant {gid}" in done.stderr
        hidden = cli("session", "--grant", gid, "--", sys.executable, "-m", "credd", "get",
                     "other")
        assert hidden.returncode == 5 and "no entry named 'other'" in hidden.stderr

    def test_made_on_the_spot_with_yes(self, cli):
        done = cli("session", "--names", "stripe/*", "--mode", "use", "--ttl", "1h", "--yes",
                   "--", sys.executable, "-m", "credd", "get", "stripe/key")
        assert done.returncode == 7 and "credd run" in done.stderr, done.stderr
        assert VALUE not in done.stdout + done.stderr
        assert listed(cli)["grants"] == []  # the grant made for the session ends with it
        (made,) = listed(cli, "--all")["grants"]
        assert (made["mode"], made["label"]) == (
            "use", f"session: {os.path.basename(sys.executable)}")
        assert made["revoked"] is not None

    @pytest.mark.parametrize("answer, exit_code", [("y", 0), ("n", 2)])
    def test_made_on_the_spot_after_the_owner_confirms(self, cli, credd_env, answer,
                                                       exit_code):
        code, shown = run_on_pty(
            ["session", "--names", "stripe/*", "--mode", "use", "--", "sh", "-c",
             "echo ran"], credd_env, [answer], prompt=b"[y/N]")
        assert "lend use access to stripe/* for 8h" in shown, shown
        assert code == exit_code, shown
        assert ("ran" in shown.splitlines()) is (answer == "y")
        if answer == "n":
            assert "not confirmed; nothing was lent" in shown
            assert listed(cli, "--all")["grants"] == []

    def test_without_a_terminal_it_asks_for_yes(self, cli, credd_env):
        done = subprocess.run(
            [sys.executable, "-m", "credd", "session", "--names", "stripe/*", "--mode", "use",
             "--", "true"], env=credd_env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=30, start_new_session=True)  # no controlling terminal
        assert done.returncode == 2 and "--yes" in done.stderr, done.stderr
        assert listed(cli, "--all")["grants"] == []


def _epoch(value: float | str) -> float:
    """A time from --json: RFC 3339 text (credd's JSON) or a number."""
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
