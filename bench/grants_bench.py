"""Grants: what binding a connection costs (docs/grants.md, "Speed").

    walk   Sessions.binding_for in-process, as the agent calls it at accept: a peer at
           the bottom of a session tree (--depth: chains of shells, each the parent of
           the next; one /proc read per ancestor, so the cost grows with depth), and a
           peer in no session while --unrelated processes run and a session is
           registered elsewhere; p50 and p99 per binding, against the
           1 ms budget. (The walk reads the peer's ancestors only, never all of /proc:
           unrelated processes cost nothing, which is what the second figure shows.)
    get    a connection's first request against a real agent: connect + hello + get on
           a new connection each time (a binding is decided at accept), for an unbound
           peer with no session registered and with --sessions sessions registered
           (so the walk runs), and `credd get NAME` as a process. With --baseline DIR,
           the same against an agent run from that checkout (main: before grants).

Run by `make bench`; measures, never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from client_bench import bench_env, ms, row, start_agent, stop

from credd.client import Client
from credd.daemon.binding import Binding, Sessions, parent_and_start
from credd.grants import make_grant

PASSPHRASE = "bench passphrase"
FAST_KDF = {"kdf_memory_kib": 19 * 1024, "kdf_iterations": 2, "kdf_lanes": 1}
BUDGET = 1e-3  # binding may add at most 1 ms to a connection's first request
HOLD_SESSION = """
import sys, time
from credd.client import Client
c = Client()
c.session_open(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[98]


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


# ---------------------------------------------------------------- walk

@contextlib.contextmanager
def chain(depth: int) -> Iterator[list[int]]:
    """`depth` shells, each the parent of the next; their pids, root first."""
    script = ('f() { if [ "$1" -gt 0 ]; then f $(($1 - 1)) & wait; else echo $BASHPID; '
              'exec sleep 600; fi; }; f ' + str(depth))
    root = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True)
    assert root.stdout is not None
    leaf = int(root.stdout.readline())
    pids = [leaf]
    while pids[-1] != root.pid:
        pids.append(parent_and_start(pids[-1])[0])
    try:
        yield pids[::-1]
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        root.wait()


@contextlib.contextmanager
def unrelated(count: int) -> Iterator[list[int]]:
    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(count)]
    try:
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def walk(ns: argparse.Namespace) -> None:
    print(f"\nwalk: Sessions.binding_for, in-process ({ns.runs} bindings each)")
    grant = make_grant(["bench/*"], "use", 3600)
    for depth in map(int, ns.depth.split(",")):
        with chain(depth) as pids:
            tree = Sessions()
            tree.add(pids[0], Binding(grant=grant))
            leaf = pids[-1]
            assert tree.binding_for(leaf).grant is not None
            p50, p99 = percentiles(timed(lambda: tree.binding_for(leaf), ns.runs))  # noqa: B023
            row(f"peer {len(pids) - 1} levels under its session root", ms(p50),
                f"p99 {ms(p99).strip()}; {p50 / BUDGET:.2f}x the 1 ms budget")
    with unrelated(ns.unrelated) as others:
        sessions = Sessions()
        sessions.add(others[0], Binding(grant=grant))
        depth = _depth(os.getpid())
        assert sessions.binding_for(os.getpid()).grant is None
        p50, p99 = percentiles(timed(lambda: sessions.binding_for(os.getpid()), ns.runs))
        row(f"peer in no session, {ns.unrelated} unrelated processes", ms(p50),
            f"p99 {ms(p99).strip()}; {depth} ancestors, none older than the root read; "
            f"{p50 / BUDGET:.2f}x the budget")
    p50, _ = percentiles(timed(lambda: Sessions().binding_for(os.getpid()), ns.runs))
    row("no session registered (nothing is read)", ms(p50))


def _depth(pid: int) -> int:
    n = 0
    while pid > 1:
        pid = parent_and_start(pid)[0]
        n += 1
    return n


# ---------------------------------------------------------------- get

@contextlib.contextmanager
def agent(root: str, name: str, checkout: str | None = None) -> Iterator[dict[str, str]]:
    env = bench_env(root, name)
    if checkout:
        env["PYTHONPATH"] = checkout
    proc = start_agent(env, os.path.join(root, f"{name}.log"))
    try:
        with Client(env["CREDD_SOCK"]) as c:
            c.init(PASSPHRASE, **FAST_KDF)
            c.unlock(PASSPHRASE)
            c.set("bench/token", value="x" * 32)
        yield env
    finally:
        stop(proc)


@contextlib.contextmanager
def sessions_held(env: dict[str, str], count: int) -> Iterator[None]:
    """`count` processes, each the root of a session of its own (not ours)."""
    with Client(env["CREDD_SOCK"]) as c:
        grant = c.grant_create(["bench/*"], "use", ttl=3600).id
    procs = []
    try:
        for _ in range(count):
            proc = subprocess.Popen([sys.executable, "-c", HOLD_SESSION, grant], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
            procs.append(proc)
        yield
    finally:
        for proc in procs:
            proc.kill()  # unclosed: the agent locks, which is fine once measured
            proc.wait()


def interleaved(tasks: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """p50 of each task, measured in turns (one run of each, `runs` times over, the order
    rotating), so that the shared machine's drift falls on every task alike."""
    samples: dict[str, list[float]] = {label: [] for label in tasks}
    order = list(tasks)
    for task in tasks.values():
        task()  # warm up
    for n in range(runs):
        for label in order[n % len(order):] + order[:n % len(order)]:  # no task always first
            samples[label] += timed(tasks[label], 1)
    return {label: statistics.median(values) for label, values in samples.items()}


def first_request(env: dict[str, str]) -> Callable[[], object]:
    def once() -> object:
        with Client(env["CREDD_SOCK"]) as c:
            return c.get("bench/token")
    return once


def process_get(env: dict[str, str]) -> Callable[[], object]:
    """`credd get` as a process (the installed launcher: python -IS)."""
    credd = os.path.join(os.path.dirname(sys.executable), "credd")
    argv = [credd] if os.path.exists(credd) else [sys.executable, "-m", "credd"]
    cmd = [*argv, "get", "bench/token"]
    return lambda: subprocess.run(cmd, env=env, capture_output=True, check=True)


def get(ns: argparse.Namespace) -> None:
    print(f"\nget: a connection's first request, p50 of {ns.runs} taken in turns (credd get "
          f"processes: {ns.process_runs})")
    with tempfile.TemporaryDirectory(prefix="credd-grants-bench-") as root, \
            contextlib.ExitStack() as stack:
        envs = {}
        if ns.baseline:
            envs["baseline"] = stack.enter_context(agent(root, "baseline", ns.baseline))
        envs["none"] = stack.enter_context(agent(root, "none"))
        envs["held"] = stack.enter_context(agent(root, "held"))
        stack.enter_context(sessions_held(envs["held"], ns.sessions))
        conn = interleaved({k: first_request(env) for k, env in envs.items()}, ns.runs)
        proc = interleaved({k: process_get(env) for k, env in envs.items()}, ns.process_runs)
    labels = {"baseline": "baseline agent (before grants)",
              "none": "this agent, no session registered",
              "held": f"this agent, {ns.sessions} sessions (the walk runs)"}
    ref = "baseline" if ns.baseline else "none"
    for key, label in labels.items():
        if key in conn:
            row(label, ms(conn[key]), f"{conn[key] / conn[ref]:.2f}x; credd get "
                                      f"{ms(proc[key]).strip()} ({proc[key] / proc[ref]:.2f}x)")
    row("binding's cost with sessions registered", f"{(conn['held'] - conn['none']) * 1e3:.3f} ms",
        "first request, against the 1 ms budget")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", default="10,50,100", help="session tree depths, e.g. 10,100")
    parser.add_argument("--unrelated", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--process-runs", type=int, default=30)
    parser.add_argument("--baseline", metavar="DIR",
                        help="a checkout to run the 'before' agent from (e.g. /work/main)")
    parser.add_argument("--sections", default="walk,get")
    ns = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("grants_bench: sessions need Linux; nothing to measure")
        return 0
    sections = ns.sections.split(",")
    if "walk" in sections:
        walk(ns)
    if "get" in sections:
        get(ns)
    print("\nGoal: binding adds at most 1 ms to a connection's first request; an unbound "
          "`credd get` does not regress.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
