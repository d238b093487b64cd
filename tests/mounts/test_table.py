"""The mount table: its file (load, edit in place, checks), and a running agent following it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from credd import paths
from credd.daemon.mounts import config as table_file
from credd.daemon.mounts import table as live
from credd.daemon.mounts.config import MountConfig
from credd.errors import BadRequest, Exists, InsecurePath, NotFound, Unavailable
from credd.protocol import Field, Set
from tests.daemon.memory_store import MemoryStore

ENV = MountConfig(name="platform", backend="env", env_prefix="PLATFORM_CRED_")


def config_file() -> str:
    return paths.config_path()  # the isolated XDG_CONFIG_HOME of the test


class TestFile:
    def test_add_and_remove_keep_the_rest_of_the_file(self):
        path = Path(config_file())
        path.parent.mkdir(mode=0o700)
        path.write_text("# mine\n[policy]\nidle = \"15m\"\n")
        path.chmod(0o600)
        table_file.add(str(path), ENV)
        table_file.add(str(path), MountConfig(name="a.b", backend="files", dir="/run/secrets"))
        assert set(table_file.load(str(path))) == {"platform", "a.b"}
        table_file.remove(str(path), "platform")
        assert path.read_text() == ('# mine\n[policy]\nidle = "15m"\n\n[mounts."a.b"]\n'
                                    'backend = "files"\ndir = "/run/secrets"\n')
        assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
        with pytest.raises(NotFound):
            table_file.remove(str(path), "platform")
        with pytest.raises(Exists):
            table_file.add(str(path), MountConfig(name="a.b", backend="env", env_prefix="X_"))

    @pytest.mark.parametrize("text, why", [
        ("[mounts.x\n", "not valid TOML"),
        ('[mounts.x]\nbackend = "ftp"\n', "unknown backend 'ftp'"),
        ('[mounts.x]\nbackend = "env"\n', "needs env_prefix"),
        ('[mounts.x]\nbackend = "env"\nenv_prefix = "A_"\nurl = "http://h"\n',
         "url is not an option of the env backend"),
        ('[mounts.x]\nbackend = "openbao"\nurl = "http://h"\ntoken = "s.abc"\n',
         "must be a credd://NAME reference"),
        ('[mounts.x]\nbackend = "files"\ndir = "rel"\n', "absolute path"),
        ('[mounts.x]\nbackend = "env"\nenv_prefix = "A_"\nextra = 1\n', "unknown field"),
        ("mounts = 3\n", "one [mounts.NAME] per mount"),
    ])
    def test_a_bad_table_says_where_and_why(self, text, why):
        with pytest.raises(BadRequest) as raised:
            table_file.parse(text, "config.toml")
        assert raised.value.message.startswith("config.toml: ") and why in raised.value.message

    def test_a_file_others_can_reach_is_refused(self):
        path = Path(config_file())
        table_file.add(str(path), ENV)
        path.chmod(0o644)
        with pytest.raises(InsecurePath, match="chmod 600"):
            table_file.load(str(path))


class TestLive:
    """MountTable in this process: a factory that fails, then works."""

    def test_a_mount_that_fails_to_open_keeps_its_names_and_is_retried(self, monkeypatch):
        path = config_file()
        table_file.add(path, ENV)
        audited: list[str] = []
        mounts = live.MountTable(path, lambda name, key: audited.append(name))
        attempts: list[int] = []

        def failing(config, resolve):
            attempts.append(1)
            raise Unavailable("mount 'platform': not yet")

        working = live.BACKENDS["env"]
        monkeypatch.setitem(live.BACKENDS, "env", failing)
        monkeypatch.setattr(live, "RETRY", 0.0)
        local = MemoryStore()
        local.put(Set(name="platform/x", value="local"))
        router = mounts.router(local)
        with pytest.raises(Unavailable, match="not yet"):
            router.get("platform/x")  # never the hidden local entry
        assert [i.state for i in mounts.infos()] == ["error"]
        assert "1 local entry under platform/ is hidden" in mounts.infos()[0].warnings[0]
        mounts.router(local)
        assert len(attempts) == 2
        monkeypatch.setitem(live.BACKENDS, "env", working)
        with pytest.raises(NotFound, match="in mount 'platform'"):
            mounts.router(local).get("platform/x")
        assert [i.state for i in mounts.infos()] == ["ok"]

    def test_credentials_come_from_the_local_vault_and_are_audited(self):
        path = config_file()
        table_file.add(path, ENV)
        audited: list[str] = []
        mounts = live.MountTable(path, lambda name, key: audited.append(name))
        local = MemoryStore()
        local.put(Set(name="openbao", fields=[Field(name="token", value="t0k")]))
        mounts.reload()
        resolve = mounts._resolver(local)
        assert resolve("credd://openbao/token") == "t0k" and audited == ["openbao"]
        with pytest.raises(BadRequest, match="local vault, not of a mount"):
            resolve("credd://platform/token")


class TestAgent:
    def test_the_table_is_followed_without_a_restart(self, unlocked_agent, run_credd, tmp_path):
        secrets = tmp_path / "secrets"
        secrets.mkdir(mode=0o700)
        (secrets / "x").write_text("mounted")
        with unlocked_agent.client() as c:
            c.set("run/x", value="local")
            added = run_credd("mount", "add", "run", "--backend", "files", "--dir", str(secrets))
            assert "1 local entry under run/ will be hidden" in added.stderr
            assert c.get("run/x") == "mounted"
            status = c.status()
            assert status.mounts[0].name == "run"
            assert any("1 local entry under run/ is hidden" in w for w in status.mounts[0].warnings)
            assert run_credd("mount", "rm", "run").returncode == 0
            assert c.get("run/x") == "local"
            assert c.status().mounts == []

    def test_a_broken_file_keeps_the_last_good_table(self, unlocked_agent, run_credd, tmp_path):
        secrets = tmp_path / "secrets"
        secrets.mkdir(mode=0o700)
        (secrets / "x").write_text("mounted")
        run_credd("mount", "add", "run", "--backend", "files", "--dir", str(secrets), check=True)
        path = Path(config_file())
        with unlocked_agent.client() as c:
            assert c.get("run/x") == "mounted"
            path.write_text(path.read_text() + "[mounts.oops\n")
            assert c.get("run/x") == "mounted"
            assert "not valid TOML" in c.status().config_error
            assert "the last good table is in force" in run_credd("status").stdout
            path.write_text(path.read_text().replace("[mounts.oops\n", ""))
            assert c.status().config_error == ""
        assert "not valid TOML" in unlocked_agent.log()

    def test_a_failing_mount_leaves_the_local_vault_alone(self, unlocked_agent, run_credd,
                                                          tmp_path):
        gone = tmp_path / "gone"
        run_credd("mount", "add", "run", "--backend", "files", "--dir", str(gone), check=True)
        with unlocked_agent.client() as c:
            c.set("local/a", value="fine")
            assert c.get("local/a") == "fine"
            with pytest.raises(Unavailable, match="mount 'run'"):
                c.get("run/x")
            assert [e.name for e in c.list()] == ["local/a"]
            assert c.status().mounts[0].state == "error"
        listed = run_credd("ls")
        assert listed.returncode == 0 and "local/a" in listed.stdout
        assert "mount run (error): its entries are not listed" in listed.stderr
        failed = run_credd("get", "run/x")
        assert failed.returncode == 1 and "mount 'run'" in failed.stderr

    def test_mount_ls_without_an_agent_and_as_json(self, run_credd):
        run_credd("mount", "add", "platform", "--backend", "env", "--prefix", "P_", check=True)
        shown = run_credd("mount", "ls")
        assert shown.returncode == 0 and "platform  env" in shown.stdout
        assert "no agent answers" in shown.stderr
        data = json.loads(run_credd("mount", "ls", "--json").stdout)
        assert data == [{"name": "platform", "backend": "env", "env_prefix": "P_",
                         "location": "$P_*", "state": None, "message": "", "warnings": []}]
        assert os.stat(config_file()).st_mode & 0o777 == 0o600
