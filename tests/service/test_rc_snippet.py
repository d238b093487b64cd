"""The shell-rc unlock snippet in docs/service.md, exactly as documented, in real shells.

It must prompt in an interactive terminal when the vault is locked, and never
wait for anything in a script, a pipe or `sh -i` without a terminal.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

import pytest

from tests.conftest import REPO, TEST_PASSPHRASE
from tests.service.helpers import PYTHON


def snippet() -> str:
    docs = (REPO / "docs" / "service.md").read_text()
    found = re.search(r"<!-- rc-snippet.*?-->\n```sh\n(.*?)```", docs, re.S)
    assert found, "docs/service.md lost its rc snippet"
    return found.group(1)


@pytest.fixture
def locked(unlocked_agent, credd_env, tmp_path):
    """A locked agent, no OS keyring, and `credd` on PATH as the snippet expects."""
    with unlocked_agent.client() as c:
        c.lock()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "credd").symlink_to(os.path.join(os.path.dirname(PYTHON), "credd"))
    env = dict(credd_env, PATH=f"{bin_dir}:/usr/bin:/bin",
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    return unlocked_agent, env


def state(agent) -> str:
    with agent.client() as c:
        return c.status().state


@pytest.mark.parametrize("argv", [["sh", "-c"], ["sh", "-i", "-c"], ["bash", "-i", "-c"]])
def test_no_terminal_means_no_prompt_and_no_wait(locked, argv):
    agent, env = locked
    start = time.monotonic()
    result = subprocess.run([*argv, snippet() + "echo done"], env=env, stdin=subprocess.PIPE,
                            capture_output=True, text=True, timeout=20)
    assert result.stdout.strip().endswith("done")
    assert "passphrase" not in result.stdout + result.stderr
    assert time.monotonic() - start < 10
    assert state(agent) == "locked"


def test_interactive_terminal_prompts_and_unlocks(locked):
    agent, env = locked
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive shell on the pty
        os.execve("/bin/sh", ["sh", "-i", "-c", snippet() + "echo rc-done"], env)
    output = b""
    try:
        output = _read_until(fd, b"passphrase", 30)
        os.write(fd, TEST_PASSPHRASE.encode() + b"\n")
        output += _read_until(fd, b"rc-done", 30)
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    assert TEST_PASSPHRASE.encode() not in output  # no echo
    assert state(agent) == "unlocked", output.decode(errors="replace")


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in {data!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data
