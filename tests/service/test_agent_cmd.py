"""`credd agent`: a detached agent and ssh-agent style shell lines, run in real shells."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from credd.cli.service import env_lines
from tests.service.helpers import PYTHON, alive, need, parse_env_lines, wait_gone


@pytest.fixture
def shell_env(credd_env):
    """The isolated environment without CREDD_SOCK: `credd agent` must supply it."""
    env = dict(credd_env, PY=PYTHON)
    env.pop("CREDD_SOCK")
    return env


def default_socket(env) -> str:
    return os.path.join(env["XDG_RUNTIME_DIR"], "credd", "agent.sock")


def test_eval_in_sh_then_status_then_kill(shell_env, detached):
    script = r'''
eval "$("$PY" -m credd agent -s)"
echo "$CREDD_PID" > pid
"$PY" -m credd status --json > status.json
eval "$("$PY" -m credd agent -k)"
echo "after:${CREDD_SOCK-unset}:${CREDD_PID-unset}"
'''
    cwd = os.path.dirname(shell_env["CREDD_VAULT"]) + "-sh"
    os.makedirs(cwd)
    result = subprocess.run(["sh", "-c", script], env=shell_env, cwd=cwd, capture_output=True,
                            text=True, timeout=60)
    pid = int(open(os.path.join(cwd, "pid")).read())
    detached.append(pid)
    status = json.load(open(os.path.join(cwd, "status.json")))
    assert status["pid"] == pid and status["socket"] == default_socket(shell_env)
    assert "after:unset:unset" in result.stdout, result.stderr
    assert wait_gone(pid), "agent -k left the agent running"
    assert not os.path.exists(default_socket(shell_env))


def test_second_agent_call_reuses_the_running_agent(run_credd, shell_env, detached):
    first = run_credd("agent", "-s", env=shell_env, check=True)
    env = parse_env_lines(first.stdout)
    detached.append(int(env["CREDD_PID"]))
    second = run_credd("agent", "-s", env=shell_env, check=True)
    assert second.stdout == first.stdout
    assert env["CREDD_SOCK"] == default_socket(shell_env)


def test_the_agent_is_detached_and_private(run_credd, shell_env, detached):
    env = dict(shell_env, NOTIFY_SOCKET="/nonexistent/notify", LISTEN_FDS="1", LISTEN_PID="1")
    result = run_credd("agent", "-s", env=env, check=True)
    pid = int(parse_env_lines(result.stdout)["CREDD_PID"])
    detached.append(pid)
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ppid, session, tty = int(stat[1]), int(stat[3]), int(stat[4])
    assert ppid != os.getpid()                      # re-parented, not our child
    assert session != os.getsid(0) and session != pid  # own session, yet no session leader
    assert tty == 0                                 # no controlling terminal
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    log = os.path.join(shell_env["CREDD_STATE_DIR"], "agent.log")
    assert os.readlink(f"/proc/{pid}/fd/1") == log == os.readlink(f"/proc/{pid}/fd/2")
    assert os.stat(log).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(log)).st_mode & 0o777 == 0o700
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    umask = [line for line in open(f"/proc/{pid}/status") if line.startswith("Umask:")]
    assert umask == ["Umask:\t0077\n"]
    environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    assert not [v for v in environ if v.startswith((b"NOTIFY_SOCKET=", b"LISTEN_"))]


def test_csh_and_fish_lines_run_in_those_shells(run_credd, shell_env, detached):
    csh, fish = need("csh"), need("fish")
    out = subprocess.run(
        [csh, "-f", "-c", 'eval "`$PY -m credd agent -c`"; echo "$CREDD_SOCK $CREDD_PID"'],
        env=shell_env, capture_output=True, text=True, timeout=60)
    sock, pid = out.stdout.split()
    detached.append(int(pid))
    assert sock == default_socket(shell_env), out.stderr
    out = subprocess.run(
        [fish, "--no-config", "-c",
         '$PY -m credd agent --fish | source; echo $CREDD_SOCK $CREDD_PID;'
         '$PY -m credd agent -k --fish | source; set -q CREDD_PID; or echo unset'],
        env=shell_env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [sock, pid, "unset"], out.stderr  # reused, then stopped
    assert wait_gone(int(pid))


def test_shell_is_guessed_from_SHELL(run_credd, shell_env, detached):
    result = run_credd("agent", env=dict(shell_env, SHELL="/bin/tcsh"), check=True)
    assert result.stdout.startswith("setenv CREDD_SOCK ")
    detached.append(int(result.stdout.split("CREDD_PID ")[1].split(";")[0]))


@pytest.mark.parametrize("shell, argv", [
    ("sh", ["sh", "-c"]), ("csh", ["csh", "-f", "-c"]), ("fish", ["fish", "--no-config", "-c"]),
])
def test_awkward_values_are_quoted_for_each_shell(shell, argv, tmp_path):
    need(argv[0])
    value = "/tmp/a dir/it's $HOME `x` \\ \"q\" ! * ;"
    script = env_lines(shell, {"CREDD_SOCK": value})
    (tmp_path / "lines").write_text(script)
    check = subprocess.run([*argv[:-1], "-n", str(tmp_path / "lines")], capture_output=True,
                           text=True)  # the shell's own syntax check
    assert check.returncode == 0, check.stderr
    printer = {"sh": 'printf %s "$CREDD_SOCK"', "csh": 'printenv CREDD_SOCK',
               "fish": 'printf %s "$CREDD_SOCK"'}[shell]
    out = subprocess.run([*argv, script + printer], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert out.stdout.rstrip("\n") == value, out.stderr


def test_kill_needs_credd_pid(run_credd, shell_env):
    result = run_credd("agent", "-k", env=shell_env)
    assert result.returncode == 2 and "CREDD_PID is not set" in result.stderr
    assert result.stdout == ""


def test_kill_refuses_an_agent_that_is_not_the_named_one(run_credd, shell_env, detached):
    env = parse_env_lines(run_credd("agent", "-s", env=shell_env, check=True).stdout)
    pid = int(env["CREDD_PID"])
    detached.append(pid)
    result = run_credd("agent", "-k", env=dict(shell_env, CREDD_PID=str(pid + 1)))
    assert result.returncode == 2 and f"is pid {pid}" in result.stderr
    assert alive(pid)


def test_a_failed_start_says_why(run_credd, shell_env):
    runtime = os.path.join(shell_env["XDG_RUNTIME_DIR"], "credd")
    os.makedirs(runtime, mode=0o755)
    os.chmod(runtime, 0o755)  # the agent refuses a socket directory others can enter
    result = run_credd("agent", "-s", env=shell_env)
    assert result.returncode == 4 and result.stdout == ""
    assert "could not start an agent" in result.stderr and "chmod 700" in result.stderr
