"""The socket, its directory, one agent per socket, peers of other uids, process hardening."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from credd import protocol as p
from tests.conftest import AS_NOBODY, nobody_python
from tests.daemon.conftest import init_unlock, status, wait_for, wait_listening
from tests.tools import need

#: systemd-socket-activate passes on only the variables -E names: the test's vault, not ~'s.
PASSED = [arg for name in ("CREDD_VAULT", "CREDD_STATE_DIR", "HOME", "PYTHONPATH")
          for arg in ("-E", name)]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")


def exits_with(proc, code: int, *needles: str) -> str:
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == code, out
    for needle in needles:
        assert needle in out, out
    return out


class TestModes:
    def test_socket_born_0600_in_a_0700_dir_under_umask_000(self, serve, isolated_env):
        sock = isolated_env["CREDD_SOCK"]
        proc = serve(umask=0)
        wait_listening(sock, proc)
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()
        assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
        for root in (os.path.dirname(sock), isolated_env["CREDD_STATE_DIR"]):
            for dirpath, dirs, files in os.walk(root):
                for name in dirs + files:
                    assert not os.stat(os.path.join(dirpath, name)).st_mode & 0o077, name
        with open(f"/proc/{proc.pid}/status") as f:
            assert "Umask:\t0077" in f.read()

    def test_loose_dir_refused(self, serve, isolated_env):
        sock = isolated_env["CREDD_SOCK"]
        os.mkdir(os.path.dirname(sock), 0o755)
        os.chmod(os.path.dirname(sock), 0o755)
        exits_with(serve(), 7, "accessible by other users", "chmod 700")
        assert not os.path.lexists(sock)

    @needs_root
    def test_foreign_dir_refused(self, serve, isolated_env):
        sock = isolated_env["CREDD_SOCK"]
        os.mkdir(os.path.dirname(sock), 0o700)
        os.chown(os.path.dirname(sock), 65534, 65534)
        exits_with(serve(), 7, "owned by uid 65534")
        assert not os.path.lexists(sock)

    def test_path_too_long(self, serve, isolated_env):
        sock = os.path.join(os.path.dirname(isolated_env["CREDD_SOCK"]), "s" * 120)
        exits_with(serve(env={"CREDD_SOCK": sock}), 2, "too long")

    def test_something_else_at_the_path_is_left_alone(self, serve, isolated_env):
        sock = isolated_env["CREDD_SOCK"]
        os.mkdir(os.path.dirname(sock), 0o700)
        with open(sock, "w") as f:
            f.write("precious")
        exits_with(serve(), 7, "not a socket")
        assert open(sock).read() == "precious"


class TestOneAgent:
    def test_second_agent_refused_while_the_first_serves(self, agent, serve, raw):
        exits_with(serve(), 1, f"pid {agent.pid}", "already serving")
        assert status(raw(agent)).pid == agent.pid

    def test_stale_socket_replaced_after_kill_9(self, agent, make_agent, raw):
        agent.proc.kill()
        agent.proc.wait(5)
        assert stat.S_ISSOCK(os.lstat(agent.socket).st_mode)  # left behind
        second = make_agent()
        assert status(raw(second)).pid == second.pid != agent.pid

    def test_socket_activation(self, credd_env, isolated_env, tmp_path, raw):
        tool = need("systemd-socket-activate")
        sock = isolated_env["CREDD_SOCK"]
        os.mkdir(os.path.dirname(sock), 0o700)
        log = open(tmp_path / "activated.log", "wb")
        proc = subprocess.Popen([tool, "-l", sock, *PASSED, sys.executable, "-m", "credd",
                                 "serve"], env=credd_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_listening(sock)
            assert status(raw(sock)).pid == proc.pid  # the tool execs the agent
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(5) == 0
            assert os.path.exists(sock)  # the service manager's socket is not ours to remove
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


class TestOneVault:
    """One agent per vault file, whatever socket it serves on: a second agent would serve a
    stale picture of the file (and have its writes refused)."""

    def test_second_agent_on_the_same_vault_refused_naming_the_first(self, agent, serve, raw,
                                                                      isolated_env):
        other = os.path.join(os.path.dirname(agent.socket), "other.sock")
        out = exits_with(serve(env={"CREDD_SOCK": other}), 1, f"pid {agent.pid}",
                         agent.socket, "already serving the vault")
        assert "Traceback" not in out
        assert not os.path.lexists(other)  # refused before binding anything
        lock = agent.vault + ".lock"
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
        assert open(lock).read() == f"pid={agent.pid}\nsocket={agent.socket}\n"
        # the lock was taken before the vault existed; `credd init` goes through the first
        init_unlock(raw(agent))
        assert status(raw(agent)).state == "unlocked"
        exits_with(serve(env={"CREDD_SOCK": other}), 1, f"pid {agent.pid}")

    def test_the_refusal_has_its_own_code(self, agent):
        """`in_use`, not `exists`: the vault (or socket) is served by an agent already."""
        from credd import lockfile
        from credd.errors import InUse
        for take in (lambda: lockfile.lock_vault(agent.vault, "/elsewhere.sock"),
                     lambda: lockfile.take(agent.socket + ".lock", pid=os.getpid())):
            with pytest.raises(InUse) as held:
                take()
            assert held.value.code == "in_use" and f"pid {agent.pid}" in held.value.message

    def test_the_lock_goes_with_the_agent(self, agent, make_agent, run_credd):
        other = os.path.join(os.path.dirname(agent.socket), "other.sock")
        agent.proc.kill()  # kill -9: the kernel drops the flock
        agent.proc.wait(5)
        second = make_agent(env={**agent.env, "CREDD_SOCK": other})
        assert run_credd("stop", env={"CREDD_SOCK": other}).returncode == 0
        third = make_agent()  # at once: `credd stop` returned after the locks were released
        assert third.proc.poll() is None and second.proc.wait(5) == 0

    def test_a_socket_activated_agent_on_a_served_vault_refuses(self, agent, credd_env,
                                                                 tmp_path):
        tool = need("systemd-socket-activate")
        activated = os.path.join(os.path.dirname(agent.socket), "act.sock")
        proc = subprocess.Popen([tool, "-l", activated, *PASSED, sys.executable, "-m", "credd",
                                 "serve"], env=credd_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: os.path.exists(activated))
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                wait_for(lambda: s.connect_ex(activated) == 0)  # starts the agent
                out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 1, out
        assert f"pid {agent.pid}" in out and agent.socket in out, out


class TestNoRuntimeDir:
    """With XDG_RUNTIME_DIR unset (a cron job, `su`, some SSH setups) the agent serves in
    the user's state dir, not in /tmp/credd-<uid>, which another user could create first."""

    @staticmethod
    def env_without_runtime_dir(credd_env) -> dict[str, str]:
        return {k: v for k, v in credd_env.items() if k not in ("XDG_RUNTIME_DIR", "CREDD_SOCK")}

    def test_serves_in_the_state_dir_and_status_says_why(self, credd_env):
        env = self.env_without_runtime_dir(credd_env)
        sock = os.path.join(env["CREDD_STATE_DIR"], "agent.sock")
        proc = subprocess.Popen([sys.executable, "-m", "credd", "serve"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_listening(sock, proc)
            out = subprocess.run([sys.executable, "-m", "credd", "status"], env=env,
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 5, out.stderr  # no vault yet
            assert (f"socket:   {sock} (XDG_RUNTIME_DIR unset: using "
                    f"{env['CREDD_STATE_DIR']})") in out.stdout
        finally:
            proc.terminate()
            proc.communicate(timeout=10)

    @needs_root
    def test_a_directory_another_user_made_in_tmp_does_not_matter(self, tmp_path):
        """uid 65534 with no XDG_RUNTIME_DIR, and /tmp/credd-65534 made by root first: the
        agent starts anyway, under its own home (before: refused, and the user was stuck)."""
        python, pythonpath = nobody_python()
        squatted = "/tmp/credd-65534"
        made = not os.path.lexists(squatted)
        if made:
            os.mkdir(squatted, 0o755)
        home = tempfile.mkdtemp(prefix="cd", dir="/tmp")
        os.chmod(home, 0o700)
        os.chown(home, 65534, 65534)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": pythonpath,
               "CREDD_VAULT": f"{home}/v/vault.db"}
        agent = subprocess.Popen([*AS_NOBODY, python, "-m", "credd", "serve"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            sock = f"{home}/.local/state/credd/agent.sock"
            wait_listening(sock, agent)
            out = subprocess.run([*AS_NOBODY, python, "-m", "credd", "status"], env=env,
                                 capture_output=True, text=True, timeout=30)
            assert f"{sock} (XDG_RUNTIME_DIR unset" in out.stdout, out
            assert os.stat(sock).st_uid == 65534
        finally:
            agent.kill()
            agent.wait()
            agent.stdout.close()
            shutil.rmtree(home, ignore_errors=True)
            if made:
                os.rmdir(squatted)


class TestPeers:
    @needs_root
    def test_other_uid_refused_before_any_frame(self, agent, raw):
        runtime = os.path.dirname(agent.socket)
        for path, mode in ((os.path.dirname(runtime), 0o755), (runtime, 0o755),
                           (agent.socket, 0o666)):
            os.chmod(path, mode)  # on purpose, as OpenSSH's agent-getpeereid test does
        client = ("import socket,sys\n"
                  "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)\n"
                  "try:\n"
                  f"    s.sendall({p.encode(p.Hello(protocol=1))!r} + {p.encode(p.Status())!r})\n"
                  "    data = s.recv(100)\n"
                  "except (ConnectionResetError, BrokenPipeError): data = b''\n"
                  "print('EOF' if data == b'' else 'DATA')\n")
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              python, "-c", client, agent.socket],
                             capture_output=True, text=True, timeout=20)
        assert out.stdout.strip() == "EOF", out
        wait_for(lambda: "refused a connection from uid 65534" in agent.log(), 3)
        with open(os.path.join(agent.state_dir, "audit.jsonl")) as f:
            assert '"op":"peer_rejected","outcome":"denied"' in f.read()
        assert status(raw(agent)).state == "no_vault"  # and the owner is still served


class TestHardening:
    def test_no_core_files(self, agent):
        with open(f"/proc/{agent.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max core file size"))
        assert line.split()[4:6] == ["0", "0"]

    @needs_root
    def test_not_dumpable(self, tmp_path):
        """A non-dumpable process's /proc files belong to root, so its own uid cannot read
        its memory or environment. Shown on an agent run as uid 65534 (as root, CAP_SYS_PTRACE
        and file ownership hide the difference)."""
        python, pythonpath = nobody_python()
        home = tempfile.mkdtemp(prefix="cd", dir="/tmp")
        os.chown(home, 65534, 65534)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": pythonpath,
               "CREDD_SOCK": f"{home}/r/a.sock", "CREDD_VAULT": f"{home}/v/vault.db",
               "CREDD_STATE_DIR": f"{home}/st"}
        agent = subprocess.Popen([*AS_NOBODY, python, "-m", "credd", "serve"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        control = subprocess.Popen([*AS_NOBODY, "sleep", "30"])
        try:
            wait_listening(env["CREDD_SOCK"], agent)
            assert os.stat(f"/proc/{control.pid}/environ").st_uid == 65534  # dumpable: its own
            assert os.stat(f"/proc/{agent.pid}/environ").st_uid == 0
            read = subprocess.run([*AS_NOBODY, "head", "-c1", f"/proc/{agent.pid}/environ"],
                                  capture_output=True)
            assert read.returncode != 0 and b"Permission denied" in read.stderr
        finally:
            for proc in (agent, control):
                proc.kill()
                proc.wait()
            agent.stdout.close()
            shutil.rmtree(home, ignore_errors=True)
