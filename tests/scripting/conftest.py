"""Fixtures for the scripting tests: a vault with a few entries, and the installed helpers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SENTINEL
from tests.tools import skip_missing

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# git passes password_expiry_utc and oauth_refresh_token to helpers from 2.41 on.
MODERN_GIT = (2, 41)
BUILT_GIT = ROOT / ".tools" / "git" / "bin" / "git"  # `make tools` (scripts/modern-git.sh)
TOKEN = "ghp_" + "Zq8" * 10          # a primary value
DB_PASSWORD = "pg-" + "x7!" * 6 + " end"  # a secret field, with a space and punctuation


@pytest.fixture
def stocked(client):
    """An unlocked agent's client with: github/token, prod db (host + password), sentinel."""
    from credd.protocol import Field
    client.set("github/token", value=TOKEN, service="github", tags=["ci"])
    client.set("prod db", service="postgres", tags=["ci"],
               fields=[Field(name="host", value="db.internal", secret=False),
                       Field(name="password", value=DB_PASSWORD)])
    client.set("sentinel", value=SENTINEL)
    return client


@pytest.fixture
def credd_cmd(credd_env):
    """Popen-style runner of `credd ...` with the isolated environment."""

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        env = dict(credd_env)
        env.update(kwargs.pop("env", {}) or {})
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 30)
        if "input" not in kwargs:  # never the test runner's stdin (`set` reads piped stdin)
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([sys.executable, "-m", "credd", *args], env=env, **kwargs)

    return run


def script(tmp_path: Path, name: str, body: str) -> str:
    """A small Python program for the child side of `credd run`."""
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def installed(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in the venv (pip install -e .)")
    return str(path)



def git_version(git: str) -> tuple[int, int] | None:
    """(major, minor) of `git --version`, or None when it does not run."""
    try:
        out = subprocess.run([git, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"git version (\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2])) if m else None


@pytest.fixture(scope="session")
def modern_git() -> str:
    """A git >= 2.41: the system one when new enough, else the one `make tools` built.

    Without one this skips, and under CI fails (tests/tools.py); the helper's expiry
    and refresh-token handling is also tested by feeding it git's lines directly."""
    system = shutil.which("git")
    for candidate in (system, str(BUILT_GIT)):
        if candidate and (git_version(candidate) or (0, 0)) >= MODERN_GIT:
            return candidate
    found = f"git {'.'.join(map(str, git_version(system) or ()))}" if system else "no git"
    skip_missing(f"git >= {'.'.join(map(str, MODERN_GIT))}",
                 f"the system has {found}; `make tools` builds one into .tools/")
