"""SECURITY 20: secrets never in argv, environment, logs, files, exceptions or stderr.

The whole CLI is driven with two sentinels, a passphrase and a stored value. Commands
whose job is to print the value (`get`, `show --reveal`, `inject`, `export` to stdout)
may put it on stdout; nothing may put it on stderr, and the passphrase appears nowhere.
Afterwards every file under the state, runtime and vault directories, and the agent's
log, is searched for both; and /proc/<pid>/cmdline of running clients is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import SENTINEL
from tests.security.conftest import tree

PASSPHRASE = "PASSPHRASE-SENTINEL-4be1d0c2"
NEW_PASSPHRASE = "PASSPHRASE-SENTINEL-NEW-93aa71f0"
FIELD_SECRET = "FIELD-SENTINEL-0d5e66b1"
SECRETS = (SENTINEL, PASSPHRASE, NEW_PASSPHRASE, FIELD_SECRET)

#: (argv, stdin, may stdout show the stored secrets?, expected exit code)
SESSION = [
    (["init", "--passphrase-stdin", "--kdf-memory", "19MiB", "--kdf-iterations", "2",
      "--kdf-lanes", "1"], PASSPHRASE + "\n", False, 0),
    (["unlock", "--passphrase-stdin"], PASSPHRASE + "\n", False, 0),
    (["set", "gh", "--value-stdin", "--service", "github", "--tag", "t"], SENTINEL, False, 0),
    (["set", "aws", "--field", "user=alice", "--secret-field", "key"], FIELD_SECRET, False, 0),
    (["get", "gh"], None, True, 0),
    (["get", "gh", "-n"], None, True, 0),
    (["get", "aws/key"], None, True, 0),
    (["get", "nope"], None, False, 5),
    (["get", "aws/missing"], None, False, 5),
    (["show", "gh"], None, False, 0),
    (["show", "aws", "--json"], None, False, 0),
    (["show", "gh", "--reveal"], None, True, 0),
    (["ls"], None, False, 0),
    (["ls", "--json"], None, False, 0),
    (["history", "gh"], None, False, 0),
    (["status"], None, False, 0),
    (["status", "--json"], None, False, 0),
    (["check"], None, False, 0),
    (["audit"], None, False, 0),
    (["audit", "--json"], None, False, 0),
    (["run", "--env", "TOKEN=credd://gh", "--", "sh", "-c", 'echo "token=$TOKEN" >&2; echo $TOKEN'],
     None, False, 0),
    (["run", "--env", "TOKEN=credd://nope", "--", "true"], None, False, 5),
    (["inject"], "x={{ credd://gh }}\n", True, 0),
    (["export", "--format", "dotenv", "-o", "-", "gh"], None, True, 0),
    (["redact"], f"log line {SENTINEL} end\n", False, 0),
    (["set", "gh", "--value-stdin", "--create"], SENTINEL + "2", False, 1),  # exists: an error
    (["set", "bad\x01name", "--value-stdin"], SENTINEL + "3", False, 2),   # invalid name
    (["unlock", "--passphrase-stdin"], "wrong " + PASSPHRASE + "\n", False, 0),  # unlocked
    (["unlock", "--force", "--passphrase-stdin"], "wrong " + PASSPHRASE + "\n", False, 6),
    (["passwd", "--passphrase-stdin"], f"wrong {PASSPHRASE}\n{NEW_PASSPHRASE}\n", False, 6),
    (["sleep"], "0.6", False, None),  # past the unlock throttle the two failures opened
    (["passwd", "--passphrase-stdin"], f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n", False, 0),
    (["lock"], None, False, 0),
    (["get", "gh"], None, False, 3),  # locked
    (["unlock", "--passphrase-stdin"], PASSPHRASE + "\n", False, 6),  # the old one: refused
    (["sleep"], "1.1", False, None),
    (["unlock", "--passphrase-stdin"], NEW_PASSPHRASE + "\n", False, 0),
    (["rekey", "--passphrase-stdin"], NEW_PASSPHRASE + "\n", False, 0),
]


def _files_with(roots: list[str], needle: bytes) -> list[str]:
    hits = []
    for path in sorted(tree(*roots)):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                if needle in f.read():
                    hits.append(path)
    return hits


def test_no_secret_on_stderr_in_files_or_logs(make_agent, run_credd, tmp_path):
    agent = make_agent()
    for argv, stdin, shows, code in SESSION:
        if argv == ["sleep"]:
            time.sleep(float(stdin))
            continue
        out = run_credd(*argv, input=stdin)
        assert out.returncode == code, (argv, out.returncode, out.stderr[-300:])
        assert "Traceback" not in out.stderr, (argv, out.stderr[-600:])
        for secret in SECRETS:
            assert secret not in out.stderr, f"{secret[:12]}… on stderr of credd {argv}"
        for secret in (PASSPHRASE, NEW_PASSPHRASE):
            assert secret not in out.stdout, f"passphrase on stdout of credd {argv}"
        if not shows:
            for secret in (SENTINEL, FIELD_SECRET):
                assert secret not in out.stdout, f"secret on stdout of credd {argv}"
    # the values the session expects really are stored (the checks above were not vacuous)
    assert run_credd("get", "gh").stdout.strip() == SENTINEL
    assert run_credd("get", "aws/key").stdout.strip() == FIELD_SECRET
    agent.stop()
    roots = [agent.state_dir, os.path.dirname(agent.socket), os.path.dirname(agent.vault)]
    for secret in (*SECRETS, "github"):  # and no service name in clear in any file
        assert not _files_with(roots, secret.encode()), secret
        assert secret not in agent.log(), secret


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def test_client_argv_never_carries_a_secret(unlocked_agent, credd_env):
    """While a client waits for or holds a secret, its /proc cmdline does not contain it."""
    env = dict(credd_env)
    procs = {
        "unlock": [sys.executable, "-m", "credd", "unlock", "--force", "--passphrase-stdin"],
        "set": [sys.executable, "-m", "credd", "set", "gh", "--value-stdin"],
        "run": [sys.executable, "-m", "credd", "run", "--env", "T=credd://gh", "--",
                "sh", "-c", "sleep 1"],
    }
    with unlocked_agent.client() as c:
        c.set("gh", value=SENTINEL)
    seen: dict[str, bytes] = {}
    for what, argv in procs.items():
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            time.sleep(0.3)
            if what == "set":
                proc.stdin.write(SENTINEL.encode())
            elif what == "unlock":
                proc.stdin.write(b"wrong passphrase\n")
            proc.stdin.close()
            deadline = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    seen[what] = seen.get(what, b"") + _cmdline(proc.pid)
                    for child in _children(proc.pid):
                        seen[what] += _cmdline(child)
                except (FileNotFoundError, ProcessLookupError):
                    break
                time.sleep(0.05)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    assert seen, "no client was observed running"
    for what, cmdlines in seen.items():
        assert SENTINEL.encode() not in cmdlines, f"secret in the argv of `credd {what}`"
        assert b"wrong passphrase" not in cmdlines


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []
