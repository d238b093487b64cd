"""Fixtures for `credd scan`: a vault with known values, the command, real git repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from credd.forms import forms
from tests.conftest import SENTINEL

TOKEN = "ghp_" + "Zq8" * 10                      # github/token, a primary value
DB_PASSWORD = 'pg-x7!"q' * 3 + " end/é"          # prod db/password: URL and JSON escape it
API_KEY = "sk-live-" + "4f9a" * 6                # api/key, primary; also stored in api/copy
SHORT = "abc"                                    # too short to search for
VALUES = (TOKEN, DB_PASSWORD, API_KEY, SENTINEL)


@pytest.fixture
def stored(client):
    """An unlocked agent's client holding the values above."""
    from credd.protocol import Field
    client.set("github/token", value=TOKEN)
    client.set("prod db", fields=[Field(name="host", value="db.internal", secret=False),
                                  Field(name="password", value=DB_PASSWORD)])
    client.set("api/key", value=API_KEY)
    client.set("api/copy", value=API_KEY)
    client.set("tiny", value=SHORT)
    client.set("sentinel", value=SENTINEL)
    return client


@pytest.fixture
def scan(stored, credd_env):
    """`credd scan ARGS` in `cwd`; the output is checked for every value and form."""

    def run(*args: str, cwd: Path | str | None = None, env: dict | None = None,
            expect: int | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "credd", "scan", *args],
                              env={**credd_env, **(env or {})}, cwd=cwd, capture_output=True,
                              timeout=60)
        assert_no_value(done.stdout + done.stderr)
        if expect is not None:
            assert done.returncode == expect, done.stderr.decode()
        return done

    return run


def assert_no_value(output: bytes) -> None:
    """No stored value, and no encoded form of one, in `output`."""
    for value in VALUES:
        for form in forms(value):
            assert form not in output, "a form of a stored value is in the output"


def hits_of(done: subprocess.CompletedProcess) -> list[dict]:
    report = json.loads(done.stdout)
    assert report["counts"]["hits"] == len(report["hits"])
    return report["hits"]


def hit(name: str, form: str, file: str | None = None, line: int | None = None, *,
        field: str | None = None, commit: str | None = None, object: str | None = None) -> dict:
    return {"name": name, "field": field, "form": form, "file": file, "line": line,
            "commit": commit, "object": object}


class Repo:
    """A git repository in a temp directory, committed to with a fixed identity."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                    "GIT_CONFIG_NOSYSTEM": "1"}
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=self.path, env=self.env, input=input,
                              capture_output=True, check=True, timeout=30)
        return done.stdout.decode().strip()

    def write(self, name: str, text: str | bytes) -> None:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)

    def commit(self, message: str, **files: str | None) -> str:
        """Write (or with None remove) files, commit everything; returns the commit id."""
        for name, text in files.items():
            if text is None:
                (self.path / name).unlink()
            else:
                self.write(name, text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path) -> Repo:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (tmp_path / "repo").mkdir()
    return Repo(tmp_path / "repo")
