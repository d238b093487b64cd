"""The exfiltration suite: docs/grants.md's threat-model table, cell by cell.

The table is read from the docs. Each row this file owns has a probe per
column: a real program, bound as the column says, tries the row's route to a
covered value, and the probe reports what happened in the table's words
(refused, not found, open). The test asserts the table says exactly that; a
row whose route is through `run` is asserted by test_exfiltration_run.py.

Session column: `credd session --grant G -- sh -c PROBE`, the real command.
Sandbox column: the probe runs as uid 65534 (setpriv; root only) with
CREDD_SOCK set to the grant's own socket.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from credd import protocol as p
from tests.conftest import AS_NOBODY, REPO, SENTINEL, nobody_python

VALUE = SENTINEL + "-stripe"  # the covered value no probe may see
DOC = (REPO / "docs" / "grants.md").read_text()
COLUMNS = ("session", "sandbox")
#: Rows asserted by tests/grants/test_exfiltration_run.py (routes through `run`).
RUN_ROWS = {"spent", "run-env", "run-encoded", "run-get", "run-uncovered", "environ"}


def _table() -> dict[str, dict[str, str]]:
    """key -> {column: verdict}, from the threat-model table of docs/grants.md."""
    part = re.search(r"^## The threat model\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert part, "docs/grants.md has no '## The threat model'"
    rows = {}
    for line in part.group(1).splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0] not in ("key", "---"):
            rows[cells[0]] = dict(zip(COLUMNS, cells[2:4]))
    return rows


TABLE = _table()


class World:
    """An unlocked agent holding a covered and an uncovered entry, grants, and ways to run
    a probe bound by a session or as the sandbox uid."""

    def __init__(self, agent, env: dict[str, str], tmp: Path) -> None:
        self.agent, self.env, self.tmp = agent, env, tmp
        self.owner = agent.client()
        self.owner.set("stripe/key", value=VALUE)
        self.owner.set("other", value="uncovered-" + SENTINEL)

    def grant(self, **kw) -> p.Grant:
        return self.owner.grant_create(["stripe/*"], "use", ttl=kw.pop("ttl", 600.0), **kw)

    def sandbox_grant(self, **kw) -> p.Grant:
        return self.grant(uid=65534, commands=["/usr/bin/env **"], **kw)

    def in_session(self, script: str, grant: p.Grant | None = None, wait: bool = True,
                   timeout: float = 30) -> subprocess.CompletedProcess | subprocess.Popen:
        """`sh -c script` under `credd session --grant`, with `credd` a shell function."""
        grant = grant or self.grant()
        argv = [sys.executable, "-m", "credd", "session", "--grant", grant.id, "--",
                "sh", "-c", _PRELUDE + script]
        env = {**self.env, "PY": sys.executable, "D": str(self.tmp)}
        if not wait:
            return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)

    def as_sandbox(self, script: str, socket: str, timeout: float = 30
                   ) -> subprocess.CompletedProcess:
        """`sh -c script` as uid 65534, its credd talking to `socket`."""
        if os.geteuid() != 0:
            pytest.skip("the sandbox column runs as uid 65534 (setpriv): needs root")
        python, path = nobody_python()
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PY": python,
               "PYTHONPATH": path, "CREDD_SOCK": socket, "D": str(self.sandbox_dir()),
               "CREDD_AGENT_UID": str(os.geteuid()), "NO_COLOR": "1"}
        return subprocess.run([*AS_NOBODY, "sh", "-c", _PRELUDE + script], env=env, cwd="/",
                              capture_output=True, text=True, timeout=timeout)

    def sandbox_dir(self) -> Path:
        """A directory uid 65534 may write into (for files a probe leaves)."""
        d = self.tmp / "sandbox"
        d.mkdir(exist_ok=True, mode=0o777)
        os.chmod(d, 0o777)
        for parent in (self.tmp, *self.tmp.parents):
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o001)  # traversable, not listable
        return d

    def close(self) -> None:
        self.owner.close()


_PRELUDE = 'credd() { "$PY" -m credd "$@"; }\n'


@pytest.fixture
def world(unlocked_agent, credd_env, tmp_path):
    w = World(unlocked_agent, credd_env, tmp_path)
    yield w
    w.close()


def verdict(done: subprocess.CompletedProcess, code: int | None = None) -> str:
    """The table's word for what a probe saw (`code`: the inner command's exit status)."""
    text = done.stdout + done.stderr
    if VALUE in text:
        return "open"
    code = done.returncode if code is None else code
    if code == 5:
        return "not found"
    if code in (3, 4, 7):  # locked, no agent there (socket closed), denied
        return "refused"
    return f"unexpected (exit {code}): {text[-400:]}"


def _rc(world: World, name: str, directory: Path | None = None) -> int:
    path = (directory or world.tmp) / name
    return int(path.read_text().strip())


# ---------------------------------------------------------------- the probes

def _plain(command: str) -> dict[str, Callable[[World], str]]:
    """A route that is one credd command, the same in both columns."""
    def session(world: World) -> str:
        return verdict(world.in_session(command))

    def sandbox(world: World) -> str:
        return verdict(world.as_sandbox(command, world.sandbox_grant().socket))
    return {"session": session, "sandbox": sandbox}


def _nested(world: World, run: Callable[[str], subprocess.CompletedProcess]) -> str:
    """Ask for more from inside: a wider grant made on the spot, and an existing wider one."""
    wide = world.owner.grant_create(["*"], "read", ttl=600.0)
    made = run("credd session --names '*' --mode read --yes -- true")
    given = run(f"credd session --grant {wide.id} -- true")
    seen = {verdict(made), verdict(given)}
    return seen.pop() if len(seen) == 1 else f"differ: {seen}"


ORPHAN = """( ( sleep 0.5; credd get stripe/key > "$D/orphan.out" 2>&1
             echo $? > "$D/orphan.rc" ) & )
sleep 3
"""


def _orphan_session(world: World) -> str:
    done = world.in_session(ORPHAN)
    return verdict(subprocess.CompletedProcess([], 0, (world.tmp / "orphan.out").read_text(),
                                               done.stderr), _rc(world, "orphan.rc"))


def _orphan_sandbox(world: World) -> str:
    done = world.as_sandbox(ORPHAN, world.sandbox_grant().socket)
    out = world.sandbox_dir()
    return verdict(subprocess.CompletedProcess([], 0, (out / "orphan.out").read_text(),
                                               done.stderr), _rc(world, "orphan.rc", out))


def _uncovered(run: Callable[[str], subprocess.CompletedProcess]) -> str:
    """`not found` only if the reply is the one for a name that does not exist."""
    hidden, absent = run("credd show other"), run("credd show nothing")
    said = [re.sub(r"(?m)^credd: session s_.*\n", "", d.stderr) for d in (hidden, absent)]
    if said[0].replace("other", "nothing") != said[1]:
        return f"differs from an absent name: {hidden.stderr!r} / {absent.stderr!r}"
    return verdict(hidden)


def _after(world: World, end: Callable[[p.Grant], None], sandbox: bool,
           ttl: float = 600.0) -> str:
    """`credd ls` works, then the grant ends (`end`), then `credd ls` again."""
    grant = world.sandbox_grant(ttl=ttl) if sandbox else world.grant(ttl=ttl)
    script = ('credd ls > /dev/null || exit 99; touch "$D/ready"\n'
              'while [ ! -e "$D/go" ]; do sleep 0.05; done\n'
              'credd ls')
    directory = world.sandbox_dir() if sandbox else world.tmp
    if sandbox:
        python, path = nobody_python()
        proc = subprocess.Popen([*AS_NOBODY, "sh", "-c", _PRELUDE + script], cwd="/", env={
            "PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PY": python, "PYTHONPATH": path,
            "CREDD_SOCK": grant.socket, "D": str(directory),
            "CREDD_AGENT_UID": str(os.geteuid())}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    else:
        proc = world.in_session(script, grant, wait=False)
    deadline = time.monotonic() + 20
    while not (directory / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    end(grant)
    (directory / "go").touch()
    out, err = proc.communicate(timeout=30)
    return verdict(subprocess.CompletedProcess([], proc.returncode, out, err or ""))


def _expire(grant: p.Grant) -> None:
    time.sleep(max(0.0, grant.expires - time.time()) + 0.2)


def _kill_root(world: World) -> str:
    """Kill the session's root from inside; an orphan then asks, unbound by any session."""
    world.in_session('( ( sleep 1; credd ls > "$D/root.out" 2>&1; echo $? > "$D/root.rc" ) & )\n'
                     'kill -9 $PPID; sleep 0.2')
    deadline = time.monotonic() + 10
    while not (world.tmp / "root.rc").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = (world.tmp / "root.out").read_text()
    return verdict(subprocess.CompletedProcess([], 0, out, ""), _rc(world, "root.rc"))


def _agent_gone(world: World) -> str:
    """Kill the agent from inside; a process left in the tree would outlive the binding."""
    done = world.in_session(f'( ( sleep 2; credd ls > "$D/gone.out" 2>&1; '
                            f'touch "$D/survived" ) & )\nkill -TERM {world.agent.pid}; sleep 6')
    time.sleep(2.5)
    if (world.tmp / "survived").exists():
        return "open"
    return "refused" if done.returncode != 0 else f"unexpected: {done.stderr}"


def _outside_tree(world: World) -> str:
    """A server outside the session (a tmux server, systemd --user) runs what it is sent."""
    fifo = world.tmp / "server.fifo"
    os.mkfifo(fifo)
    server = subprocess.Popen(
        ["sh", "-c", f'read cmd < "{fifo}"; "$PY" -m credd get stripe/key > "$D/outside.out" '
                     f'2>&1'], env={**world.env, "PY": sys.executable, "D": str(world.tmp)})
    try:
        world.in_session(f'echo go > "{fifo}"; sleep 0.5')
        server.wait(20)
    finally:
        server.kill()
    return verdict(subprocess.CompletedProcess([], server.returncode,
                                               (world.tmp / "outside.out").read_text(), ""))


PROBES: dict[str, dict[str, Callable[[World], str]]] = {
    "get": _plain("credd get stripe/key"),
    "reveal": _plain("credd show stripe/key --reveal"),
    "export": _plain("credd export --format dotenv -o - stripe/key"),
    "inject": _plain("echo 'k={{ credd://stripe/key }}' | credd inject"),
    "nested": {"session": lambda w: _nested(w, w.in_session),
               "sandbox": lambda w: _nested(
                   w, lambda s: w.as_sandbox(s, w.sandbox_grant().socket))},
    "orphan": {"session": _orphan_session, "sandbox": _orphan_sandbox},
    "main-socket": {"sandbox": lambda w: verdict(w.as_sandbox("credd get stripe/key",
                                                              w.agent.socket))},
    "uncovered": {"session": lambda w: _uncovered(w.in_session),
                  "sandbox": lambda w: _uncovered(
                      lambda s: w.as_sandbox(s, w.sandbox_grant().socket))},
    "expired": {"session": lambda w: _after(w, _expire, False, ttl=4.0),
                "sandbox": lambda w: _after(w, _expire, True, ttl=4.0)},
    "revoked": {"session": lambda w: _after(w, lambda g: w.owner.grant_revoke(g.id), False),
                "sandbox": lambda w: _after(w, lambda g: w.owner.grant_revoke(g.id), True)},
    "kill-root": {"session": _kill_root},
    "agent-gone": {"session": _agent_gone},
    "outside-tree": {"session": _outside_tree},
}


# ---------------------------------------------------------------- the assertions

def test_the_table_is_whole():
    """Every row is probed here or through `run`; a cell without a probe says n/a."""
    assert set(TABLE) == set(PROBES) | RUN_ROWS
    for key, probes in PROBES.items():
        for column in COLUMNS:
            assert (column in probes) == (TABLE[key][column] != "n/a"), (key, column)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("key, column", [(k, c) for k, ps in PROBES.items() for c in ps],
                         ids=lambda x: x)
def test_route(world, key, column):
    assert PROBES[key][column](world) == TABLE[key][column]
