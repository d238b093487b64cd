"""Fixtures for the scripting tests: a vault with a few entries, and the installed helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SENTINEL

BIN = Path(sys.executable).parent
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

