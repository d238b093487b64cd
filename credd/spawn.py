"""Start a detached agent on demand, the way ssh-agent and gpg-agent do.

`ensure_agent()` reuses the agent that answers on the socket, else starts
`credd serve` detached from the caller: a launcher process (this module run
as `python -m credd.spawn`, the first fork) leads a new session and starts
the agent (the second fork), so the agent is no session leader and can never
regain a controlling terminal, and it is re-parented to init as soon as the
launcher exits. The launcher, still the agent's parent, watches it until it
answers on the socket or dies, and reports which; the caller never polls a
pid that is not its child. The agent's stdio goes to `agent.log` in the state
directory. Used by `credd agent`, by `credd unlock` and by credtui.

Standard library only at import time: the launcher must start fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import namedtuple

from credd import paths
from credd.errors import AgentUnavailable, BadRequest

#: Seconds to wait for a new agent to answer (imports + vault open on a busy machine).
START_TIMEOUT = 20.0
#: Variables that address a service manager; a detached agent must not see the caller's.
_MANAGER_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


# A namedtuple, not a dataclass: `dataclasses` costs ~15 ms to import, on every CLI command.
AgentInfo = namedtuple("AgentInfo", "socket pid started", defaults=(False,))
AgentInfo.__doc__ = "An agent that answers: where, which process, and whether we just started it."


def running_agent(path: str | None = None) -> AgentInfo | None:
    """The agent answering on `path` (default: the usual socket), or None when none does."""
    from credd.client import Client

    path = path or paths.socket_path()
    try:
        with Client(path, client_name="credd-spawn", timeout=5.0) as client:
            return AgentInfo(path, client.hello().pid)
    except AgentUnavailable:
        return None


def ensure_agent(path: str | None = None, *, timeout: float = START_TIMEOUT) -> AgentInfo:
    """The agent on `path`, started detached first if none answers."""
    path = path or paths.socket_path()
    return running_agent(path) or start_agent(path, timeout=timeout)


def log_path() -> str:
    """The detached agent's log file (stdout and stderr), in the private state directory."""
    return os.path.join(paths.ensure_private_dir(paths.state_dir()), "agent.log")


def start_agent(path: str, *, timeout: float = START_TIMEOUT) -> AgentInfo:
    """Start `credd serve` on `path`, detached; return once it answers."""
    paths.check_socket_path(path)
    log = log_path()
    log_fd = _open_log(log)
    env = {k: v for k, v in os.environ.items() if k not in _MANAGER_VARS}
    env["CREDD_SOCK"] = path
    try:
        launcher = subprocess.run(
            [sys.executable, "-m", "credd.spawn", path, str(timeout)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_fd, env=env,
            cwd="/", umask=0o077, start_new_session=True, timeout=timeout + 10, text=True)
    except subprocess.TimeoutExpired:
        raise AgentUnavailable(f"the agent did not start within {timeout:.0f}s; run "
                               f"`credd serve` to see why, or read {log}") from None
    finally:
        os.close(log_fd)
    # A concurrent `credd agent` may have won the race for the socket: reuse its agent.
    info = running_agent(path)
    if info is None:
        reason = launcher.stdout.strip() or f"launcher exited with {launcher.returncode}"
        raise AgentUnavailable(f"could not start an agent on {path} ({reason}); run "
                               f"`credd serve` to see why, or read {log}:{_tail(log)}")
    return AgentInfo(info.socket, info.pid, started=str(info.pid) == launcher.stdout.strip())


def stop_agent(path: str, pid: int | None = None, *, timeout: float = 10.0) -> AgentInfo:
    """Stop the agent on `path` (refusing if it is not `pid`) and wait until it is gone."""
    from credd.client import Client

    with Client(path, client_name="credd-spawn", timeout=5.0) as client:
        info = AgentInfo(path, client.hello().pid)
        if pid is not None and info.pid != pid:
            raise BadRequest(f"the agent on {path} is pid {info.pid}, not CREDD_PID={pid}; "
                             f"not stopping it (run `credd stop` to stop it anyway)")
        client.stop()
    deadline = time.monotonic() + timeout
    while _answers(path):
        if time.monotonic() > deadline:
            raise AgentUnavailable(f"the agent (pid {info.pid}) still answers on {path} "
                                   f"{timeout:.0f}s after `stop`")
        time.sleep(0.02)
    return info


def _open_log(log: str) -> int:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        paths.check_private_file(log)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tail(log: str, lines: int = 5) -> str:
    """The last lines of the agent's log (it never holds secret values), for the error message."""
    try:
        with open(log, errors="replace") as f:
            last = f.read().splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n  | {line}" for line in last)


def _answers(path: str) -> bool:
    """True when something owned by us accepts connections on `path` (no hello: stdlib only)."""
    from credd.wire import connect

    try:
        connect(path, timeout=1.0).close()
    except AgentUnavailable:
        return False
    return True


def _launch(path: str, timeout: float) -> int:
    """Launcher body: start the agent as our child, print its pid once it answers."""
    agent = subprocess.Popen([sys.executable, "-m", "credd", "serve"],
                             stdin=subprocess.DEVNULL, stdout=2, stderr=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            print(f"agent exited with status {agent.returncode}", flush=True)
            return 1
        if _answers(path):
            print(agent.pid, flush=True)
            return 0
        time.sleep(0.02)
    agent.terminate()  # leave nothing behind that never answered
    print(f"agent did not answer within {timeout:.0f}s", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1], float(sys.argv[2])))
