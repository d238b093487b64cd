"""README's own command, `make run`, on a clean clone, in a real terminal (tmux).

A clone of this checkout's commit gets `make run` as a new user would type it,
with a private HOME and XDG dirs and no credd socket or vault set: it must
install only what running needs, quietly, start an agent on the default vault,
open the TUI, and say after the TUI quits which agent it started and how to stop
it. The clone's .venv is then reused to show that `make` remakes a .venv whose
Python is gone before trusting its install stamps. pip installs from the
machine's pip configuration and the real pip cache; nothing else is fetched.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.install import PIP_CACHE
from tests.tools import need

#: The test extras `make run` must leave out (`make test` adds them).
TEST_ONLY = ("pytest", "hypothesis", "pytest_timeout")


def user_path() -> str:
    """PATH without any directory holding a `credd` (this test run's venv among them)."""
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not os.path.exists(os.path.join(d, "credd")))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of this checkout's commit (what CI and a new user start from)."""
    need("git")
    dest = tmp_path_factory.mktemp("clone") / "credd"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   capture_output=True, timeout=60)
    return dest


@pytest.fixture
def user_env(isolated_env: dict[str, str]) -> dict[str, str]:
    """A new user's environment: private HOME/XDG dirs, nothing of credd's set."""
    keep = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "PYENV", "LANG", "LC_"))}
    env = {**keep, "PATH": user_path(), "PIP_CACHE_DIR": PIP_CACHE, "TERM": "xterm-256color"}
    env.update({k: v for k, v in isolated_env.items() if k.startswith(("HOME", "XDG_"))})
    return env


class Pane:
    """One command in a private tmux server's pane, kept after it exits."""

    def __init__(self, env: dict[str, str], conf: Path) -> None:
        self.env, self.conf, self.name = env, conf, f"credd-make-run-{os.getpid()}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-f", str(self.conf), "-L", self.name, *args],
                              env=self.env, capture_output=True, text=True, check=True,
                              timeout=10).stdout

    def history(self) -> str:
        """Everything the pane showed outside the TUI's alternate screen, oldest first."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", "main")

    def shows(self, *texts: str) -> bool:
        screen = self("capture-pane", "-p", "-t", "main")
        return all(text in screen for text in texts)

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; pane:\n{self.history()}")
            time.sleep(0.2)


@pytest.fixture
def pane(user_env: dict[str, str], tmp_path: Path) -> Iterator[Pane]:
    need("tmux")
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g status off\nset -g remain-on-exit on\nset -g history-limit 10000\n")
    p = Pane(user_env, conf)
    yield p
    subprocess.run(["tmux", "-L", p.name, "kill-server"], env=user_env, capture_output=True)


def stop_agent(clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(clone / ".venv" / "bin" / "credd"), "stop"], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(360)
def test_make_run_on_a_clean_clone(clone, user_env, pane):
    runtime = user_env["XDG_RUNTIME_DIR"]
    socket = f"{runtime}/credd/agent.sock"
    venv_bin = clone / ".venv" / "bin"
    try:
        pane("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", "-c", str(clone),
             "make run; echo make run exited $?")
        pane.wait_for(lambda: pane.shows("Create your credd vault", socket, "^q Quit"),
                      timeout=300, what="the TUI's first screen, on the default socket")
        saved = pane("capture-pane", "-p", "-a", "-t", "main")  # the shell's screen, under it
        assert "installing credd" in saved and "stop it with" not in saved
        pane("send-keys", "-t", "main", "C-q")
        pane.wait_for(lambda: "make run exited" in pane.history(), timeout=30,
                      what="make run to end")
        shown = pane.history()

        # quiet, one line per step (pip's own WARNING lines are about the machine's pip
        # configuration); the agent started and how to stop it, after the TUI has gone
        said = [line for line in shown.splitlines() if line and not line.startswith("WARNING:")]
        assert said[:2] == ["creating .venv with python3",
                            "installing credd into .venv (editable)"], shown
        started = re.fullmatch(rf"a credd agent is running on {re.escape(socket)} "
                               r"\(pid (\d+)\), started by make run", said[2])
        assert started, shown
        assert said[3:6] == [f"stop it with: {venv_bin}/credd stop",
                            "(credd is not on your PATH: `make install-user`, "
                            f'or export PATH="{venv_bin}:$PATH")',
                            "make run exited 0"], shown
        pid = int(started.group(1))
        os.kill(pid, 0)  # still running
        assert os.path.exists(f"{user_env['XDG_DATA_HOME']}/credd")  # the default vault dir

        # only what running needs
        python = str(venv_bin / "python")
        found = subprocess.run(
            [python, "-c", f"import importlib.util as u; print([m for m in {TEST_ONLY!r} "
                           "if u.find_spec(m)])"], capture_output=True, text=True, timeout=30)
        assert found.stdout.strip() == "[]", found.stdout + found.stderr
        assert importlib.util.find_spec("pytest")  # (this run's venv has it: the probe works)

        # README: `export PATH="$PWD/.venv/bin:$PATH"` puts credd on this shell's PATH
        version = subprocess.run(["/bin/sh", "-c", "credd --version"], capture_output=True,
                                 env={"PATH": str(venv_bin), "HOME": user_env["HOME"]},
                                 text=True, timeout=30)
        assert version.stdout == "credd 0.1.0\n", version.stderr

        stopped = stop_agent(clone, user_env)
        assert stopped.returncode == 0 and f"(pid {pid}) stopped" in stopped.stdout
        with pytest.raises(ProcessLookupError):
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
    finally:
        if (venv_bin / "credd").exists():
            stop_agent(clone, user_env)


@pytest.mark.timeout(300)
def test_make_remakes_a_venv_whose_python_is_gone(clone, user_env):
    """The clone's .venv (made by the test above, or here) loses its interpreter, as a
    pyenv uninstall or a moved checkout leaves it. The stamp `make run` and `make test`
    build first must not be trusted: make removes the .venv, says why, and installs again.
    (The run stamp only: the test extras would double the time and take the same path.)"""
    def make_run_stamp() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "-C", str(clone), ".venv/.installed-run"], env=user_env,
                              capture_output=True, text=True, timeout=240)

    assert make_run_stamp().returncode == 0
    python = clone / ".venv" / "bin" / "python"
    python.unlink()
    python.symlink_to(clone / "uninstalled" / "python3")
    assert (clone / ".venv" / ".installed-run").exists()

    again = make_run_stamp()
    assert again.returncode == 0, again.stdout + again.stderr
    assert ".venv: its Python (cannot start) is not python3" in again.stderr
    assert "creating .venv with python3" in again.stdout
    assert "installing credd into .venv (editable)" in again.stdout
    assert python.resolve().exists()
    version = subprocess.run([str(clone / ".venv" / "bin" / "credd"), "--version"],
                             capture_output=True, text=True, timeout=30)
    assert version.stdout == "credd 0.1.0\n", version.stderr
    shutil.rmtree(clone / ".venv")  # the clone is clean again for a test after this one
