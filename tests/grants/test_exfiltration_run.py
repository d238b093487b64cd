"""The exfiltration suite's `run` rows (docs/grants.md, "What a use grant leaves open").

A program inside a session bound to a `use` grant asks `credd run` for covered
secrets. Each row is one way it could try to see a value, and the outcome the
table promises: refused, masked, or open (and documented so). Tasks still work:
the command gets its secrets and its exit status comes back.

Real agent, real sessions (a helper opens one and starts the program below it),
real processes; the sandbox's kernel rows run as uid 65534 (root only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from credd.mask import REPLACEMENT
from tests.conftest import AS_NOBODY, SENTINEL

R = REPLACEMENT.decode()
TOKEN = "ghp_" + "Zq8" * 10
ODD = "p@ss w/rd+\"quote\"/é-" + "k" * 12  # every encoding differs from the value
UNCOVERED = "pg-" + "x7!" * 6 + " end"

#: Opens a session on the grant (argv[1]), runs the rest below it, closes the session.
SESSION = """
import subprocess, sys
from credd.client import Client
with Client() as c:
    session = c.session_open(sys.argv[1]).session
    try:
        code = subprocess.call(sys.argv[2:])
    finally:
        c.session_close(session)
sys.exit(code)
"""
CREDD = [sys.executable, "-m", "credd"]


@pytest.fixture
def vault(unlocked_agent):
    with unlocked_agent.client() as c:
        c.set("github/token", value=TOKEN)
        c.set("odd", value=ODD)
        c.set("sentinel", value=SENTINEL)
        c.set("prod/db", value=UNCOVERED)  # outside the grant
        yield c


@pytest.fixture
def grant(vault):
    """A session grant: use mode, covering github/token, odd and sentinel."""
    return vault.grant_create(["github/*", "odd", "sentinel"], "use", ttl=600).id


@pytest.fixture
def bound(credd_env, tmp_path):
    """Run argv inside a session bound to a grant: (grant, *argv) -> CompletedProcess."""
    helper = tmp_path / "session.py"
    helper.write_text(SESSION)

    def run(grant_id: str, *argv: str, timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        env = dict(credd_env)
        env.update(kwargs.pop("env", {}))
        return subprocess.run([sys.executable, str(helper), grant_id, *argv], env=env,
                              capture_output=True, timeout=timeout, **kwargs)

    run.helper = str(helper)
    return run


def _run(*args: str) -> list[str]:
    return [*CREDD, "run", *args]


def _text(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode() + r.stderr.decode()


def _leaks(text: str) -> list[str]:
    """Any value or a long piece of one of its encodings, in `text`."""
    found = []
    for value in (TOKEN, ODD, SENTINEL, UNCOVERED):
        raw = value.encode()
        pieces = {value, base64.b64encode(raw)[:-4].decode(),
                  base64.urlsafe_b64encode(raw)[:-4].decode()}
        found += [p for p in pieces if p in text]
    return found


# ---------------------------------------------------------------- tasks still work

def test_the_command_gets_its_secrets_and_its_exit_status_comes_back(vault, grant, bound):
    check = ("import hashlib, os, sys; print(hashlib.sha256(os.environ['T'].encode())"
             ".hexdigest()); sys.exit(42)")
    r = bound(grant, *_run("--env", "T=credd://github/token", "--", sys.executable, "-c", check))
    assert r.returncode == 42, r.stderr
    assert r.stdout.decode().strip() == hashlib.sha256(TOKEN.encode()).hexdigest()
    runs = [a for a in vault.audit(limit=1000) if a.op == "run"]
    assert runs and runs[-1].outcome == "ok"


def test_values_never_reach_the_caller(vault, grant, bound):
    """The routes that hand a value over the socket are refused to a use grant."""
    for argv in (["get", "github/token"], ["show", "github/token", "--reveal"],
                 ["export", "--format", "dotenv", "-o", "-", "github/token"]):
        r = bound(grant, *CREDD, *argv)
        assert r.returncode == 7, (argv, _text(r))
        assert not _leaks(_text(r))


# ---------------------------------------------------------------- masked

ENCODED = {
    "plain": 'echo "$X"',
    "env": "env",
    "base64": 'echo "$X" | base64',
    "base64url": 'printf %s "$X" | basenc --base64url',
    "url": (f"{sys.executable} -c 'import os, urllib.parse as u; "
            "print(u.quote(os.environ[\"X\"], safe=\"\"))'"),
    "hex": "printf %s \"$X\" | od -An -tx1 | tr -d ' \\n'",
    "HEX": "printf %s \"$X\" | xxd -p -u | tr -d '\\n'",
    "json": f"{sys.executable} -c 'import json, os; print(json.dumps(os.environ[\"X\"]))'",
}


@pytest.mark.parametrize("shell", [pytest.param(v, id=k) for k, v in ENCODED.items()])
def test_the_output_is_masked_in_every_encoding(vault, grant, bound, shell):
    r = bound(grant, *_run("--env", "X=credd://odd", "--", "sh", "-c", shell))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    raw = ODD.encode()
    assert R in out, out
    for leak in (ODD, base64.b64encode(raw)[:-4].decode(), raw.hex()[:-2],
                 raw.hex().upper()[:-2]):
        assert leak not in out, out


def test_mask_hits_are_audited(vault, grant, bound):
    before = len([a for a in vault.audit(limit=1000) if a.op == "mask_hit"])
    r = bound(grant, *_run("--env", "X=credd://odd", "--", "sh", "-c", 'echo "$X"'))
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        hits = [a for a in vault.audit(limit=1000) if a.op == "mask_hit"]
        if len(hits) > before:
            break
        time.sleep(0.05)
    assert len(hits) == before + 1 and hits[-1].exe.endswith("/sh")


# ---------------------------------------------------------------- refused

def test_the_started_command_is_bound_too(vault, grant, bound):
    """`credd run -- credd get X`: the command asks the agent itself, from inside the run."""
    r = bound(grant, *_run("--env", "X=credd://odd", "--", *CREDD, "get", "github/token"))
    assert r.returncode == 7, _text(r)
    assert "never hands out values" in r.stderr.decode() and not _leaks(_text(r))


def test_a_grandchild_that_double_forked_away_is_still_bound(vault, grant, bound, tmp_path):
    out = tmp_path / "grandchild.out"
    script = (f"(setsid sh -c 'sleep 0.5; {' '.join(CREDD)} get github/token > {out} 2>&1; "
              f"echo exit=$? >> {out}' &) ; exit 0")
    r = bound(grant, *_run("--env", "X=credd://odd", "--", "sh", "-c", script))
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while "exit=" not in (text := out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert "exit=7" in text and not _leaks(text)


def test_an_uncovered_name_is_not_found_exactly_as_an_absent_one(vault, grant, bound):
    uncovered = bound(grant, *_run("--env", "Y=credd://prod/db", "--", "env"))
    absent = bound(grant, *_run("--env", "Y=credd://prod/nothing", "--", "env"))
    assert uncovered.returncode == absent.returncode == 5
    said = uncovered.stderr.decode().replace("prod/db", "NAME")
    assert said == absent.stderr.decode().replace("prod/nothing", "NAME")
    assert UNCOVERED not in _text(uncovered)


def test_masking_cannot_be_turned_off(vault, grant, bound):
    r = bound(grant, *_run("--no-mask", "--env", "X=credd://odd", "--", "env"))
    assert r.returncode == 7 and not _leaks(_text(r))


def test_a_pinned_grant_runs_only_its_commands_in_its_owners_environment(vault, bound,
                                                                         tmp_path):
    pinned = vault.grant_create(["odd"], "use", ttl=600, commands=["sh -c **"]).id
    r = bound(pinned, *_run("--env", "X=credd://odd", "--", "env"))
    assert r.returncode == 7 and "pins the commands" in r.stderr.decode()
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "sh").write_text("#!/bin/sh\necho EVIL\n")
    (evil / "sh").chmod(0o755)
    r = bound(pinned, *_run("--env", "X=credd://odd", "--", "sh", "-c",
                            'echo "[$LD_PRELOAD][$PYTHONPATH][$FROM_CALLER][$TERM]"'),
              env={"PATH": f"{evil}:{os.environ['PATH']}", "LD_PRELOAD": "/nonexistent.so",
                   "PYTHONPATH": str(evil), "FROM_CALLER": "x", "TERM": "xterm"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "[][][][xterm]\n"  # the agent's sh, not the caller's


def test_after_the_uses_run_out_nothing_runs(vault, bound):
    once = vault.grant_create(["odd"], "use", ttl=600, uses=1).id
    run = " ".join(_run("--env", "X=credd://odd", "--", "true"))
    r = bound(once, "sh", "-c", f"{run}; echo first=$?; {run}; echo second=$?")
    assert r.stdout.decode() == "first=0\nsecond=7\n", r.stderr
    assert "has used all its 1 uses" in r.stderr.decode()


def test_expiry_ends_what_the_run_started(vault, bound):
    short = vault.grant_create(["odd"], "use", ttl=3).id
    start = time.monotonic()
    sleep, true = (" ".join(_run("--env", "X=credd://odd", "--", *cmd))
                   for cmd in (["sleep", "60"], ["true"]))
    r = bound(short, "sh", "-c", f"{sleep}; echo first=$?; {true}; echo second=$?")
    assert r.stdout.decode() == f"first={128 + signal.SIGTERM}\nsecond=7\n", r.stderr
    assert time.monotonic() - start < 20 and "expired" in r.stderr.decode()


def test_revoking_ends_what_the_run_started(vault, grant, bound, credd_env):
    proc = subprocess.Popen([sys.executable, bound.helper, grant,
                             *_run("--env", "X=credd://odd", "--", "sh", "-c",
                                   "echo started; exec sleep 60")],
                            env=credd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        vault.grant_revoke(grant)
        assert proc.wait(20) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# ---------------------------------------------------------------- the command's environment

def _started(bound_helper: str, grant: str, credd_env: dict) -> tuple[subprocess.Popen, int]:
    """A run that prints its command's pid and sleeps: (the session's process, that pid)."""
    proc = subprocess.Popen([sys.executable, bound_helper, grant,
                             *_run("--env", "X=credd://odd", "--", "sh", "-c",
                                   "echo $$; exec sleep 60")],
                            env=credd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, int(proc.stdout.readline())


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_the_commands_environ_is_open_to_its_own_uid(vault, grant, bound, credd_env):
    """Session row, documented open: the command runs as the owner, whose processes may read
    its /proc/PID/environ (a same-uid session deters and audits; it is not a wall)."""
    proc, pid = _started(bound.helper, grant, credd_env)
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert f"X={ODD}".encode() in environ.split(b"\0")
    finally:
        _stop(proc)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_the_commands_environ_is_closed_to_the_sandbox_uid(vault, grant, bound, credd_env):
    """Sandbox row, refused by the kernel: uid 65534 cannot read the owner's command's
    environment (nor its memory: ptrace is refused the same way)."""
    proc, pid = _started(bound.helper, grant, credd_env)
    try:
        r = subprocess.run([*AS_NOBODY, "cat", f"/proc/{pid}/environ"], capture_output=True,
                           timeout=15)
        assert r.returncode != 0 and b"Permission denied" in r.stderr
        assert ODD.encode() not in r.stdout
    finally:
        _stop(proc)


# ---------------------------------------------------------------- on a terminal

def test_on_a_terminal_under_the_grant(vault, grant, bound, credd_env):
    """Colours and TTY behaviour kept: `test -t 1` says yes and `tput cols` sees the size."""
    import fcntl
    import pty
    import struct
    import termios

    from tests.scripting.test_run import _wait_for
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 101, 0, 0))
    env = dict(credd_env, TERM="xterm")
    shell = 'test -t 1 && echo "is a tty"; tput cols; printf "\\033[32m%s\\033[0m\\n" "$X"'
    proc = subprocess.Popen([sys.executable, bound.helper, grant,
                             *_run("--env", "X=credd://odd", "--", "sh", "-c", shell)],
                            env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    try:
        with os.fdopen(master, "r+b", buffering=0) as term:
            seen = _wait_for(term, b"\x1b[0m")
            assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = seen.decode()
    assert "is a tty" in text and "101" in text
    assert f"\x1b[32m{R}\x1b[0m" in text and not _leaks(text)


# ---------------------------------------------------------------- inject

def test_inject_to_stdout_is_refused(vault, grant, bound, tmp_path):
    template = tmp_path / "t.tmpl"
    template.write_text("token={{ credd://github/token }}\n")
    r = bound(grant, *CREDD, "inject", "-i", str(template))
    assert r.returncode == 7 and not _leaks(_text(r))


def test_inject_into_a_file_only_when_the_grant_allows_it(vault, grant, bound, tmp_path,
                                                          credd_env):
    template = tmp_path / "t.tmpl"
    template.write_text("token={{ credd://github/token }}\n")
    out = tmp_path / "out.ini"
    r = bound(grant, *CREDD, "inject", "-i", str(template), "-o", str(out))
    assert r.returncode == 7 and "--inject" in r.stderr.decode() and not out.exists()
    allowed = vault.grant_create(["github/*"], "use", ttl=600, inject=True).id
    r = bound(allowed, *CREDD, "inject", "-i", str(template), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == f"token={TOKEN}\n" and out.stat().st_mode & 0o777 == 0o600
    assert not _leaks(_text(r))  # into the file, never through the program's output
    injected = [a for a in vault.audit(limit=1000) if a.op == "inject_file"]
    assert [a.outcome for a in injected] == ["ok"]
    who = subprocess.run([*CREDD, "audit", "who", "github/token", "--json"], env=credd_env,
                         capture_output=True, timeout=30)
    assert allowed in [r["grant"] for r in json.loads(who.stdout)["readers"]]  # a reader too
    template.write_text("{{ credd://prod/db }}\n")  # uncovered: not found, nothing written
    r = bound(allowed, *CREDD, "inject", "-i", str(template), "-o", str(out))
    assert r.returncode == 5 and out.read_text() == f"token={TOKEN}\n"


# ---------------------------------------------------------------- a sandbox (another uid)

@pytest.fixture
def sandboxed(vault):
    """Make a sandbox use grant for uid 65534 (its one pinned command /bin/sh -c **, more
    options as keywords) and return what runs `credd ARGS` as that uid on its own socket:
    (args, extra=env) -> CompletedProcess."""
    from tests.conftest import nobody_python
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    python, pythonpath = nobody_python()

    def make(**options):
        grant = vault.grant_create(["odd"], "use", ttl=600, uid=65534,
                                   commands=["/bin/sh -c **"], **options)
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "CREDD_SOCK": grant.socket,
               "CREDD_AGENT_UID": str(os.geteuid()), "PYTHONPATH": pythonpath,
               "PYTHONDONTWRITEBYTECODE": "1", "TERM": "dumb"}

        def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([*AS_NOBODY, python, "-m", "credd", *args], cwd="/tmp",
                                  env={**env, **(extra or {})}, capture_output=True,
                                  timeout=60, stdin=subprocess.DEVNULL)
        return run

    return make


@pytest.fixture
def sandbox(sandboxed):
    return sandboxed()


def test_a_sandbox_runs_its_pinned_command_masked_as_the_owner(sandbox):
    r = sandbox("run", "--env", "X=credd://odd", "--", "/bin/sh", "-c",
                'echo "$X" | base64; echo "uid=$(id -u)"; exit 3')
    assert r.returncode == 3, r.stderr
    out = r.stdout.decode()
    assert R in out and f"uid={os.geteuid()}" in out and not _leaks(_text(r))


def test_a_sandbox_cannot_run_what_its_grant_does_not_pin(sandbox):
    r = sandbox("run", "--env", "X=credd://odd", "--", "/usr/bin/env")
    assert r.returncode == 7 and not _leaks(_text(r))
    r = sandbox("run", "--env", "X=credd://odd", "--", "sh", "-c", "env")  # not by path
    assert r.returncode == 7 and not _leaks(_text(r))


def test_a_sandbox_cannot_point_the_pinned_command_at_its_own_code(sandbox):
    r = sandbox("run", "--env", "X=credd://odd", "--", "/bin/sh", "-c",
                'echo "[$LD_PRELOAD][$ENV][$BASH_ENV][$PATH]"',
                extra={"LD_PRELOAD": "/tmp/evil.so", "ENV": "/tmp/evil.sh",
                       "BASH_ENV": "/tmp/evil.sh"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("[][][][") and "/tmp" not in r.stdout.decode()


# ---------------------------------------------------------------- docs/grants.md's run rows

def _word(r: subprocess.CompletedProcess) -> str:
    """The table's word for what a probe saw."""
    text = _text(r)
    if _leaks(text):
        return "open"
    if r.returncode == 0 and R in text:
        return "masked"
    return {5: "not found", 3: "refused", 4: "refused", 7: "refused"}.get(  # 4: its socket closed
        r.returncode, f"unexpected (exit {r.returncode}): {text[-300:]}")


def _twice(run) -> subprocess.CompletedProcess:
    """The second of two runs (the first spends the grant's only use)."""
    assert run().returncode == 0
    return run()


def _environ(proc_pid, read) -> str:
    proc, pid = proc_pid
    try:
        return "open" if ODD.encode() in read(pid) else "refused"
    finally:
        _stop(proc)


def _read_as_nobody(pid: int) -> bytes:
    return subprocess.run([*AS_NOBODY, "cat", f"/proc/{pid}/environ"], capture_output=True,
                          timeout=15).stdout


SHELL = {"run-env": "env", "run-encoded": 'echo "$X" | base64'}
#: key -> column -> probe(vault, grant, bound, sandbox, agent) -> the table's word
RUN_PROBES = {
    "spent": {
        "session": lambda v, g, b, s, a: (lambda once: _word(b(once, "sh", "-c", " ; ".join(
            [" ".join(_run("--env", "X=credd://odd", "--", "true"))] * 2))))(
            v.grant_create(["odd"], "use", ttl=600, uses=1).id),
        "sandbox": lambda v, g, b, s, a: (lambda once: _word(_twice(lambda: once(
            "run", "--env", "X=credd://odd", "--", "/bin/sh", "-c", "true"))))(s.once),
    },
    **{key: {"session": lambda v, g, b, s, a, c=cmd: _word(b(
                 g, *_run("--env", "X=credd://odd", "--", "sh", "-c", c))),
             "sandbox": lambda v, g, b, s, a, c=cmd: _word(s(
                 "run", "--env", "X=credd://odd", "--", "/bin/sh", "-c", c))}
       for key, cmd in SHELL.items()},
    "run-get": {
        "session": lambda v, g, b, s, a: _word(b(g, *_run("--env", "X=credd://odd", "--",
                                                          *CREDD, "get", "odd"))),
        "sandbox": lambda v, g, b, s, a: _word(s(
            "run", "--env", "X=credd://odd", "--", "/bin/sh", "-c",
            f"CREDD_SOCK={a.socket} {sys.executable} -m credd get odd")),
    },
    "run-uncovered": {
        "session": lambda v, g, b, s, a: _word(b(g, *_run("--env", "Y=credd://prod/db", "--",
                                                          "env"))),
        "sandbox": lambda v, g, b, s, a: _word(s("run", "--env", "Y=credd://prod/db", "--",
                                                 "/bin/sh", "-c", "env")),
    },
    "environ": {
        "session": lambda v, g, b, s, a: _environ(_started(b.helper, g, a.env),
                                                  lambda pid: Path(
                                                      f"/proc/{pid}/environ").read_bytes()),
        "sandbox": lambda v, g, b, s, a: _environ(_started(b.helper, g, a.env),
                                                  _read_as_nobody),
    },
}


def test_the_run_rows_are_the_tables():
    from tests.grants.test_exfiltration import RUN_ROWS
    assert set(RUN_PROBES) == RUN_ROWS


@pytest.mark.timeout(90)
@pytest.mark.parametrize("key, column", [(k, c) for k, ps in RUN_PROBES.items() for c in ps],
                         ids=lambda x: x)
def test_run_route(vault, grant, bound, request, unlocked_agent, key, column):
    """Each cell of docs/grants.md's threat-model table that goes through `run`."""
    from tests.grants.test_exfiltration import TABLE
    sandbox = None
    if column == "sandbox":
        make = request.getfixturevalue("sandboxed")
        sandbox = make()
        sandbox.once = make(uses=1)
    word = RUN_PROBES[key][column](vault, grant, bound, sandbox, unlocked_agent)
    assert word == TABLE[key][column], (key, column)
