"""`make coverage` measures the agent, which always runs in a subprocess.

The Makefile's recipe (coverage run -m pytest, then combine and report) over one
small test that starts a real agent: the agent's own process must leave coverage
data for credd/daemon/server.py, which only [tool.coverage.run] in pyproject.toml
(patch subprocess and _exit, parallel, sigterm) makes happen. The recipe is run
here, not `make coverage` itself, whose system-deps and tools steps may install
system packages and which writes .coverage and htmlcov/ into the checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from coverage import CoverageData

from tests.conftest import REPO

#: A test that starts a real agent and talks to it (a few seconds).
SMALL = "tests/test_client.py::TestConnection::test_connects_lazily_and_reuses_one_connection"
SERVER = str(REPO / "credd" / "daemon" / "server.py")


def coverage(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "coverage", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(180)
def test_the_agent_subprocess_is_measured(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_", "COVERAGE_"))}
    env["COVERAGE_FILE"] = str(tmp_path / ".coverage")
    run = coverage("run", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   f"--basetemp={tmp_path / 'b'}", SMALL, env=env)
    out, _ = run.communicate(timeout=150)
    assert run.returncode == 0, out

    per_process = {int(re.search(r"\.pid(\d+)\.", p.name)[1]): p  # type: ignore[index]
                   for p in tmp_path.glob(".coverage.*")}
    others = {pid: path for pid, path in per_process.items() if pid != run.pid}
    assert run.pid in per_process and others, out  # pytest's data, and its children's
    served = {pid: lines(path, SERVER) for pid, path in others.items()}
    assert any(served.values()), f"no process but pytest ran {SERVER}"

    combine = coverage("combine", "-q", env=env)  # as `make coverage` does, before its report
    assert combine.wait(timeout=60) == 0
    assert lines(tmp_path / ".coverage", SERVER) >= max(served.values(), key=len)
    assert len(max(served.values(), key=len)) > 50  # the agent served: far beyond imports

def lines(data_file: Path, source: str) -> set[int]:
    data = CoverageData(str(data_file))
    data.read()
    return set(data.lines(source) or ())
