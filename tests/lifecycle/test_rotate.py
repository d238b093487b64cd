"""`credd rotate`: a new value staged in the vault, checked, made current only if it works."""

from __future__ import annotations

import signal

import pytest

from credd.errors import BadRequest, Conflict, NotFound
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.tools import need

OLD, NEW = "old-token-0f3a9c51e2", SENTINEL


def curl_check(url: str) -> str:
    """The brief's own example: the token in a header, as an argument of curl."""
    return f'curl -fsS -H "Authorization: Bearer credd://api/token" {url}'


def env_check(python: str, url: str) -> str:
    """The same request with the token in the environment only."""
    code = ("import os, urllib.request as u; r = u.Request(os.environ['URL'], headers="
            "{'Authorization': 'Bearer ' + os.environ['TOKEN']}); print(u.urlopen(r).read())")
    return f"TOKEN=credd://api/token URL={url} {python} -c \"{code}\""


@pytest.fixture
def api(client, run_credd, token_server):
    """An entry whose check asks the token server; the server accepts the NEW token."""
    need("curl", "the rotation check runs curl")
    client.set("api/token", kind="api_key", value=OLD)
    done = run_credd("set", "api/token", "--verify-cmd", curl_check(token_server.url))
    assert done.returncode == 0 and "every local user can read" in done.stderr
    token_server.accepted = NEW
    return token_server


def test_a_passing_check_makes_the_new_value_current(client, run_credd, api):
    done = run_credd("rotate", "api/token", "--value-stdin", "--verify", input=NEW)
    assert done.returncode == 0, done.stderr
    assert "rotated api/token: version 3 is current" in done.stdout
    assert "`credd restore api/token 2`" in done.stdout
    assert SENTINEL not in done.stdout + done.stderr
    assert api.seen == [NEW]
    assert client.get("api/token") == NEW and client.describe("api/token").pending is None
    assert client.inspect("api/token").verification.outcome == "ok"
    assert run_credd("restore", "api/token", "2").returncode == 0
    assert client.get("api/token") == OLD


def test_a_failing_check_keeps_the_old_value_and_the_new_one_pending(client, run_credd, api):
    api.accepted = "something else"
    done = run_credd("rotate", "api/token", "--value-stdin", "--verify", input=NEW)
    assert done.returncode == 1
    assert "FAILED" in done.stderr and "exit 22" in done.stderr
    assert "the current value of api/token stays current" in done.stderr
    assert SENTINEL not in done.stdout + done.stderr
    assert client.get("api/token") == OLD
    assert client.get_pending("api/token") == NEW
    seen = client.inspect("api/token")
    assert seen.verification.outcome == "failed" and seen.verification.exit_status == 22
    assert "pending" in [r.reason for r in seen.reasons]
    assert "pending:" in run_credd("show", "api/token").stdout
    api.accepted = NEW  # fixed on the server side: finish, checking first
    done = run_credd("rotate", "api/token", "--finish", "--verify")
    assert done.returncode == 0, done.stderr
    assert client.get("api/token") == NEW


def test_the_check_s_output_is_masked(client, run_credd, token_server):
    """The server quotes the token it refused: the value must not reach the terminal."""
    client.set("api/token", value=NEW)
    run_credd("set", "api/token", "--verify-cmd",
              f"curl -sS -H 'Authorization: Bearer credd://api/token' {token_server.url}"
              " -w '%{http_code}' --fail-with-body", check=True)
    need("curl")
    done = run_credd("verify", "api/token")
    assert done.returncode == 1 and "bad token: <concealed by credd>" in done.stdout
    assert SENTINEL not in done.stdout + done.stderr


def test_abandon_drops_the_pending_value(client, run_credd, api):
    assert run_credd("rotate", "api/token", "--value-stdin", "--stage", input=NEW).returncode == 0
    assert client.get("api/token") == OLD and client.get_pending("api/token") == NEW
    with pytest.raises(Conflict, match="already has a new value pending"):
        client.rotate("api/token", "yet another value")
    done = run_credd("rotate", "api/token", "--abandon")
    assert done.returncode == 0 and "current value stays" in done.stdout
    with pytest.raises(NotFound, match="no pending value"):
        client.get_pending("api/token")
    assert client.history("api/token").versions[0].version == 1  # no version was made


def test_a_pending_value_survives_the_agent_s_crash(unlocked_agent, run_credd, api):
    with unlocked_agent.client() as c:
        c.rotate("api/token", NEW)
        staged = c.describe("api/token")
    unlocked_agent.signal(signal.SIGKILL)
    unlocked_agent.proc.wait(10)
    unlocked_agent.start()
    with unlocked_agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
        assert c.describe("api/token").pending == staged.pending
        assert c.get("api/token") == OLD  # `get` never serves the pending value
        assert c.reveal("api/token").value == OLD
    assert run_credd("rotate", "api/token", "--pending").stdout == NEW + "\n"
    assert run_credd("rotate", "api/token", "--finish", "--verify").returncode == 0
    with unlocked_agent.client() as c:
        assert c.get("api/token") == NEW
        assert all(c.reveal("api/token", v.version).value == OLD
                   for v in c.history("api/token").versions[:1])


def test_the_environment_form_keeps_the_value_out_of_argv(client, run_credd, token_server):
    import sys
    client.set("api/token", value=NEW)
    done = run_credd("set", "api/token", "--verify-cmd", env_check(sys.executable,
                                                                   token_server.url))
    assert done.returncode == 0 and "every local user" not in done.stderr
    token_server.accepted = NEW
    done = run_credd("verify", "api/token")
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr


def test_generate_makes_a_value_of_the_generator_s_length(client, run_credd):
    client.set("pw", kind="password", value="old password value")
    done = run_credd("rotate", "pw", "--generate")
    assert done.returncode == 0, done.stderr
    value = client.get("pw")
    assert len(value) == 24 and value not in done.stdout + done.stderr
    assert client.due(unused=0.0).entries == []  # long enough, fresh


def test_what_cannot_be_rotated(client, run_credd, tmp_path):
    client.set("plain", value="a value without a check")
    done = run_credd("rotate", "plain", "--value-stdin", "--verify", input="new value")
    assert done.returncode == 2 and "has no check" in done.stderr
    assert client.describe("plain").pending is None  # refused before anything was written
    with pytest.raises(NotFound):
        client.finish_rotation("missing")
    with pytest.raises(NotFound, match="no pending value"):
        client.finish_rotation("plain")
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "x").write_text("mounted value")
    run_credd("mount", "add", "run", "--backend", "files", "--dir", str(secrets), check=True)
    with pytest.raises(BadRequest, match="on mount 'run'"):
        client.rotate("run/x", "new value")
    assert run_credd("rotate", "plain", "--stage", "--finish").returncode == 2
