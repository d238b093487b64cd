"""Raw-socket helpers: the daemon tests speak frames directly, not through credd.client,
so they can send what no well-behaved client would."""

from __future__ import annotations

import socket
import time

import pytest

from credd import protocol as p
from tests.conftest import FAST_KDF, TEST_PASSPHRASE


class Raw:
    """One connection to the agent, frame by frame."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def send(self, message: p._Message | bytes) -> None:
        self.sock.sendall(message if isinstance(message, bytes) else p.encode(message))

    def recv_body(self) -> bytes | None:
        """One reply body, or None when the agent closed the connection."""
        header = self._exactly(4)
        if header is None:
            return None
        body = self._exactly(p.HEADER.unpack(header)[0])
        assert body is not None, "connection closed mid-frame"
        return body

    def recv(self) -> p.Response | None:
        body = self.recv_body()
        return None if body is None else p.decode_response(body)

    def call(self, message: p._Message | bytes) -> p.Response:
        self.send(message)
        reply = self.recv()
        assert reply is not None, "the agent closed the connection"
        return reply

    def hello(self) -> Raw:
        assert isinstance(self.call(p.Hello(protocol=p.PROTOCOL_VERSION, client="test")),
                          p.Welcome)
        return self

    def closed_within(self, seconds: float) -> bool:
        """True if the agent closes this connection (EOF or reset) within `seconds`."""
        self.sock.settimeout(seconds)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def _exactly(self, n: int) -> bytes | None:
        chunks, left = [], n
        while left:
            try:
                chunk = self.sock.recv(left)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw():
    """Factory: raw(agent_or_path, greet=True) -> Raw; all closed at teardown."""
    opened: list[Raw] = []

    def connect(target, greet: bool = True, timeout: float = 10.0) -> Raw:
        conn = Raw(getattr(target, "socket", target), timeout)
        opened.append(conn)
        return conn.hello() if greet else conn

    yield connect
    for conn in opened:
        conn.close()


def init_unlock(conn: Raw, **unlock: float) -> None:
    """Create the vault (fast KDF) and unlock it over a raw connection."""
    assert isinstance(conn.call(p.Init(passphrase=TEST_PASSPHRASE, **FAST_KDF)), p.RecoveryKey)
    reply = conn.call(p.Unlock(passphrase=TEST_PASSPHRASE, **unlock))
    assert isinstance(reply, p.StatusReply) and reply.state == "unlocked", reply


def status(conn: Raw) -> p.StatusReply:
    reply = conn.call(p.Status())
    assert isinstance(reply, p.StatusReply), reply
    return reply


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def serve(credd_env, tmp_path):
    """Factory: run `credd serve ARGS` as a bare subprocess (for starts meant to fail, or
    with a umask or environment the `make_agent` fixture does not offer); killed at teardown."""
    import subprocess
    import sys

    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict | None = None, umask: int = 0o022) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "credd", "serve", *args], env={**credd_env, **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            umask=umask, start_new_session=True, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        if proc.stdout:
            proc.stdout.close()


def wait_listening(path: str, proc=None, timeout: float = 15.0) -> None:
    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
            return True
        except OSError:
            return False
    wait_for(up, timeout)
