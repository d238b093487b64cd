"""Shared fixtures: an isolated HOME/XDG per test and a real `credd serve`.

Every test runs with its own HOME, XDG dirs, CREDD_SOCK, CREDD_VAULT and
CREDD_STATE_DIR, so nothing touches the developer's real vault or agent.
Agents are real subprocesses on a real socket; at teardown the agent's log
and every file it wrote outside the vault are searched for SENTINEL, a
secret value tests store on purpose, and the test fails if it leaked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_PASSPHRASE = "correct horse battery staple"
#: A secret value tests store on purpose; it must never reach a log or a file in clear.
SENTINEL = "SENTINEL-7f3a9c51-do-not-leak"
#: The OWASP floor the vault accepts: fast enough for tests, not weaker than shipped rules.
FAST_KDF = {"kdf_memory_kib": 19 * 1024, "kdf_iterations": 2, "kdf_lanes": 1}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """The test's XDG_RUNTIME_DIR: short (sun_path is 108 bytes), and outside pytest's base
    temp, which is root's 0700 dir, so the root tests that open the socket to uid 65534 on
    purpose can. A module whose tests need neither overrides it with a tmp_path_factory dir."""
    runtime = Path(tempfile.mkdtemp(prefix="cr", dir="/tmp"))
    yield runtime
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path, runtime_dir):
    """Point every credd path, and HOME, into fresh private directories."""
    runtime = runtime_dir
    home = tmp_path / "home"
    for d in (home, tmp_path / "data", tmp_path / "state", tmp_path / "config", tmp_path / "cache"):
        d.mkdir(mode=0o700)
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "CREDD_SOCK": str(runtime / "credd" / "agent.sock"),
        "CREDD_VAULT": str(tmp_path / "data" / "credd" / "vault.db"),
        "CREDD_STATE_DIR": str(tmp_path / "state" / "credd"),
        "NO_COLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("CREDD_PID", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    return env


@contextlib.contextmanager
def local_zone(zone: str) -> Iterator[None]:
    """Run in-process code under the time zone `zone` (TZ + tzset), restoring it after."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


class Agent:
    """A real `credd serve` subprocess on the isolated socket."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str]) -> None:
        self.env = env
        self.log_path = log_path
        self.args = args
        self.socket = env["CREDD_SOCK"]
        self.vault = env["CREDD_VAULT"]
        self.state_dir = env["CREDD_STATE_DIR"]
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait: bool = True) -> Agent:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "credd", "serve", *self.args],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(
            f"agent did not listen on {self.socket} within {timeout}s:\n{self.log()}")

    def client(self, **kwargs):
        from credd.client import Client
        return Client(self.socket, **kwargs)

    def init_and_unlock(self, passphrase: str = TEST_PASSPHRASE) -> str:
        """Create the vault with fast KDF parameters and unlock it; returns the recovery key."""
        with self.client() as c:
            recovery = c.init(passphrase, **FAST_KDF)
            c.unlock(passphrase)
        return recovery

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


#: Run a command as uid 65534 (tests that need another, ordinary uid; root only).
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_python() -> tuple[str, str]:
    """(python, PYTHONPATH) with which uid 65534 can run credd: the system Python (our venv
    may not be readable to it) with this repository and the venv's packages; skips the test
    unless the system Python is this Python's version."""
    import msgspec
    python = "/usr/bin/python3"
    probe = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)
    if probe.returncode or probe.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip("no system python of the same version to run credd as uid 65534")
    site = os.path.dirname(os.path.dirname(msgspec.__file__))
    return python, f"{REPO}:{site}"


def assert_no_sentinel(*roots: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Fail if SENTINEL appears in clear in any file under `roots`."""
    needle = SENTINEL.encode()
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                if any(path.startswith(s) for s in skip):
                    continue
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                assert needle not in data, f"secret sentinel leaked into {path}"


@pytest.fixture
def credd_env(isolated_env) -> dict[str, str]:
    """The environment a credd subprocess should run with."""
    env = dict(os.environ)
    env.update(isolated_env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def make_agent(credd_env, tmp_path):
    """Factory for agents; each is stopped and checked for leaks at teardown."""
    agents: list[Agent] = []

    def factory(*args: str, start: bool = True, env: dict[str, str] | None = None) -> Agent:
        agent = Agent(dict(env or credd_env), tmp_path / f"agent{len(agents)}.log", list(args))
        agents.append(agent)
        return agent.start() if start else agent

    yield factory
    for agent in agents:
        try:
            agent.stop()
        except Exception:
            pass
        assert SENTINEL not in agent.log(), "secret sentinel leaked into the agent log"
        assert_no_sentinel(agent.state_dir, os.path.dirname(agent.socket))


@pytest.fixture
def agent(make_agent) -> Agent:
    """A running agent with no vault yet."""
    return make_agent()


@pytest.fixture
def unlocked_agent(agent) -> Agent:
    """A running agent with a fresh vault, unlocked."""
    agent.init_and_unlock()
    return agent


@pytest.fixture
def client(unlocked_agent):
    with unlocked_agent.client() as c:
        yield c


@pytest.fixture
def run_credd(credd_env):
    """Run the `credd` command in a subprocess with the isolated environment."""

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None,
            timeout: float = 30.0, check: bool = False) -> subprocess.CompletedProcess:
        full_env = dict(credd_env)
        full_env.update(env or {})
        # no input: stdin is /dev/null, never the test runner's (`set` reads piped stdin)
        stdin = subprocess.DEVNULL if input is None else None
        return subprocess.run(
            [sys.executable, "-m", "credd", *args], env=full_env, timeout=timeout, stdin=stdin,
            input=input, capture_output=True, text=not isinstance(input, bytes), check=check,
        )

    return run


# ------------------------------------------------------------------ missing tools under CI

_MISSING_TOOLS: set[str] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CREDD_CI=1 a skip for a missing tool (tests/tools.py) is a failure."""
    from tests.tools import in_ci, missing_tool
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci() and isinstance(report.longrepr, tuple)):
        return
    tool = missing_tool(report.longrepr[2])
    if tool is not None:
        _MISSING_TOOLS.add(tool)
        report.outcome = "failed"
        report.longrepr = f"CREDD_CI=1 and this test needs a missing tool: {tool}"


def pytest_terminal_summary(terminalreporter):
    if _MISSING_TOOLS:
        terminalreporter.write_line(
            "missing tools (make system-deps and make tools install them): "
            + "; ".join(sorted(_MISSING_TOOLS)), red=True)
