"""The openbao mount through the real agent and the real `credd` command: the mount table
in config.toml, the token a `credd://` entry of the local vault, entries under `team/`."""

from __future__ import annotations

import sys

import pytest

from credd.daemon.mounts.config import MountConfig, add
from tests.conftest import SENTINEL, assert_no_sentinel
from tests.mounts.bao import ROOT_TOKEN

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def mounted(bao, prefix, unlocked_agent, isolated_env, tmp_path):
    """An unlocked agent whose mount `team` is the test's prefix on the shared server."""
    from credd.paths import config_path
    with unlocked_agent.client() as c:
        c.set("openbao/token", value=ROOT_TOKEN)
    add(config_path(), MountConfig(name="team", backend="openbao", url=bao.url, prefix=prefix,
                                   token="credd://openbao/token", revalidate=0.2))
    return unlocked_agent


def test_get_set_ls_and_history_on_a_mounted_entry(mounted, run_credd, bao, prefix):
    bao.bao("kv", "put", "-mount=secret", f"{prefix}prod/db", f"value={SENTINEL}",
            "user=app")
    got = run_credd("get", "team/prod/db")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == SENTINEL
    assert run_credd("get", "team/prod/db/user").stdout.strip() == "app"
    assert run_credd("set", "team/prod/api", "--value-stdin", input="k1\n").returncode == 0
    held = bao.client().secrets.kv.v2.read_secret_version(
        f"{prefix}prod/api", mount_point="secret", raise_on_deleted_version=True)["data"]
    assert held["data"] == {"value": "k1"}
    listed = run_credd("ls", "team/")
    assert "team/prod/api" in listed.stdout and "team/prod/db" in listed.stdout
    run_credd("set", "team/prod/api", "--value-stdin", input="k2\n", check=True)
    history = run_credd("history", "team/prod/api")
    assert history.returncode == 0 and "1" in history.stdout
    assert_no_sentinel(mounted.state_dir)


def test_credd_run_puts_a_mounted_secret_in_a_childs_environment(mounted, run_credd, bao,
                                                                prefix):
    bao.bao("kv", "put", "-mount=secret", f"{prefix}ci/token", f"value={SENTINEL}")
    code = f"import os; print(os.environ['TOKEN'] == {SENTINEL!r})"
    ran = run_credd("run", "--env", "TOKEN=credd://team/ci/token", "--", sys.executable, "-c",
                    code)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "True"


def test_a_conflict_and_an_unreachable_server_are_clear_errors(mounted, run_credd, bao,
                                                                prefix):
    run_credd("set", "team/db", "--value-stdin", input="mine\n", check=True)
    bao.client().secrets.kv.v2.create_or_update_secret(f"{prefix}db", {"value": "theirs"},
                                                       mount_point="secret")
    clash = run_credd("set", "team/db", "--value-stdin", input="again\n")
    assert clash.returncode == 1 and "mount 'team'" in clash.stderr
    assert "changed on the server" in clash.stderr


def test_lock_drops_the_mount_and_unlock_opens_it_again(mounted, run_credd, bao, prefix):
    bao.bao("kv", "put", "-mount=secret", f"{prefix}db", "value=v")
    assert run_credd("get", "team/db").stdout.strip() == "v"
    run_credd("lock", check=True)
    assert run_credd("get", "team/db").returncode == 3
    with mounted.client() as c:
        c.unlock("correct horse battery staple")
    assert run_credd("get", "team/db").stdout.strip() == "v"
