"""`credd run --restart-on-change` against a real agent: a change restarts the child with the
new value (its output masked), a reload signal with --files, the crash-loop backoff, and the
agent going away or locking while the child runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import TEST_PASSPHRASE
from tests.scripting.conftest import script

pytestmark = pytest.mark.timeout(90)

OLD, NEW = "tok-old-" + "Q7x" * 5, "tok-new-" + "R4y" * 5

#: A child that logs (pid, event, value) to a file of the test's and prints the value
#: (credd must mask it); HUP makes it re-read its value (from TOKEN_FILE with --files).
CHILD = '''
import os, signal, sys, time
log = sys.argv[1]
def value():
    path = os.environ.get("TOKEN_FILE")
    return open(path).read() if path else os.environ["TOKEN"]
def report(what):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {what} {value()}\\n")
    print(what, value(), flush=True)
signal.signal(signal.SIGHUP, lambda *a: report("reloaded"))
report("started")
while True:
    time.sleep(0.2)
'''


@pytest.fixture
def start_run(credd_env, tmp_path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`credd run --restart-on-change ...` in the background (stdout a pipe: masked)."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "credd", "run", "--restart-on-change",
                                 *args], env=credd_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def lines(log: Path, count: int, timeout: float = 20.0) -> list[list[str]]:
    """The child's log once it has `count` lines: [pid, event, value] each."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            got = [line.split(" ", 2) for line in log.read_text().splitlines()]
            if len(got) >= count:
                return got
        time.sleep(0.05)
    raise AssertionError(f"the child logged {log.read_text() if log.exists() else ''!r}, "
                         f"wanted {count} lines")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def test_a_change_restarts_the_child_with_the_new_value(client, start_run, tmp_path):
    client.set("api/token", value=OLD)
    log = tmp_path / "child.log"
    child = script(tmp_path, "child.py", CHILD)
    proc = start_run("--env", "TOKEN=credd://api/token", "--", sys.executable, child, str(log))
    [(first_pid, _, value)] = lines(log, 1)
    assert value == OLD
    client.set("other", value="unrelated")  # an entry it does not use: nothing happens
    client.set("api/token", value=NEW)
    second = lines(log, 2)[1]
    assert second[1:] == ["started", NEW] and second[0] != first_pid
    time.sleep(0.5)
    assert len(lines(log, 2)) == 2, "restarted more than once"
    code, out, err = finish(proc)
    assert code == 128 + signal.SIGTERM, (code, err)  # the child's status, as `run` gives it
    assert out.count("started") == 2, out
    assert OLD not in out and NEW not in out, "a value reached the output unmasked"
    assert "a value changed: sending SIGTERM" in err and OLD not in err and NEW not in err


def test_signal_hup_with_files_reloads_the_running_child(client, start_run, tmp_path):
    client.set("api/token", value=OLD)
    log = tmp_path / "child.log"
    child = script(tmp_path, "child.py", CHILD)
    proc = start_run("--files", "--signal", "HUP", "--env", "TOKEN=credd://api/token", "--",
                     sys.executable, child, str(log))
    [(pid, _, value)] = lines(log, 1)
    assert value == OLD
    client.set("api/token", value=NEW)
    reloaded = lines(log, 2)[1]
    assert reloaded == [pid, "reloaded", NEW]  # the same process, the new value
    _, out, err = finish(proc)
    assert "reloaded" in out and NEW not in out and OLD not in out, out
    assert "sending SIGHUP" in err


def test_a_reload_signal_needs_files(client, run_credd):
    client.set("api/token", value=OLD)
    result = run_credd("run", "--restart-on-change", "--signal", "HUP", "--env",
                       "TOKEN=credd://api/token", "--", "true")
    assert result.returncode == 2 and "--files" in result.stderr
    result = run_credd("run", "--signal", "TERM", "--env", "TOKEN=credd://api/token", "--",
                       "true")
    assert result.returncode == 2 and "--restart-on-change" in result.stderr


def test_a_crash_loop_backs_off(client, start_run, tmp_path):
    """A child that fails at once is started again, each time after a longer wait."""
    client.set("api/token", value=OLD)
    log = tmp_path / "starts.log"
    child = script(tmp_path, "crash.py",
                   "import sys, time\nopen(sys.argv[1], 'a').write(f'{time.monotonic()}\\n')\n"
                   "sys.exit(3)\n")
    proc = start_run("--env", "TOKEN=credd://api/token", "--", sys.executable, child, str(log))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_starts(log)) < 4:
        time.sleep(0.1)
    starts = _starts(log)
    assert len(starts) >= 4, starts
    gaps = [b - a for a, b in pairwise(starts)]
    assert all(later > earlier * 1.4 for earlier, later in pairwise(gaps)), gaps
    assert gaps[0] >= 0.4, gaps
    _, _, err = finish(proc)
    assert "exited with status 3; starting it again in 0.5 s" in err
    assert "starting it again in 1 s" in err and "starting it again in 2 s" in err


def _starts(log: Path) -> list[float]:
    return [float(x) for x in log.read_text().split()] if log.exists() else []


def test_a_child_that_succeeds_ends_the_run(client, run_credd):
    client.set("api/token", value=OLD)
    result = run_credd("run", "--restart-on-change", "--env", "TOKEN=credd://api/token", "--",
                       sys.executable, "-c", "pass")
    assert result.returncode == 0, result.stderr


def test_the_agent_going_away_and_locking_leaves_the_child_running(
        client, unlocked_agent, start_run, tmp_path):
    """Locked, then stopped: the child runs on; once the agent is back and unlocked, a
    change made meanwhile restarts it with the new value."""
    client.set("api/token", value=OLD)
    log = tmp_path / "child.log"
    child = script(tmp_path, "child.py", CHILD)
    proc = start_run("--env", "TOKEN=credd://api/token", "--", sys.executable, child, str(log))
    [(pid, _, _)] = lines(log, 1)
    client.lock()
    client.close()
    unlocked_agent.stop()
    time.sleep(1)
    assert proc.poll() is None and _alive(int(pid))
    unlocked_agent.start()
    with unlocked_agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
        c.set("api/token", value=NEW)
    second = lines(log, 2, timeout=30)[1]
    assert second[1:] == ["started", NEW]
    _, _, err = finish(proc)
    assert "the vault is locked: the command keeps running" in err
    assert "the agent went away: the command keeps running" in err
    assert "the agent is back" in err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
