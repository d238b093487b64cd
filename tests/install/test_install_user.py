"""What a new user runs to install credd: `make install-user`, and the venv check of `make`.

`make install-user` is run for real (a private venv, pip, the launcher, the
links) in the throwaway HOME every test gets; it takes a while, so it is one
test. The stale-venv check (scripts/check-venv.sh) runs on every `make`
before the stamps are looked at; it is tested directly on small fake venvs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.install import PIP_CACHE

CHECK = REPO / "scripts" / "check-venv.sh"
COMMANDS = ("credd", "credtui", "git-credential-credd", "docker-credential-credd")


def make(target: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    # PYTHON is this venv's interpreter, so the check of the checkout's own .venv is a no-op.
    return subprocess.run(["make", "-s", "-C", str(REPO), target, f"PYTHON={sys.executable}"],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(600)
def test_make_install_user(unlocked_agent, credd_env, isolated_env):
    with unlocked_agent.client() as c:
        c.set("deploy/key", value="k-123")
    home = Path(isolated_env["HOME"])
    bin_dir = home / ".local" / "bin"
    venv = Path(isolated_env["XDG_DATA_HOME"]) / "credd-venv"
    env = {**credd_env, "PIP_CACHE_DIR": PIP_CACHE, "PATH": os.environ["PATH"]}
    env.pop("PYTHONPATH")  # the installed credd must stand on its own

    done = make("install-user", env, timeout=540)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"installed in {venv}" in done.stdout and "NOT on your PATH" in done.stdout
    for name in COMMANDS:
        assert os.readlink(bin_dir / name) == str(venv / "bin" / name)
    assert (venv / "bin" / "credd").read_text().startswith(f"#!{venv}/bin/python -IS\n")
    assert not list(venv.glob("lib/python*/site-packages/__editable__*"))  # a real install

    # README: the commands are in ~/.local/bin; a shell whose PATH is only that runs them
    shell = subprocess.run(["/bin/sh", "-c", "command -v credtui && credd --version"],
                           env={"HOME": str(home), "PATH": str(bin_dir)},
                           capture_output=True, text=True, timeout=30)
    assert shell.stdout == f"{bin_dir}/credtui\ncredd 0.1.0\n", shell.stderr
    credd = str(bin_dir / "credd")
    version = subprocess.run([credd, "--version"], env=env, capture_output=True, text=True,
                             timeout=30)
    assert version.stdout.strip() == "credd 0.1.0", version.stderr
    got = subprocess.run([credd, "get", "deploy/key"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert (got.returncode, got.stdout) == (0, "k-123\n"), got.stderr
    listed = subprocess.run([credd, "ls"], env=env, capture_output=True, text=True, timeout=30)
    assert "deploy/key" in listed.stdout, listed.stderr

    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    again = make("install-user", env, timeout=300)  # idempotent: an update in place
    assert again.returncode == 0 and "is on your PATH" in again.stdout, again.stderr

    (bin_dir / "credd").unlink()
    (bin_dir / "credd").write_text("#!/bin/sh\necho someone else's\n")
    refused = make("install-user", env, timeout=60)
    assert refused.returncode != 0 and "not credd's link" in refused.stderr
    assert (bin_dir / "credd").read_text().endswith("someone else's\n")


def fake_venv(root: Path, python: str) -> Path:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(python)
    (venv / ".installed-run").touch()
    return venv


def check(venv: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CHECK), str(venv)], env={**os.environ, "PYTHON": python},
                          capture_output=True, text=True, timeout=30)


class TestCheckVenv:
    def test_healthy_venv_is_kept(self, tmp_path):
        venv = fake_venv(tmp_path, sys.executable)
        done = check(venv)
        assert (done.returncode, done.stderr) == (0, "")
        assert (venv / ".installed-run").exists()

    def test_interpreter_gone(self, tmp_path):
        venv = fake_venv(tmp_path, str(tmp_path / "uninstalled" / "python3"))
        done = check(venv)
        assert done.returncode == 0 and "cannot start" in done.stderr
        assert not venv.exists()

    def test_another_python_version(self, tmp_path):
        other = tmp_path / "python2"
        other.write_text("#!/bin/sh\necho 2.7\n")
        other.chmod(0o755)
        venv = fake_venv(tmp_path, str(other))
        done = check(venv)
        assert done.returncode == 0 and "(2.7)" in done.stderr
        assert not venv.exists()

    def test_absent_venv(self, tmp_path):
        assert check(tmp_path / "none").returncode == 0
