"""Helpers for the service tests: process liveness, tool lookup, running shells and
systemd-analyze."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.tools import need

PYTHON = sys.executable


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def parse_env_lines(text: str) -> dict[str, str]:
    """CREDD_SOCK/CREDD_PID from `credd agent -s` output, by running it in sh."""
    out = subprocess.run(["sh", "-c", text + '\nprintf "%s\\n%s" "$CREDD_SOCK" "$CREDD_PID"'],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    sock, pid = out.stdout.split("\n")
    return {"CREDD_SOCK": sock, "CREDD_PID": pid}


def analyze(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("systemd-analyze"), *args], env=env, capture_output=True,
                          text=True, timeout=30)
