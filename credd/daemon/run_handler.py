"""`run`: the agent starts a command with secrets in its environment, on the caller's own
descriptors or a terminal of the agent's, masks what it writes, and answers how it ended.

This is how a `use` grant uses secrets without ever receiving one (docs/grants.md):

1. While the connection is still an ordinary one (an error leaves it so): the
   grants must admit the command (pinned commands), its program and working
   directory must exist, and every reference must resolve among the names the
   grants cover (any other name is not found, as if absent). The values are
   audited (`run`, fail closed) before they go anywhere.
2. The connection is taken over: `ready`, then the caller's stdin, stdout
   and stderr arrive (SCM_RIGHTS).
3. A subreaper (reapers.py) is registered as a session root with the caller's
   binding *before* the command starts under it, so the command and all it
   starts, orphans included, are bound to the same grants: `credd run -- credd
   get X` gains nothing.
4. The command runs on pipes, or on a PTY the agent owns when the caller is on
   a terminal (runner.Wiring, as `credd run` does). Its output is masked (the
   values and their encoded forms, credd.forms) on a thread of its own
   (runner.pump); each secret that appears is audited once per run
   (`mask_hit`, naming the command). `resize` and `signal` from the client are
   acted on meanwhile.
5. The last frame is `run_exit`. What the command left running stays bound
   (and below the subreaper) until it ends, or its grant does.

The command's environment is the caller's (`Run.env`) plus the secrets; the
agent's own is never passed on. When a grant pins commands, the caller's
environment is cut to PINNED_PASS and PATH, HOME and the user's names are the
agent's: otherwise the caller could point the pinned program at code of its
own (LD_PRELOAD, PATH, PYTHONPATH, a proxy, a CA bundle...). Its working
directory is still the caller's: a pinned program that reads its configuration
or code from there runs what the caller wrote, and is no wall (docs/grants.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from credd import protocol as p
from credd import runner
from credd.errors import BadRequest, CreddError, Denied, NotFound
from credd.forms import form_patterns, forms
from credd.mask import Masker
from credd.refs import parse

from . import handlers as h
from .binding import Binding
from .peer import Peer, program_name
from .reapers import Reaper
from .state import AgentState

#: What a caller whose grant pins commands may set in their environment: how text looks.
PINNED_PASS = ("TERM", "COLORTERM", "NO_COLOR", "LANG", "LANGUAGE", "TZ", "COLUMNS", "LINES")
#: ...and what comes from the agent instead (the owner's own).
OWNER_VARS = ("PATH", "HOME", "USER", "LOGNAME")
#: Signals a client may pass on (what a terminal, a shell or a supervisor sends).
PASSABLE = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                      signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP,
                      signal.SIGWINCH})
STDIO = 3


class RunCaller(h.Caller, Protocol):
    binding: Binding

    async def take_over(self, ready: p.Response, count: int) -> tuple[list[int],
                                                                       asyncio.StreamReader]: ...


async def run(state: AgentState, conn: RunCaller, req: p.Run) -> p.RunExit:
    command = _prepare(state, conn, req)
    fds, inbox = await conn.take_over(p.Ready(), STDIO)
    try:
        return await command.run(state, conn.binding, fds, inbox)
    finally:
        for fd in fds:  # unless the masking thread took them: it closes them when done
            os.close(fd)


class _Command:
    """A checked command, its environment with the secrets, and what masks them."""

    def __init__(self, argv: list[str], path: str, cwd: str, env: dict[str, str],
                 named: list[tuple[str, str]], req: p.Run, audit_key: bytes) -> None:
        self.argv, self.path, self.cwd, self.env = argv, path, cwd, env
        self.named = named          # (entry name, a value it gave): mask hits name it
        self.req = req
        self.audit_key = audit_key

    def __repr__(self) -> str:
        return f"_Command({self.path!r}, <{len(self.named)} secrets>)"

    async def run(self, state: AgentState, binding: Binding, fds: list[int],
                  inbox: asyncio.StreamReader) -> p.RunExit:
        reaper = await state.reapers.take()
        session = None if binding.owner else state.sessions.add(reaper.pid, binding)
        reaper.ended.add_done_callback(lambda _: _forget(state, session))
        reaper.grants = frozenset(g.id for g in binding.grants)
        wiring = runner.Wiring((fds[0], fds[1], fds[2]),
                               pty=self.req.tty and os.isatty(fds[1]))
        try:
            if self.req.rows and self.req.cols:
                wiring.resize(runner.window_size(self.req.rows, self.req.cols))
            pid = await reaper.start(self._spec(binding, wiring), wiring.child)
        except BaseException:
            wiring.close()
            reaper.close()
            raise
        wiring.close_child()
        return await self._watch(state, _Started(self._peer(pid), binding), reaper, wiring,
                                 fds, inbox)

    def _spec(self, binding: Binding, wiring: runner.Wiring) -> dict[str, Any]:
        """The job for the subreaper (credd/reaper.py)."""
        deadline = min((g.expires for g in binding.grants), default=0.0)
        return {"argv": self.argv, "path": self.path, "cwd": self.cwd, "env": self.env,
                "umask": self.req.umask & 0o777, "ctty": wiring.master is not None,
                "deadline": deadline}

    def _peer(self, pid: int) -> Peer:
        """The started command as the audit names it (its program, never its arguments)."""
        return Peer(uid=os.geteuid(), pid=pid,
                    _named=(self.path, program_name(self.argv, self.path)))

    async def _watch(self, state: AgentState, origin: _Started, reaper: Reaper,
                     wiring: runner.Wiring, fds: list[int],
                     inbox: asyncio.StreamReader) -> p.RunExit:
        """Mask the output (a thread of its own) and follow the client until the command
        has ended and its output is all out."""
        loop = asyncio.get_running_loop()
        exited = threading.Event()
        hits = _Hits(self, state, loop, origin)
        pumped = _pump_in_thread(wiring, hits, exited, loop, fds[:])
        fds.clear()  # the thread's now: closed when it is done, never under its feet
        following = asyncio.ensure_future(_follow(inbox, reaper, wiring))
        try:
            status = await reaper.waited
        except BaseException:
            reaper.close()  # the agent stops, or the subreaper died: the tree ends
            raise
        finally:
            exited.set()
        try:
            await pumped
        finally:
            following.cancel()
        code = os.waitstatus_to_exitcode(status)
        return p.RunExit(code=128 - code if code < 0 else code, signal=max(0, -code))


def _forget(state: AgentState, session: str | None) -> None:
    if session is not None:
        state.sessions.remove(session)


def _prepare(state: AgentState, conn: RunCaller, req: p.Run) -> _Command:
    """Everything that can fail before the connection is taken over, values last."""
    if not req.argv or not req.argv[0]:
        raise BadRequest("run needs a command")
    policy = conn.binding.policy
    if not policy.permits(req.argv):
        raise Denied(f"this connection's grant does not allow running {req.argv[0]!r} with "
                     "these arguments: it pins the commands it runs (credd grant show)")
    pinned = any(g.commands for g in conn.binding.grants)
    cwd = req.cwd or os.path.expanduser("~")
    if not os.path.isabs(cwd) or not os.path.isdir(cwd):
        raise BadRequest(f"the working directory {cwd!r} does not exist for the agent "
                         "(an absolute path on the agent's side)")
    _check_exec_strings(req)
    env = _environment(req.env, pinned)
    path = resolve_program(req.argv[0], env.get("PATH", os.defpath), cwd)
    store = h.store_for(state, conn)
    key = store.audit_key
    values, entries = h.secret_values(state, conn, store,
                                      list(dict.fromkeys(req.secrets.values())), "run")
    env.update({var: values[ref] for var, ref in req.secrets.items()})
    named = [(entries[ref], value) for ref, value in values.items()]
    return _Command(req.argv, path, cwd, env, named, req, key)


def _check_exec_strings(req: p.Run) -> None:
    """What execve would refuse, refused here with a reason (names never with values)."""
    if any("\0" in arg for arg in req.argv):
        raise BadRequest("an argument holds a NUL character")
    for var in (*req.env, *req.secrets):
        if not var or "=" in var or "\0" in var:
            raise BadRequest(f"{var[:40]!r} is not an environment variable name")
    if any("\0" in value for value in req.env.values()):
        raise BadRequest("an environment value holds a NUL character")
    for ref in req.secrets.values():
        parse(ref)


def _environment(caller: dict[str, str], pinned: bool) -> dict[str, str]:
    """The command's environment before the secrets (see the module's docstring)."""
    if not pinned:
        return dict(caller)
    env = {k: v for k, v in caller.items() if k in PINNED_PASS or k.startswith("LC_")}
    env.update({k: os.environ[k] for k in OWNER_VARS if k in os.environ})
    env.setdefault("PATH", os.defpath)
    return env


def resolve_program(name: str, path: str, cwd: str) -> str:
    """The file `name` runs, as execvp would find it from `cwd` with `path` (NotFound)."""
    if "/" in name:
        candidates = [os.path.join(cwd, name)]
    else:
        candidates = [os.path.join(cwd, d or ".", name) for d in path.split(os.pathsep)]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.normpath(candidate)
    raise NotFound(f"command not found: {name}")


@dataclass(frozen=True, slots=True)
class _Started:
    """The origin of a mask hit (binding.Origin): the command itself, bound as its caller."""

    peer: Peer
    binding: Binding


class _Hits:
    """Which secrets appeared in the output: audited once per entry name, as they show.

    Called on the masking thread; the occurrence's bytes are looked up among every
    form of every value (the table is made at the first hit: most runs have none)."""

    def __init__(self, command: _Command, state: AgentState, loop: asyncio.AbstractEventLoop,
                 origin: _Started) -> None:
        self.command, self.state, self.loop, self.origin = command, state, loop, origin
        self._forms: dict[bytes, list[str]] | None = None
        self._seen: set[str] = set()

    def __call__(self, occurrence: bytes) -> None:
        if self._forms is None:
            self._forms = _forms_of(self.command.named)
        names = self._forms.get(occurrence) or self._forms.get(occurrence.lower()) or []
        fresh = [n for n in names if n not in self._seen]
        if fresh:
            self._seen.update(fresh)
            self.loop.call_soon_threadsafe(self._record, fresh)

    def _record(self, names: list[str]) -> None:
        self.state.audit.try_record("mask_hit", "masked", names=names,
                                    key=self.command.audit_key, origin=self.origin)


def _forms_of(named: list[tuple[str, str]]) -> dict[bytes, list[str]]:
    found: dict[bytes, list[str]] = {}
    for name, value in named:
        for form in forms(value):
            found.setdefault(form, []).append(name)
    return found


def _masker_for(command: _Command, hits: _Hits) -> Any:
    patterns = form_patterns([value for _, value in command.named], background=True)
    return lambda: Masker(patterns, on_hit=hits)


def _pump_in_thread(wiring: runner.Wiring, hits: _Hits, exited: threading.Event,
                    loop: asyncio.AbstractEventLoop, fds: list[int]) -> asyncio.Future[None]:
    """Mask and copy the command's output on a thread of its own (the loop goes on serving
    other clients); the future is done when all is out, the wiring and the caller's
    descriptors `fds` closed."""
    done: asyncio.Future[None] = loop.create_future()
    routes = wiring.routes(_masker_for(hits.command, hits))

    def pump() -> None:
        error: BaseException | None = None
        try:
            runner.pump(routes, exited.is_set, on_gone=wiring.close_source,
                        chunk=wiring.chunk, threaded=wiring.threaded)
        except BaseException as exc:  # re-raised on the loop
            error = exc
        finally:
            wiring.close()
            for fd in fds:  # the caller's, closed here: no other thread writes them
                os.close(fd)
        loop.call_soon_threadsafe(_settle, done, error)

    threading.Thread(target=pump, name="credd-run-pump", daemon=True).start()
    return done


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


async def _follow(inbox: asyncio.StreamReader, reaper: Reaper, wiring: runner.Wiring) -> None:
    """What the client sends while the command runs: window sizes and signals. Its
    leaving (or garbage) hangs the command up, as a closed terminal would."""
    try:
        while True:
            body = await inbox.readexactly(p.body_length(await inbox.readexactly(4)))
            message = p.decode_run_input(body)
            if isinstance(message, p.Resize):
                wiring.resize(runner.window_size(message.rows, message.cols))
            elif message.signal in PASSABLE:
                reaper.signal(message.signal)
    except (asyncio.IncompleteReadError, p.FrameError, ConnectionError, CreddError):
        reaper.signal(signal.SIGHUP)
