"""`token_create`, `token_list` and `token_revoke` through the real agent, against a real
OpenBao dev server mounted as `team` (tests/mounts/bao.py)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from credd import protocol as p
from credd.daemon.mounts.config import MountConfig, add
from credd.errors import BadRequest, NotFound
from tests.mounts.bao import ROOT_TOKEN, BaoServer

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def bao(tmp_path_factory):
    server = BaoServer(tmp_path_factory.mktemp("bao")).start()
    yield server
    server.stop()


@pytest.fixture
def client(bao, unlocked_agent):
    """A client of an agent with the mount `team` (prefix apps/) and the local `env` mount."""
    from credd.paths import config_path
    with unlocked_agent.client() as c:
        c.set("openbao/token", value=ROOT_TOKEN)
        add(config_path(), MountConfig(name="team", backend="openbao", url=bao.url,
                                       prefix="apps/", token="credd://openbao/token"))
        add(config_path(), MountConfig(name="platform", backend="env",
                                       env_prefix="PLATFORM_CRED_"))
        yield c


def test_create_list_and_revoke_through_the_agent(client, bao, unlocked_agent):
    made = client.call(p.TokenCreate(mount="team", paths=["prod/*"], ttl=3600.0,
                                     read_only=True))
    assert made.info.accessor and made.info.paths == ("prod/*",)
    assert bao.client(made.token).auth.token.lookup_self()["data"]["accessor"] == \
        made.info.accessor
    listed = client.call(p.TokenList()).tokens
    assert [t.accessor for t in listed] == [made.info.accessor]
    assert listed[0].expires is not None and listed[0].policies == made.info.policies
    book = os.path.join(unlocked_agent.state_dir, "tokens.json")
    assert stat.S_IMODE(os.stat(book).st_mode) == 0o600
    with open(book) as f:
        text = f.read()
    assert made.info.accessor in text and made.token not in text
    audit = [json.loads(line) for line in open(os.path.join(unlocked_agent.state_dir,
                                                            "audit.jsonl"))]
    assert any(r["op"] == "token_create" and r["outcome"] == "ok" for r in audit)
    client.call(p.TokenRevoke(accessor=made.info.accessor))
    assert client.call(p.TokenList(mount="team")).tokens == []
    with pytest.raises(NotFound):
        client.call(p.TokenRevoke(accessor=made.info.accessor))


def test_a_token_revoked_elsewhere_drops_out_of_the_list(client, bao):
    made = client.call(p.TokenCreate(mount="team", paths=["ci/*"]))
    bao.client().auth.token.revoke_accessor(made.info.accessor)
    assert client.call(p.TokenList()).tokens == []


def test_tokens_need_an_openbao_mount(client):
    with pytest.raises(NotFound, match="no mount named 'nope'"):
        client.call(p.TokenCreate(mount="nope", paths=["x"]))
    with pytest.raises(BadRequest, match="env mount"):
        client.call(p.TokenCreate(mount="platform", paths=["x"]))


def test_the_cli_prints_the_token_once_on_stdout(client, run_credd, bao):
    made = run_credd("token", "create", "--mount", "team", "--paths", "prod/*,ci/*",
                     "--ttl", "1h", "--read-only")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token and token not in made.stderr and "accessor" in made.stderr
    accessor = bao.client(token).auth.token.lookup_self()["data"]["accessor"]
    listed = run_credd("token", "ls")
    assert accessor in listed.stdout and token not in listed.stdout
    wrapped = run_credd("token", "create", "--mount", "team", "--paths", "prod/*", "--wrap",
                        "--json")
    data = json.loads(wrapped.stdout)
    assert data["wrapped"] is True
    assert bao.client(data["token"]).sys.unwrap()["auth"]["accessor"] == data["accessor"]
    assert run_credd("token", "revoke", accessor).returncode == 0
    assert accessor not in run_credd("token", "ls").stdout
