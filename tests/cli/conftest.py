"""Fixtures for the `credd` command tests: a real agent and a pty for prompts."""

from __future__ import annotations

import os
import pty
import select
import sys
import time

import pytest

from tests.test_client import foreign_socket, needs_root  # noqa: F401  (shared with test_client)


@pytest.fixture
def cli(unlocked_agent, run_credd):
    """`credd ...` against an unlocked agent with a fresh vault."""
    return run_credd


def run_on_pty(args: list[str], env: dict, answers: list[str], timeout: float = 20.0,
               prompt: bytes = b":"):
    """Run `credd ARGS` on a terminal, typing each answer after the next prompt (what the
    terminal shows ends with `prompt`: `: ` by default).

    Returns (exit code, everything the terminal showed).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, as for a person
        os.execve(sys.executable, [sys.executable, "-m", "credd", *args], env)
    shown, pending, deadline = b"", list(answers), time.monotonic() + timeout
    answered_at = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if pending and shown[answered_at:].rstrip().endswith(prompt):
                os.write(fd, pending.pop(0).encode() + b"\n")
                answered_at = len(shown)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def ok(done) -> str:
    """The stdout of a command that must have succeeded, with no traceback."""
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def assert_hint(done, next_step: str) -> None:
    """The error names what to do next, and no traceback escaped."""
    assert next_step in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
