"""`credd run --restart-on-change`: keep a command running on the vault's current values.

credd stays beside the child (credd.runner runs it, with `Hooks`) and watches
the agent's events on a thread (`Subscribe`). When an entry the command's
references may name changes (or the vault is unlocked again, or the agent
comes back), the values are fetched again; only if one differs is the child
told:

- the default: `--signal` (TERM unless given) asks it to stop; after
  `GRACE` seconds it is killed; it starts again at once with the new values
  (a new environment is the only way new values reach a process's
  environment);
- with `--files` and a reload signal (HUP, USR1, USR2): its files get the new
  contents under the same paths first, then the signal; the child keeps
  running and re-reads them. Its output is then masked for the old and the
  new values alike (`_Chained`).

A child that fails on its own (non-zero exit, or a signal credd did not
send) is started again after a delay that doubles from `FIRST_DELAY` up to
`MAX_DELAY`, and starts over after a run that lived `HEALTHY` seconds; one
that exits 0 ends `credd run` with 0, and so does every exit after credd was
told to stop (TERM, INT, QUIT, HUP reach the child as in a plain `run`).

The agent going away or locking never touches the running child: credd says
so on stderr, reconnects every `RETRY` seconds, and fetches the values
again when it can. A start (after a failure) waits until the values can be
fetched: a locked vault lends no values, even to a restart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from credd import runner
from credd.errors import AgentUnavailable, BadRequest, LockedError, NoVault
from credd.mask import Masker, Patterns
from credd.protocol import Event

#: Restarts after a failure: the first delay, doubled each time up to the cap; a run
#: that lived `HEALTHY` seconds starts the sequence over.
FIRST_DELAY, MAX_DELAY, HEALTHY = 0.5, 30.0, 10.0
#: How long a child told to stop has before it is killed.
GRACE = 10.0
#: How often credd tries the agent again while it is away (or values cannot be fetched).
RETRY = 2.0
RELOAD_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
#: Signals to credd after which the child's next exit ends `credd run`.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
#: Why the values cannot be fetched now (the child keeps running meanwhile).
UNREACHABLE = (AgentUnavailable, LockedError, NoVault)

Values = dict[str, str]


def parse_signal(name: str | None, files: bool) -> signal.Signals:
    """`--signal` (TERM, SIGTERM, 15): a reload signal only with --files, since a running
    process's environment cannot be changed from outside."""
    if name is None:
        return signal.SIGTERM
    text = name.upper().removeprefix("SIG")
    try:
        sig = signal.Signals(int(text)) if text.isdigit() else signal.Signals["SIG" + text]
    except (KeyError, ValueError):
        raise BadRequest(f"--signal: unknown signal {name!r} (e.g. TERM, INT, HUP)") from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise BadRequest(f"--signal {sig.name}: the command must be able to stop cleanly; "
                         "credd sends SIGKILL itself after a grace period")
    if sig in RELOAD_SIGNALS and not files:
        raise BadRequest(f"--signal {sig.name} asks the command to reload, but new values "
                         "cannot reach a running process's environment: add --files (it "
                         "re-reads its VAR_FILE files), or use a signal that stops it")
    return sig


@dataclass
class Plan:
    """What to run and how (built by `credd run`)."""

    argv: list[str]
    refs: dict[str, str]                        # VAR → credd:// reference
    fetch: Callable[[], Values]                 # VAR → value, from the agent
    prepare: Callable[[Values], tuple[dict[str, str], runner.SecretFiles | None]]
    mask: bool = True
    files: bool = False
    sig: signal.Signals = signal.SIGTERM

    @property
    def reloads(self) -> bool:
        return self.files and self.sig in RELOAD_SIGNALS


def watched_names(refs: dict[str, str]) -> set[str]:
    """Every entry name a reference may resolve through: NAME/FIELD is the entry of the
    whole path or a field of a shorter one (credd.refs.locate), so each prefix counts."""
    from credd.refs import parse
    names: set[str] = set()
    for ref in refs.values():
        parts = parse(ref).split("/")
        names.update("/".join(parts[:n]) for n in range(1, len(parts) + 1))
    return names


def say(message: str) -> None:
    sys.stderr.write(f"credd: {message}\n")
    sys.stderr.flush()


class Backoff:
    """The delay before restarting a child that failed."""

    def __init__(self) -> None:
        self.delay = 0.0

    def after(self, lived: float) -> float:
        if lived >= HEALTHY:
            self.delay = 0.0
        self.delay = min(MAX_DELAY, self.delay * 2 if self.delay else FIRST_DELAY)
        return self.delay


class _Chained(Masker):
    """A masker to which values can be added mid-stream (after a reload): each addition is
    one more masker the output passes through, so nothing held back is ever split."""

    def __init__(self, patterns: Patterns) -> None:
        super().__init__(patterns)
        self.more: tuple[Masker, ...] = ()

    def add(self, values: list[str]) -> None:
        from credd.forms import form_patterns
        self.more = (*self.more, Masker(form_patterns(values)))

    def feed(self, data: bytes) -> bytes:
        out = super().feed(data)
        for masker in self.more:
            out = masker.feed(out)
        return out

    def flush(self) -> bytes:
        out = super().flush()
        for masker in self.more:
            out = masker.feed(out) + masker.flush()
        return out


@dataclass
class Supervisor(runner.Hooks):
    """One `credd run --restart-on-change`: the runs of the child, and what the watcher
    thread tells them."""

    plan: Plan
    values: Values
    lock: threading.Lock = field(default_factory=threading.Lock)
    proc: subprocess.Popen[bytes] | None = None
    files: runner.SecretFiles | None = None
    maskers: list[_Chained] = field(default_factory=list)
    stopping: bool = False         # credd was told to stop: the next exit is the last
    restarting: bool = False       # credd signalled the child to stop, for new values
    reachable: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------ runner.Hooks

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.proc = proc

    def signalled(self, sig: int) -> None:
        if sig in STOP_SIGNALS:
            self.stopping = True

    def masker(self, patterns: Patterns) -> Masker:
        masker = _Chained(patterns)
        self.maskers.append(masker)
        return masker

    # ------------------------------------------------------------ the runs

    def run(self) -> int:
        backoff = Backoff()
        while True:
            env, self.files = self.plan.prepare(self.values)
            self.maskers = []
            began = time.monotonic()
            status = runner.run(self.plan.argv, env, list(self.values.values()),
                                mask=self.plan.mask, files=self.files, hooks=self)
            with self.lock:
                self.proc, self.files = None, None
                asked, self.restarting = self.restarting, False
            if self.stopping or (status == 0 and not asked):
                return status
            if not asked:
                delay = backoff.after(time.monotonic() - began)
                say(f"the command exited with status {status}; starting it again in "
                    f"{delay:g} s")
                time.sleep(delay)
                self.values = self._fetch_when_possible()
            else:
                say("starting the command again with the new values")

    def _fetch_when_possible(self) -> Values:
        """The values now, or when the agent can give them (saying once why not)."""
        told = False
        while True:
            try:
                return self.plan.fetch()
            except UNREACHABLE as exc:
                if not told:
                    say(f"cannot fetch the values ({exc}); starting the command when they "
                        "can be")
                    told = True
            self.reachable.wait(RETRY)
            self.reachable.clear()

    # ------------------------------------------------------------ changes (watcher thread)

    def check(self) -> None:
        """Fetch the values again and tell the child if one differs."""
        try:
            fresh = self.plan.fetch()
        except UNREACHABLE as exc:
            say(f"a value may have changed, but cannot be fetched ({exc}); the command "
                "keeps running")
            return
        with self.lock:
            if fresh == self.values:
                return
            changed = [v for var, v in fresh.items() if self.values.get(var) != v]
            self.values = fresh
            if self.proc is None:  # between two runs: the next one starts with these
                return
            if self.plan.reloads and self.files is not None:
                self._reload(self.proc, self.files, changed)
            else:
                self._restart(self.proc)

    def _reload(self, proc: subprocess.Popen[bytes], files: runner.SecretFiles,
                changed: list[str]) -> None:
        for masker in self.maskers:  # before the child can read a new value
            masker.add(changed)
        files.refill(self.values)
        say(f"a value changed: the files hold the new values; sending {self.plan.sig.name}")
        _kill(proc, self.plan.sig)

    def _restart(self, proc: subprocess.Popen[bytes]) -> None:
        self.restarting = True
        say(f"a value changed: sending {self.plan.sig.name} to restart the command")
        _kill(proc, self.plan.sig)
        timer = threading.Timer(GRACE, _kill, (proc, signal.SIGKILL))
        timer.daemon = True
        timer.start()


def _kill(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def subscribe() -> Iterator[Event]:
    from credd.client import Client
    return Client().subscribe()


def watch(supervisor: Supervisor, names: set[str], events: Iterator[Event]) -> None:
    """The watcher thread: the agent's events, for as long as credd runs; when the agent
    goes away, a new subscription once it is back."""
    from credd import protocol as p
    while True:
        for event in events:
            if isinstance(event, p.EntryChanged) and (
                    event.name in names or event.new_name in names):
                supervisor.check()
            elif isinstance(event, p.Unlocked):
                supervisor.reachable.set()
                supervisor.check()
            elif isinstance(event, p.Locked):
                say("the vault is locked: the command keeps running; a change is acted on "
                    "once it is unlocked")
        say("the agent went away: the command keeps running; watching again when it is back")
        events = _resubscribe()
        say("the agent is back")
        supervisor.reachable.set()
        supervisor.check()  # what changed while it was away


def _resubscribe() -> Iterator[Event]:
    while True:
        try:
            return subscribe()
        except UNREACHABLE:
            time.sleep(RETRY)


def supervise(plan: Plan) -> int:
    """Run the plan until the child exits for good; its exit status. The subscription comes
    first: no change after the values are fetched goes unseen."""
    events = subscribe()
    supervisor = Supervisor(plan, plan.fetch())
    thread = threading.Thread(target=watch, args=(supervisor, watched_names(plan.refs), events),
                              name="credd-run-watch", daemon=True)
    thread.start()
    return supervisor.run()
