"""`credd run --via-agent`: the agent starts the command on the caller's descriptors or a
PTY of its own, masks its output, and answers its exit status (the `use` grant's path,
here for the owner; tests/grants/test_exfiltration_run.py runs it under grants, with
every encoding; test_run.py's signal test covers both ways).

Real agent, real processes, real terminals (pty.openpty)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from credd.mask import REPLACEMENT
from tests.conftest import SENTINEL
from tests.scripting.conftest import DB_PASSWORD, TOKEN, script
from tests.scripting.test_run import _wait_for

R = REPLACEMENT.decode()
VIA = ("run", "--via-agent")


def _audit(client, op: str) -> list:
    return [a for a in client.audit(limit=1000) if a.op == op]


def test_the_agent_runs_it_with_its_secrets_masked(stocked, credd_cmd, tmp_path):
    child = script(tmp_path, "show.py", """
import hashlib, os, sys
print("sha", hashlib.sha256(os.environ["GH"].encode()).hexdigest())
print("out", os.environ["GH"], "and", os.environ["DBPW"], flush=True)
print("err", os.environ["DBPW"], file=sys.stderr, flush=True)
print("plain", os.environ.get("MODE"), os.environ.get("FROM_CALLER"))
sys.exit(7)
""")
    env_file = tmp_path / "app.env"
    env_file.write_text("GH=credd://github/token\nDBPW=credd://prod db/password\nMODE=prod\n")
    r = credd_cmd(*VIA, "--env-file", str(env_file), "--", sys.executable, child,
                  env={"FROM_CALLER": "kept"})
    assert r.returncode == 7, r.stderr
    out, err = r.stdout.decode(), r.stderr.decode()
    import hashlib
    assert f"sha {hashlib.sha256(TOKEN.encode()).hexdigest()}" in out
    assert f"out {R} and {R}\n" in out and f"err {R}\n" in err
    assert "plain prod kept" in out
    assert TOKEN not in out + err and DB_PASSWORD not in out + err
    runs = _audit(stocked, "run")
    assert len(runs) == 2 and {a.outcome for a in runs} == {"ok"}  # one line per entry


def test_env_of_the_command_is_masked(stocked, credd_cmd):
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--env", "S=credd://sentinel",
                  "--", "env")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f"GH={R}" in out and f"S={R}" in out
    assert TOKEN not in out and SENTINEL not in out


def test_mask_hits_are_audited_once_per_name_naming_the_command(stocked, credd_cmd):
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--env", "DB=credd://prod db/password",
                  "--", "sh", "-c", "echo $GH; echo $GH; echo $GH | base64")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while not (hits := _audit(stocked, "mask_hit")) and time.monotonic() < deadline:
        time.sleep(0.05)
    from credd.daemon.audit import name_hmac
    assert len(hits) == 1, hits  # three occurrences, one name; DB never appeared
    [hit] = hits
    assert hit.outcome == "masked" and hit.exe.endswith("/sh") and hit.pid
    with open(os.path.join(os.environ["CREDD_STATE_DIR"], "audit.jsonl"), "rb") as f:
        assert TOKEN.encode() not in f.read()
    assert hit.name_hmac.startswith("hmac-sha256:") and hit.name_hmac != name_hmac(b"x", "")


def test_exit_status_stdin_and_a_missing_command(stocked, credd_cmd, tmp_path):
    child = script(tmp_path, "echo.py", "import sys\nsys.stdout.write(sys.stdin.read().upper())\n"
                                        "sys.exit(9)\n")
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--", sys.executable, child,
                  input=b"through the agent\n")
    assert (r.returncode, r.stdout) == (9, b"THROUGH THE AGENT\n")
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--", "no-such-command-xyz")
    assert r.returncode == 5 and "command not found" in r.stderr.decode()
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM


def test_missing_reference_runs_nothing(stocked, credd_cmd, tmp_path):
    marker = tmp_path / "ran"
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--env", "N=credd://nope", "--",
                  "touch", str(marker))
    assert r.returncode == 5 and "credd://nope" in r.stderr.decode()
    assert not marker.exists()


# ---------------------------------------------------------------- on a terminal

def _terminal_run(credd_env, args: list[str]):
    """`credd run --via-agent ARGS` on a new 80x24 terminal: (its process, the master)."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "credd", *VIA, *args], env=credd_env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    return proc, master, slave


def test_a_resize_and_ctrl_c_reach_the_command(stocked, credd_env, tmp_path):
    import fcntl
    import struct
    import termios
    child = script(tmp_path, "winch.py", """
import os, signal, sys, time
signal.signal(signal.SIGWINCH, lambda *_: print("size", *os.get_terminal_size(), flush=True))
def interrupted(*_):
    print("interrupted", flush=True)
    sys.exit(3)
signal.signal(signal.SIGINT, interrupted)
print("start", *os.get_terminal_size(), flush=True)
time.sleep(30)
""")
    proc, master, slave = _terminal_run(credd_env, ["--env", "GH=credd://github/token", "--",
                                                    sys.executable, child])
    try:
        with os.fdopen(master, "r+b", buffering=0) as term:
            _wait_for(term, b"start 80 24")
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
            os.killpg(proc.pid, signal.SIGWINCH)  # what the terminal sends its foreground
            _wait_for(term, b"size 132 40")
            term.write(b"\x03")  # Ctrl-C, a byte in raw mode: the command's own terminal
            _wait_for(term, b"interrupted")
            assert proc.wait(15) == 3
            attrs = termios.tcgetattr(slave)
            assert attrs[3] & termios.ICANON and attrs[3] & termios.ECHO  # raw mode undone
    finally:
        os.close(slave)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the command's tree

#: A process that sleeps a minute, found by the marker in its arguments.
SLEEPER = f"{sys.executable} -c 'import time; time.sleep(60)'"


def _pids_of(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


def _gone(marker: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _pids_of(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _pids_of(marker)


def test_orphans_stay_below_the_subreaper_and_end_with_the_agent(unlocked_agent, credd_cmd):
    unlocked_agent.client().set("t", value="tree-secret-value")
    marker = f"orphan-{os.getpid()}-{time.monotonic_ns()}"
    r = credd_cmd(*VIA, "--env", "T=credd://t", "--", "sh", "-c",
                  f"(setsid {SLEEPER} {marker} &) ; exit 0")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while not (pids := _pids_of(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    [pid] = pids
    with open(f"/proc/{pid}/stat", "rb") as f:
        parent = int(f.read().rpartition(b")")[2].split()[1])
    with open(f"/proc/{parent}/cmdline", "rb") as f:
        assert b"credd.reaper" in f.read()  # a double fork left it with the subreaper, not init
    unlocked_agent.stop()
    assert _gone(marker), "a run's leftover outlived the agent"


def test_a_killed_subreaper_leaves_nothing_running(unlocked_agent, credd_cmd):
    """`kill -9 $PPID` from the command: its tree comes to the agent, which ends it."""
    unlocked_agent.client().set("t", value="tree-secret-value")
    marker = f"left-{os.getpid()}-{time.monotonic_ns()}"
    r = credd_cmd(*VIA, "--env", "T=credd://t", "--", "sh", "-c",
                  f"({SLEEPER} {marker} &) ; kill -9 $PPID; sleep 1")
    assert r.returncode != 0  # its subreaper gone, the run cannot say how it ended
    assert _gone(marker), "a killed subreaper's orphan lived on"
    assert unlocked_agent.proc.poll() is None
    with unlocked_agent.client() as c:  # and the agent runs on
        r = credd_cmd(*VIA, "--env", "T=credd://t", "--", "true")
        assert r.returncode == 0, r.stderr
        assert c.status().state == "unlocked"


def test_the_command_inherits_no_descriptor_but_its_three(stocked, credd_cmd):
    """Not the subreaper's line to the agent (it could forge its reports), nor anything of
    the agent's: only stdin, stdout and stderr."""
    r = credd_cmd(*VIA, "--env", "GH=credd://github/token", "--", sys.executable, "-c",
                  "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() in ("[0, 1, 2]", "[0, 1, 2, 3]")  # 3: listdir's own


@pytest.mark.parametrize("how", [[], ["--via-agent"]], ids=["local", "via-agent"])
def test_a_non_blocking_stdout_gets_everything(stocked, credd_env, how):
    """A reader that set O_NONBLOCK on its pipe (Node does) and reads slowly: the masked
    output waits for room instead of being dropped."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    proc = subprocess.Popen([sys.executable, "-m", "credd", "run", *how, "--env",
                             "GH=credd://github/token", "--", sys.executable, "-c",
                             "import os; print('x' * 3_000_000); print(os.environ['GH'])"],
                            env=credd_env, stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    got = []
    with os.fdopen(r, "rb") as reader:
        while chunk := reader.read(65536):
            got.append(chunk)
            time.sleep(0.002)
    assert proc.wait(30) == 0, proc.stderr.read()
    proc.stderr.close()
    assert b"".join(got) == b"x" * 3_000_000 + b"\n" + REPLACEMENT + b"\n"
