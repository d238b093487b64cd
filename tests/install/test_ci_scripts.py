"""CI cannot go green by accident: the setup scripts and the missing-tool hook, run for real.

scripts/system-deps.sh and scripts/modern-git.sh (through scripts/apt.sh) run from a
copy of scripts/ (their logs go under the copy's .tools/, never the checkout's) with a
PATH that holds the few system tools they use and a stand-in `apt-get` (apt is the
system's, not ours): it can play another apt holding the lists lock, or fail to
install. tests/conftest.py's hook runs in a real pytest over generated tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

#: The system tools the scripts use besides bash's builtins (and apt-get, stood in for).
TOOLS = ("cat", "date", "dirname", "grep", "mkdir", "mktemp", "rm", "sleep", "sort", "tail")
#: A stand-in apt-get: logs its arguments; `update` fails with apt's lock message while
#: $LOCKED updates are still to come; `install` fails when $INSTALL_FAILS=1.
APT_GET = """#!/bin/bash
echo "$*" >>"$CALLS"
case " $* " in
*" update "*)
    n=$(cat "$COUNT" 2>/dev/null || echo 0); echo $((n + 1)) >"$COUNT"
    if [ "$n" -lt "$LOCKED" ]; then
        echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242" >&2
        exit 100
    fi
    echo "Reading package lists... Done" ;;
*" install "*)
    [ "$INSTALL_FAILS" = 1 ] && { echo "E: Unable to locate package $PACKAGE_NAME" >&2; exit 100; }
    echo "Setting up" ;;
esac
"""
LOG_NAME = r"\.tools/logs/{}\.\d{{8}}-\d{{6}}\.\w{{6}}\.log"


class Scripts:
    """A copy of scripts/ run with a private PATH and the stand-in apt-get."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "scripts", root / "scripts")
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for tool in TOOLS:
            (bin_dir / tool).symlink_to(shutil.which(tool) or pytest.fail(f"no {tool}"))
        for name, text in (("apt-get", APT_GET), ("id", "#!/bin/sh\necho 0\n")):  # root
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.calls = root / "apt-calls"
        self.env = {"PATH": str(bin_dir), "CALLS": str(self.calls), "COUNT": str(root / "n"),
                    "LOCKED": "0", "INSTALL_FAILS": "0", "PACKAGE_NAME": "tmux"}

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/bash", str(self.root / "scripts" / script)],
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=60)

    def apt_calls(self) -> list[str]:
        return self.calls.read_text().splitlines()

    def logs(self, program: str) -> list[Path]:
        return sorted((self.root / ".tools" / "logs").glob(f"{program}.*.log"))


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    return Scripts(tmp_path / "checkout")


def test_apt_waits_for_another_apt_then_installs(scripts):
    """Another apt holds the lists lock for two tries: the run waits, with the lock
    timeout and connect timeouts passed to every apt-get, and succeeds under CI."""
    start = time.monotonic()
    done = scripts.run("system-deps.sh", LOCKED="2", CREDD_CI="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - start >= 4  # two waits of 2 s: it waited, it did not fail
    calls = scripts.apt_calls()
    assert [c.split()[-1] for c in calls[:3]] == ["update"] * 3
    assert " install " in f" {calls[3]} " and "tmux" in calls[3].split()
    for call in calls:
        assert {"DPkg::Lock::Timeout=120", "Acquire::http::Timeout=20",
                "Acquire::https::Timeout=20"} <= set(call.split()), call
    [log] = scripts.logs("system-deps")
    assert re.search(LOG_NAME.format("system-deps"), str(log))
    assert f"(log: {log})" in done.stdout


@pytest.mark.parametrize("script, program, says", [
    ("system-deps.sh", "system-deps", "could not install"),
    ("modern-git.sh", "modern-git", "git >= 2.41 (the system has no git): could not install"),
])
def test_under_ci_a_tool_that_cannot_be_installed_fails_the_run(scripts, script, program, says):
    """apt cannot install: under CI the run fails and names the run's own log; elsewhere
    it is a note (the tests that need the tool skip), and each run has its own log."""
    failed = scripts.run(script, INSTALL_FAILS="1", PACKAGE_NAME="no-such-package", CREDD_CI="1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"{program}: error: {says}" in failed.stderr
    assert "(CREDD_CI=1: a missing tool fails the run)" in failed.stderr
    [log] = scripts.logs(program)
    assert re.search(LOG_NAME.format(program), str(log))
    assert f"log: {log}" in failed.stdout + failed.stderr
    assert "Unable to locate package no-such-package" in log.read_text()
    assert f"---- last lines of {log} ----" in failed.stderr  # apt's own error, shown

    noted = scripts.run(script, INSTALL_FAILS="1")
    assert noted.returncode == 0, noted.stderr
    assert f"{program}: note: {says}" in noted.stderr and "will skip" in noted.stderr
    assert len(scripts.logs(program)) == 2  # a log per run, none shared


#: Where setup files may fetch from: nowhere named. apt and pip reach the network only
#: through the machine's own configuration (apt's sources and keyrings, pip.conf and
#: PIP_* — mirrors, proxies, caches), so no script, Makefile rule, CI file or project
#: file names a URL or a registry host; modern-git.sh takes its URI from apt's own entry.
#: An exception would be listed here with why; there is none.
ALLOWED: set[str] = set()
FETCHES = re.compile(
    r"[a-z][a-z0-9+.-]*://\S+"                      # any URL (http, https, git, ftp, file...)
    r"|\b(?:curl|wget|git\s+clone|pip3?\s+download)\b"  # or a command that fetches one
    r"|--(?:extra-)?index-url|--find-links"
    r"|\b[\w.-]*(?:pypi\.org|pythonhosted\.org|github(?:usercontent)?\.com|gitlab\.com"
    r"|debian\.org|ubuntu\.com|npmjs\.org|crates\.io|golang\.org|kernel\.org)\b")


def setup_files() -> list[Path]:
    found = [REPO / "Makefile", REPO / "pyproject.toml"]
    for folder in ("scripts", ".ci"):
        found += sorted(p for p in (REPO / folder).rglob("*") if p.is_file())
    return found


def test_no_setup_file_names_a_download():
    files = setup_files()
    assert {"apt.sh", "modern-git.sh", "run", "Makefile"} <= {p.name for p in files}
    named = [f"{path.relative_to(REPO)}:{n}: {hit}"
             for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1)
             for hit in FETCHES.findall(line) if hit not in ALLOWED]
    assert not named, "setup files name downloads:\n" + "\n".join(named)


def test_the_pattern_finds_what_it_is_for():
    for line in ("curl -fsSL https://example.org/x | sh", "git clone git@host:x",
                 "pip install --index-url http://mirror/simple x", "deb.debian.org/debian",
                 "files.pythonhosted.org", "URI=http://10.0.0.1/debian"):
        assert FETCHES.search(line), line
    for line in ('"credd.cli.completion",', "apt_get \"$log\" install", "--find-link"):
        assert not FETCHES.search(line), line


GENERATED = '''
import pytest
from tests.tools import need, needs

def test_by_call():
    need("credd-no-such-tool-a", "to prove the hook")

@needs("credd-no-such-tool-b")
def test_by_mark():
    pass

def test_skip_for_another_reason():
    pytest.skip("not about a tool")
'''


def run_generated(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_generated.py"
    test.write_text(GENERATED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CREDD_CI"))}
    env["PYTHONPATH"] = str(REPO)
    if ci:
        env["CREDD_CI"] = "1"
    # the suite's own conftest as a plugin: its hook, its fixtures, its pytest settings
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
         "--basetemp", str(tmp_path / f"b{int(ci)}"), "-rA", str(test)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_tool_skips_locally_and_fails_under_ci(tmp_path):
    local = run_generated(tmp_path, ci=False)
    assert local.returncode == 0, local.stdout
    assert "3 skipped" in local.stdout and "failed" not in local.stdout

    ci = run_generated(tmp_path, ci=True)
    assert ci.returncode == 1, ci.stdout
    # a skipif mark skips in setup, so its failure is reported as an error: red all the same
    assert "1 failed, 1 skipped, 1 error" in ci.stdout
    assert "SKIPPED [1] test_generated.py:13: not about a tool" in ci.stdout
    for tool in ("credd-no-such-tool-a", "credd-no-such-tool-b"):
        assert f"CREDD_CI=1 and this test needs a missing tool: {tool}" in ci.stdout
    assert ("missing tools (make system-deps and make tools install them): "
            "credd-no-such-tool-a (to prove the hook); credd-no-such-tool-b") in ci.stdout
