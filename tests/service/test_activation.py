"""Socket activation and sd_notify, with the real systemd-socket-activate and real sockets.

systemd-socket-activate binds the socket, waits for the first connection,
then execs the program with LISTEN_FDS/LISTEN_PID set: the same hand-over
the user manager does for credd.socket.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time

import pytest

from credd.daemon import activation
from tests.service.helpers import PYTHON, need

#: Takes the inherited listener, reports it, and serves one connection.
PROBE = """
import os
from credd.daemon.activation import inherited_listener
try:
    sock = inherited_listener()
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
    raise SystemExit(3)
leftover = [v for v in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if v in os.environ]
print("none" if sock is None else sock.getsockname(), leftover, flush=True)
if sock is not None:
    conn, _ = sock.accept()
    conn.sendall(b"served")
"""


PASSED = ("CREDD_", "XDG_", "HOME", "PYTHON", "NO_COLOR")


def activate(path: str, *command: str, extra: tuple[str, ...] = (), env=None):
    """Start `command` under systemd-socket-activate listening on `path`; trigger it by
    connecting."""
    # systemd-socket-activate passes on only the variables named with -E.
    passed = [arg for name in (env or {}) if name.startswith(PASSED) for arg in ("-E", name)]
    activate = need("systemd-socket-activate")
    proc = subprocess.Popen([activate, "-l", path, *extra, *passed, *command],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    return proc


def connect(path: str, timeout: float = 15.0) -> socket.socket:
    """Connect, waiting out the moment between the socket file appearing (bind) and
    systemd-socket-activate listening on it, which refuses connections."""
    deadline = time.monotonic() + 5
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except ConnectionRefusedError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@pytest.fixture
def sock_dir(isolated_env):
    d = os.path.join(isolated_env["XDG_RUNTIME_DIR"], "act")
    os.mkdir(d, 0o700)
    return d


def probe(path: str, *prefix: str, env, before=None, **kwargs) -> tuple[str, bytes]:
    proc = activate(path, *prefix, PYTHON, "-c", PROBE, env=env, **kwargs)
    if before is not None:
        before()
    with connect(path) as s:
        try:
            served = s.recv(64)
        except ConnectionResetError:
            served = b""
    out, err = proc.communicate(timeout=15)
    return out + err, served


def test_inherited_listener_is_taken_and_serves(sock_dir, credd_env):
    path = os.path.join(sock_dir, "agent.sock")
    out, served = probe(path, env=credd_env)
    assert f"{path} []" in out  # the variables are gone from our environment
    assert served == b"served"


def test_wrong_listen_pid_is_ignored(sock_dir, credd_env):
    """LISTEN_PID naming another process (e.g. our parent) means: not for us."""
    path = os.path.join(sock_dir, "agent.sock")
    proc = activate(path, "env", "LISTEN_PID=1", PYTHON, "-c", PROBE, env=credd_env)
    with connect(path):
        out, err = proc.communicate(timeout=15)
    assert "none []" in out, out + err  # ignored, and not passed on to children either


def test_two_sockets_are_refused(sock_dir, credd_env):
    path = os.path.join(sock_dir, "agent.sock")
    out, served = probe(path, env=credd_env, extra=("-l", os.path.join(sock_dir, "b.sock")))
    assert "ActivationError" in out and "exactly one" in out and served == b""


def test_a_datagram_socket_is_refused(sock_dir, credd_env):
    path = os.path.join(sock_dir, "agent.sock")
    proc = activate(path, PYTHON, "-c", PROBE, extra=("--datagram",), env=credd_env)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", path)
    out, err = proc.communicate(timeout=15)
    assert "ActivationError" in out and "stream" in out, out + err


def test_a_socket_others_can_connect_to_is_refused(sock_dir, credd_env):
    path = os.path.join(sock_dir, "agent.sock")
    out, served = probe(path, env=credd_env, before=lambda: os.chmod(path, 0o666))
    assert "InsecurePath" in out and "other users" in out and served == b""


def test_a_socket_in_a_shared_directory_is_refused(sock_dir, credd_env):
    os.chmod(sock_dir, 0o755)
    out, served = probe(os.path.join(sock_dir, "agent.sock"), env=credd_env)
    assert "InsecurePath" in out and "chmod 700" in out and served == b""


def test_not_activated_without_the_variables(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 100000))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert activation.inherited_listener() is None
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ
    assert activation.inherited_listener() is None


def test_notify_sends_to_a_real_datagram_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert activation.notify("READY=1") is True
        assert server.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert activation.notify("READY=1") is False


def test_notify_abstract_address(monkeypatch):
    name = f"credd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert activation.notify("STATUS=x")
        assert server.recv(64) == b"STATUS=x"


# ---------------------------------------------------------------- the real agent

def test_credd_serve_under_socket_activation(sock_dir, credd_env):
    """`credd serve` serves on the inherited socket and leaves it in place when it exits."""
    path = os.path.join(sock_dir, "agent.sock")
    env = dict(credd_env, CREDD_SOCK=path)
    proc = activate(path, PYTHON, "-m", "credd", "serve", env=env)
    try:
        from credd.client import Client
        connect(path).close()  # the socket file exists at bind, before it listens
        with Client(path, timeout=30) as c:
            status = c.status()
        assert status.pid == proc.pid  # systemd-socket-activate execs: same pid
        assert status.socket == path and status.vault == credd_env["CREDD_VAULT"]
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    st = os.lstat(path)  # never unlinked: the service manager owns it
    assert stat.S_ISSOCK(st.st_mode)


def test_credd_serve_ignores_a_wrong_listen_pid(sock_dir, credd_env):
    activated = os.path.join(sock_dir, "activated.sock")
    own = os.path.join(sock_dir, "own.sock")
    proc = activate(activated, "env", "LISTEN_PID=1", PYTHON, "-m", "credd", "serve",
                    env=dict(credd_env, CREDD_SOCK=own))
    pending = connect(activated)  # starts it
    try:
        from credd.client import Client
        deadline = time.monotonic() + 30
        while not os.path.exists(own):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        with Client(own, timeout=30) as c:
            assert c.status().pid == proc.pid
        pending.settimeout(0.3)
        with pytest.raises(TimeoutError):
            pending.recv(1)  # nobody serves the socket it was not meant to take
    finally:
        pending.close()
        proc.terminate()
        proc.communicate(timeout=15)


def test_credd_serve_sends_ready_over_notify_socket(make_agent, credd_env, tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        manager.settimeout(30)
        agent = make_agent(start=False, env=dict(credd_env, NOTIFY_SOCKET=path)).start(wait=False)
        assert manager.recv(256) == b"READY=1"
        with agent.client() as c:  # ready means it answers
            assert c.status().pid == agent.pid
        agent.stop()
        assert manager.recv(256) == b"STOPPING=1"


def test_credd_stop_leaves_no_traceback_in_the_log(sock_dir, credd_env, run_credd):
    """issue 12: `credd stop` made a socket-activated agent log an InvalidStateError
    traceback from asyncio's `_sock_accept` when a client connected while the stop was
    answered (as `credd stop`'s own probe does). Several rounds of a stop with clients
    knocking at that moment, then the real `credd stop`; the log stays clean."""
    from credd import protocol as p
    path = os.path.join(sock_dir, "agent.sock")
    env = dict(credd_env, CREDD_SOCK=path)
    for round_ in range(5):
        proc = activate(path, PYTHON, "-m", "credd", "serve", env=env)
        knocking = []
        try:
            with connect(path) as s:
                s.sendall(p.encode(p.Hello(protocol=p.PROTOCOL_VERSION)))
                s.recv(4096)
                if round_ == 4:
                    stopped = run_credd("stop", env={"CREDD_SOCK": path})
                    assert stopped.returncode == 0, stopped.stderr
                else:
                    s.sendall(p.encode(p.Stop()))
                    for _ in range(4):
                        try:
                            knocking.append(connect(path, timeout=5))
                        except OSError:
                            break
            _out, err = proc.communicate(timeout=30)
        finally:
            for k in knocking:
                k.close()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Error" not in err, err
