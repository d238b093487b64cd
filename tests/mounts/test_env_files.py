"""The env and files mounts through a real agent, the CLI and the helpers."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from credd.errors import Denied, NotFound
from tests.conftest import SENTINEL

DB = {"username": "app", "host": "db.internal", "password": "pg-secret-1", "port": 5432}


@pytest.fixture
def env_agent(make_agent, credd_env, run_credd):
    """An unlocked agent started with PLATFORM_CRED_* variables, an env mount `platform`."""
    env = dict(credd_env, PLATFORM_CRED_DB=json.dumps(DB), PLATFORM_CRED_API_KEY=SENTINEL,
               PLATFORM_CRED_X="1", PLATFORM_CRED_x="2")
    done = run_credd("mount", "add", "platform", "--backend", "env", "--prefix",
                     "PLATFORM_CRED_")
    assert done.returncode == 0, done.stderr
    agent = make_agent(env=env)
    agent.init_and_unlock()
    return agent


def secrets_dir(root: Path, files: dict[str, str], mode: int = 0o600) -> Path:
    root.mkdir(mode=0o700, exist_ok=True)
    for name, value in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(value)
        (root / name).chmod(mode)
    return root


def k8s_generation(root: Path, stamp: str, files: dict[str, str], *, link: bool = True) -> None:
    """What the kubelet does: a new timestamped directory, one rename of ..data, then a
    link per new key (`link=False` stops before those: the moment a naive reader of the
    top-level links sees the old key set)."""
    secrets_dir(root / stamp, files)
    (root / "..data_tmp").symlink_to(stamp)
    os.rename(root / "..data_tmp", root / "..data")
    for name in files if link else ():
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


class TestEnv:
    def test_json_object_is_a_multi_field_entry_and_plain_is_a_value(self, env_agent, run_credd):
        with env_agent.client() as c:
            meta = c.describe("platform/db")
            assert meta.mount == "platform" and not meta.has_value
            assert meta.fields == {"username": "app", "host": "db.internal", "port": "5432"}
            assert meta.secret_fields == ("password",)
            assert c.get("platform/db", "password") == "pg-secret-1"
            assert c.get("platform/api_key") == SENTINEL
        assert run_credd("get", "platform/db/password").stdout == "pg-secret-1\n"

    def test_ls_shows_the_mount(self, env_agent, run_credd):
        with env_agent.client() as c:
            c.set("local/one", value="v")
        listed = json.loads(run_credd("ls", "--json").stdout)
        assert {e["name"]: e["mount"] for e in listed} == {
            "local/one": "", "platform/api_key": "platform", "platform/db": "platform"}
        table = run_credd("ls").stdout.splitlines()
        assert table[0].split()[-1] == "MOUNT"
        assert any(line.startswith("platform/db") and line.rstrip().endswith("platform")
                   for line in table)

    def test_writes_are_refused_clearly(self, env_agent, run_credd):
        with env_agent.client() as c:
            for write in (lambda: c.set("platform/db", value="x"),
                          lambda: c.delete("platform/api_key"), lambda: c.set("platform/new")):
                with pytest.raises(Denied, match="platform is a read-only mount .backend env."):
                    write()
        done = run_credd("rm", "platform/db")
        assert done.returncode == 7 and "read-only mount" in done.stderr

    def test_a_case_clash_serves_neither_and_says_so(self, env_agent, run_credd):
        with env_agent.client() as c, pytest.raises(NotFound):
            c.get("platform/x")
        shown = run_credd("mount", "ls").stdout
        assert "$PLATFORM_CRED_X, $PLATFORM_CRED_x all map to platform/x" in shown

    def test_credd_run_resolves_a_mounted_reference(self, env_agent, run_credd):
        code = "import os; print(os.environ['DB_PW'] == 'pg-secret-1', os.environ['K'][:3])"
        done = run_credd("run", "--env", "DB_PW=credd://platform/db/password",
                         "--env", "K=credd://platform/api_key", "--", sys.executable, "-c", code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("True") and SENTINEL not in done.stdout  # masked

    def test_a_grant_covers_mounted_names_as_it_covers_local_ones(self, env_agent, run_credd):
        """Grants filter by name before the router picks a store: a read grant on
        `platform/*` reads the mount and nothing else; a use grant runs with its values."""
        run_credd("set", "local/a", input="local-value")
        made = run_credd("grant", "create", "--names", "platform/*", "--mode", "read",
                         "--ttl", "1h")
        assert made.returncode == 0, made.stderr
        grant = made.stdout.strip()

        def bound(*argv: str):
            return run_credd("session", "--grant", grant, "--", sys.executable, "-m", "credd",
                             *argv)

        got = bound("get", "platform/db/password")
        assert (got.returncode, got.stdout.strip()) == (0, "pg-secret-1"), got.stderr
        hidden = bound("get", "local/a")
        assert hidden.returncode == 5 and "local-value" not in hidden.stdout
        listed = bound("ls", "--json")
        names = {e["name"] for e in json.loads(listed.stdout)}
        assert "platform/db" in names and "local/a" not in names
        use = run_credd("grant", "create", "--names", "platform/api_key", "--mode", "use",
                        "--ttl", "1h").stdout.strip()
        code = "import os; print(len(os.environ['K']), os.environ['K'])"
        ran = run_credd("session", "--grant", use, "--", sys.executable, "-m", "credd", "run",
                        "--env", "K=credd://platform/api_key", "--", sys.executable, "-c", code)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.startswith(f"{len(SENTINEL)} ") and SENTINEL not in ran.stdout
        refused = run_credd("session", "--grant", use, "--", sys.executable, "-m", "credd",
                            "get", "platform/api_key")
        assert refused.returncode != 0 and SENTINEL not in refused.stdout

    def test_audit_records_name_the_mount(self, env_agent):
        with env_agent.client() as c:
            c.get("platform/api_key")
            c.set("local/a", value="v")
            c.get("local/a")
            records = [(r.op, r.mount) for r in c.audit(limit=20)]
        assert ("get", "platform") in records and ("get", "") in records

    def test_lock_closes_it_and_unlock_opens_it(self, env_agent):
        with env_agent.client() as c:
            c.lock()
            assert c.status().mounts[0].state == "locked"
            from tests.conftest import TEST_PASSPHRASE
            c.unlock(TEST_PASSPHRASE)
            assert c.get("platform/api_key") == SENTINEL
            assert c.status().mounts[0].state == "ok"


class TestFiles:
    def test_docker_secrets(self, unlocked_agent, run_credd, tmp_path):
        root = secrets_dir(tmp_path / "secrets", {"db_password": "hunter2\n", "api": "k",
                                                  "nested/token": "t"})
        assert run_credd("mount", "add", "run", "--backend", "files", "--dir",
                         str(root)).returncode == 0
        assert run_credd("get", "run/db_password").stdout == "hunter2\n"  # one newline dropped
        with unlocked_agent.client() as c:
            assert [e.name for e in c.list(prefix="run/")] == ["run/api", "run/db_password",
                                                               "run/nested/token"]
            (root / "db_password").write_text("changed")
            assert c.get("run/db_password") == "changed"  # re-read at every request
            (root / "new").write_text("n")
            assert c.get("run/new") == "n"
            with pytest.raises(Denied, match="read-only mount .backend files."):
                c.set("run/api", value="x")

    def test_kubernetes_data_swap_is_seen_whole(self, unlocked_agent, run_credd, tmp_path):
        root = tmp_path / "vol"
        root.mkdir(mode=0o700)
        k8s_generation(root, "..2026_01_01_00_00_00.1", {"user": "u1", "password": "p1"})
        assert run_credd("mount", "add", "k8s", "--backend", "files", "--dir",
                         str(root)).returncode == 0
        with unlocked_agent.client() as c:
            assert [e.name for e in c.list(prefix="k8s/")] == ["k8s/password", "k8s/user"]
            assert c.get_many(["credd://k8s/user", "credd://k8s/password"]) == {
                "credd://k8s/user": "u1", "credd://k8s/password": "p1"}
            k8s_generation(root, "..2026_01_02_00_00_00.2", {"user": "u2", "extra": "e"},
                           link=False)
            shutil.rmtree(root / "..2026_01_01_00_00_00.1")  # as the kubelet does after the swap
            # the top level still has the old links (password dangles, extra has none):
            # the mount lists and reads the generation ..data points to
            assert [e.name for e in c.list(prefix="k8s/")] == ["k8s/extra", "k8s/user"]
            assert c.get_many(["credd://k8s/user", "credd://k8s/extra"]) == {
                "credd://k8s/user": "u2", "credd://k8s/extra": "e"}
            k8s_generation(root, "..2026_01_03_00_00_00.3", {"user": "u3", "password": "p3",
                                                            "extra": "e"})
            assert c.get_many(["credd://k8s/user", "credd://k8s/password"]) == {
                "credd://k8s/user": "u3", "credd://k8s/password": "p3"}
            assert [e.name for e in c.list(prefix="k8s/")] == ["k8s/extra", "k8s/password",
                                                               "k8s/user"]

    def test_loose_files_are_served_and_reported(self, unlocked_agent, run_credd, tmp_path):
        root = secrets_dir(tmp_path / "s", {"shared": "v"}, mode=0o640)
        (root / "escape").symlink_to("/etc/hostname")
        run_credd("mount", "add", "run", "--backend", "files", "--dir", str(root), check=True)
        with unlocked_agent.client() as c:
            assert c.get("run/shared") == "v"
            with pytest.raises(NotFound):
                c.get("run/escape")  # never a link out of the directory
        for shown in (run_credd("mount", "ls").stdout, run_credd("status").stdout):
            assert "shared (0640)" in shown and "escape (a link out of the directory)" in shown

    def test_git_helper_reads_a_mounted_entry(self, unlocked_agent, run_credd, credd_env,
                                              tmp_path):
        from tests.scripting.test_helpers import git_runner, installed, parse
        git_bin = shutil.which("git")
        if not git_bin:
            pytest.skip("git is not installed")
        root = secrets_dir(tmp_path / "git", {"https/git.example.com@alice": "gitpw-mounted\n"})
        run_credd("mount", "add", "git", "--backend", "files", "--dir", str(root), check=True)
        git = git_runner(git_bin, credd_env, tmp_path / "gitconfig",
                         installed("git-credential-credd"))
        done = git("fill", {"protocol": "https", "host": "git.example.com"})
        assert done.returncode == 0, done.stderr
        assert parse(done.stdout)["password"] == "gitpw-mounted"
        assert parse(done.stdout)["username"] == "alice"
