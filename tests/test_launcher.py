"""The installed `credd` launcher (credd/launcher.py), run for real against a real agent.

The launcher's interpreter runs with `-I -S`, so `credd get` skips `site`;
every other command loads site-packages and goes on into argparse in the
same process. These tests write a launcher into a temporary bin directory
with this interpreter and run it as a user's shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from credd import launcher, protocol
from tests.conftest import REPO, Agent


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    launcher.install(str(path))
    return path


@pytest.fixture
def stored(unlocked_agent: Agent) -> Agent:
    with unlocked_agent.client() as c:
        c.set("svc/token", value="s3cret value",
              fields=[protocol.Field(name="user", value="ann", secret=False)])
    return unlocked_agent


def credd(bin_dir: Path, *args: str,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "credd"), *args], env=env, capture_output=True,
                          text=True, timeout=30)


class TestInstall:
    def test_first_line_carries_the_flags_and_the_venv_interpreter(self, bin_dir):
        first = (bin_dir / "credd").read_text().splitlines()[0]
        assert first == f"#!{sys.executable} -IS"
        assert os.path.dirname(sys.executable).endswith("bin")  # the venv's, not resolved

    def test_mode_and_no_temporary_left(self, bin_dir):
        assert (bin_dir / "credd").stat().st_mode & 0o777 == 0o755
        assert os.listdir(bin_dir) == ["credd"]

    def test_replaces_pips_script_and_is_idempotent(self, tmp_path):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "credd").write_text("#!/usr/bin/python\n# pip's console script\n")
        launcher.install(str(bin_dir))
        first = (bin_dir / "credd").read_bytes()
        assert b"-IS" in first and b"pip's" not in first
        subprocess.run([sys.executable, "-m", "credd.launcher", "install", str(bin_dir)],
                       check=True, timeout=30)
        assert (bin_dir / "credd").read_bytes() == first
        assert os.listdir(bin_dir) == ["credd"]

    def test_usage_error(self):
        assert launcher.main(["install"]) == 2

    def test_long_interpreter_path_goes_through_sh(self, tmp_path, stored, credd_env):
        """Over 127 bytes, or with a blank, a shebang cannot carry the interpreter."""
        deep = tmp_path / ("d" * 60) / "with blank" / ("e" * 60)
        deep.mkdir(parents=True)
        python = deep / "python"
        python.symlink_to(sys.executable)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        launcher.install(str(bin_dir), python=str(python))
        assert (bin_dir / "credd").read_text().startswith("#!/bin/sh\n")
        done = credd(bin_dir, "get", "svc/token", env=credd_env)
        assert (done.returncode, done.stdout) == (0, "s3cret value\n")


class TestCommands:
    def test_get(self, bin_dir, stored, credd_env):
        done = credd(bin_dir, "get", "svc/token", env=credd_env)
        assert (done.returncode, done.stdout, done.stderr) == (0, "s3cret value\n", "")
        done = credd(bin_dir, "get", "-n", "svc/token/user", env=credd_env)
        assert (done.returncode, done.stdout) == (0, "ann")

    def test_status_json(self, bin_dir, stored, credd_env):
        done = credd(bin_dir, "status", "--json", env=credd_env)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert (status["state"], status["socket"]) == ("unlocked", stored.socket)

    def test_a_command_the_fast_path_declines(self, bin_dir, stored, credd_env):
        done = credd(bin_dir, "ls", "--json", env=credd_env)
        assert done.returncode == 0, done.stderr
        assert [e["name"] for e in json.loads(done.stdout)] == ["svc/token"]

    def test_help_and_exit_codes(self, bin_dir, credd_env):
        done = credd(bin_dir, "--help", env=credd_env)
        assert done.returncode == 0 and done.stdout.startswith("usage: credd")
        assert credd(bin_dir, "get", "x", env=credd_env).returncode == 4  # no agent
        assert credd(bin_dir, "no-such-command", env=credd_env).returncode == 2

    def test_pythonpath_is_ignored(self, bin_dir, stored, credd_env, tmp_path):
        """Isolated mode: a `credd` package planted on PYTHONPATH is never imported."""
        planted = tmp_path / "planted" / "credd"
        planted.mkdir(parents=True)
        (planted / "__init__.py").write_text("raise SystemExit('planted credd imported')\n")
        env = {**credd_env, "PYTHONPATH": str(planted.parent)}
        for args in (["get", "svc/token"], ["ls"]):
            done = credd(bin_dir, *args, env=env)
            assert done.returncode == 0 and "planted" not in done.stderr, done.stderr


def imported(bin_dir: Path, env: dict[str, str], *args: str) -> set[str]:
    """Modules imported by the launcher's script under its own flags (-X importtime)."""
    first = (bin_dir / "credd").read_text().splitlines()[0]
    python, flags = first[2:].split(" ")
    done = subprocess.run([python, flags, "-X", "importtime", str(bin_dir / "credd"), *args],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}


class TestFastPathSkipsSite:
    def test_get_and_status_never_import_site(self, bin_dir, stored, credd_env):
        for args in (["get", "svc/token"], ["status"]):
            modules = imported(bin_dir, credd_env, *args)
            assert "credd.cli.fast" in modules
            assert not modules & {"site", "credd.launcher", "msgspec", "argparse"}, args

    def test_other_commands_load_site_and_the_editable_checkout(self, bin_dir, stored,
                                                                  credd_env):
        modules = imported(bin_dir, credd_env, "ls")
        assert {"site", "credd.launcher", "argparse", "msgspec"} <= modules

    def test_site_order_is_a_normal_start(self, bin_dir, credd_env):
        """After site.main(), sys.path is what `python -m credd` sees (less the cwd)."""
        probe = "import sys; print(repr(sys.path))"
        normal = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True,
                                text=True, timeout=30, check=True).stdout
        code = (f"import sys; sys.path.append({str(REPO)!r})\n"
                f"from credd.launcher import _load_site\n_load_site({str(REPO)!r})\n{probe}")
        launched = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True,
                                  text=True, timeout=30, check=True).stdout
        assert launched == normal
