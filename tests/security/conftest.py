"""Helpers for the security review tests: reuse the daemon tests' raw-frame tools, and
read the agent's audit trail and process figures the way an auditor would."""

from __future__ import annotations

import json
import os

from tests.daemon.conftest import Raw, init_unlock, raw, status, wait_for  # noqa: F401  (fixture)

#: Replies that carry secret values; every one must have an audit line written before it.
REVEALING = ("secret", "secrets", "revealed")
REVEAL_OPS = ("get", "get_many", "reveal")


def audit_records(state_dir: str) -> list[dict]:
    path = os.path.join(state_dir, "audit.jsonl")
    try:
        with open(path, "rb") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def reveal_lines(agent) -> int:
    """Audit lines that record a secret leaving the agent."""
    return sum(1 for r in audit_records(agent.state_dir)
               if r["op"] in REVEAL_OPS and r["outcome"] == "ok")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def tree(*roots: str) -> set[str]:
    """Every path (files and directories) under `roots`."""
    found: set[str] = set()
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            found.update(os.path.join(dirpath, n) for n in dirs + files)
    return found
