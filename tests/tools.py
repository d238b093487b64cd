"""System tools some tests drive for real, and what a missing one means.

A test that needs a tool this machine lacks skips with a reason that starts
with `MISSING` (via `need`, `needs` or `skip_missing`). Locally that is a skip
(`make system-deps` installs the tools); under CI (`CREDD_CI=1`, which
`.ci/run` exports) the hook in tests/conftest.py turns each such skip into a
failure and lists the missing tools, so a run cannot go green with part of the
suite unrun.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

MISSING = "missing tool: "


def in_ci() -> bool:
    return os.environ.get("CREDD_CI") == "1"


def skip_missing(tool: str, why: str = "") -> NoReturn:
    """Skip for `tool` (a failure under CI); `why` says what the test needed it for."""
    pytest.skip(f"{MISSING}{tool}{f' ({why})' if why else ''}")


def need(tool: str, why: str = "") -> str:
    """The path of `tool` on PATH, or a skip."""
    path = shutil.which(tool)
    if path is None:
        skip_missing(tool, why)
    return path


def needs(*tools: str) -> pytest.MarkDecorator:
    """A skipif mark for the tools of `tools` that are not on PATH."""
    absent = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(absent), reason=MISSING + ", ".join(absent))


def missing_tool(reason: str) -> str | None:
    """The tool a skip `reason` names, or None when the skip is about something else."""
    reason = reason.removeprefix("Skipped: ")
    return reason[len(MISSING):] if reason.startswith(MISSING) else None
