"""Benchmarks for secrets-into-programs, against a real agent in a throwaway vault.

1. `credd run` with 50 references (counted: one get_many round trip per run,
   from the audit log) beside a plain `env VAR=... true`.
2. Masking throughput on text with 1,000 and 10,000 stored secrets (the vault
   holds exactly those), each masked in every encoded form (credd.forms: the
   text holds some as base64 and hex too): the `Masker` alone, `credd redact FILE` end to end
   (a new process: start, fetching every secret from the agent, computing
   the encoded forms, compiling, reading, masking and writing the file),
   and `credd run -- cat FILE` with every secret injected, beside
   `grep -F -f` and `rg -F -f` given the same secrets (search only: they
   print matching lines and conceal nothing). `credd redact` of a one-line
   file is the fixed cost alone. End-to-end figures are the median of
   --mask-runs runs; the goal line says whether both credd commands beat
   both tools and reach GOAL_MBS.

    .venv/bin/python bench/scripting_bench.py [--mb 100] [--runs 10] [--mask-runs 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from credd.client import Client
from credd.forms import form_patterns
from credd.mask import Masker
from credd.protocol import Field

PASSPHRASE = "bench passphrase, not a secret"
FAST_KDF = {"kdf_memory_kib": 19 * 1024, "kdf_iterations": 2, "kdf_lanes": 1}
FIELDS_PER_ENTRY = 100
GOAL_MBS = 100.0
ALPHABET = string.ascii_letters + string.digits + "-_"


def isolated_env(root: Path) -> dict[str, str]:
    runtime = Path(tempfile.mkdtemp(prefix="crb", dir="/tmp"))
    env = dict(os.environ)
    env.update({
        "HOME": str(root), "XDG_RUNTIME_DIR": str(runtime),
        "CREDD_SOCK": str(runtime / "credd" / "agent.sock"),
        "CREDD_VAULT": str(root / "data" / "vault.db"),
        "CREDD_STATE_DIR": str(root / "state"),
        "PYTHONPATH": str(REPO), "NO_COLOR": "1",
    })
    return env


def start_agent(env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "credd", "serve"], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(env["CREDD_SOCK"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"agent did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def random_secret(rng: random.Random) -> str:
    return "".join(rng.choices(ALPHABET, k=rng.randint(16, 40)))


def store_secrets(c: Client, n: int, rng: random.Random, prefix: str) -> list[str]:
    """n secret values as fields of n/100 entries (one write per entry)."""
    values = []
    for e in range(0, n, FIELDS_PER_ENTRY):
        fields = [Field(name=f"f{i}", value=random_secret(rng))
                  for i in range(min(FIELDS_PER_ENTRY, n - e))]
        c.set(f"{prefix}/{e // FIELDS_PER_ENTRY:04d}", fields=fields)
        values += [f.value for f in fields]
    return values


def make_text(path: Path, megabytes: int, secrets: list[str], rng: random.Random) -> None:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10)))
             for _ in range(5000)]
    target = megabytes * 1_000_000
    with open(path, "w") as f:
        written = 0
        while written < target:
            lines = []
            for _ in range(2000):
                ws = rng.choices(words, k=10)
                if rng.random() < 0.002:  # a leaked value: mostly as it is, else encoded
                    value = rng.choice(secrets).encode()
                    ws.append(rng.choice([value, value, base64.b64encode(value),
                                          value.hex().encode()]).decode())
                lines.append(f"2026-11-23T00:00:00Z INFO {' '.join(ws)} "
                             f"{rng.getrandbits(64):016x}\n")
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)


def timed_median(cmd: list[str], env: dict[str, str], out: Path, runs: int) -> float:
    """Median wall time of `runs` runs, output written to `out` (not /dev/null: see grep)."""
    times = []
    for _ in range(runs):
        with open(out, "wb") as sink:
            times.append(timed(cmd, env, stdout=sink))
    return statistics.median(times)


def clear_vault(c: Client) -> None:
    """Delete and purge every entry, so the next round's vault holds just its own secrets."""
    for m in c.list():
        c.delete(m.name)
    for m in c.trash():
        c.purge(m.name)


def timed(cmd: list[str], env: dict[str, str], stdout=subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if r.returncode not in (0, 1):  # grep/rg exit 1 when nothing matched
        raise SystemExit(f"{cmd[:4]} failed ({r.returncode}): {r.stderr.decode()[:300]}")
    return elapsed


def get_many_requests(c: Client) -> int:
    """Audit lines are one per entry name; the lines of one request share time and pid."""
    return len({(a.time, a.pid) for a in c.audit(limit=10_000) if a.op == "get_many"})


def bench_run(env: dict[str, str], c: Client, root: Path, runs: int) -> None:
    rng = random.Random(1)
    values = [random_secret(rng) for _ in range(50)]
    for i, value in enumerate(values):
        c.set(f"bench/run/{i:02d}", value=value)
    env_file = root / "fifty.env"
    env_file.write_text("".join(f"V{i}=credd://bench/run/{i:02d}\n" for i in range(50)))
    plain = [f"V{i}={value}" for i, value in enumerate(values)]
    before = get_many_requests(c)
    credd_times = [timed([sys.executable, "-m", "credd", "run", "--env-file", str(env_file),
                          "--", "true"], env) for _ in range(runs)]
    after = get_many_requests(c)
    env_times = [timed(["env", *plain, "true"], env) for _ in range(runs)]
    py_times = [timed([sys.executable, "-c", "pass"], env) for _ in range(runs)]
    print(f"\n## credd run with 50 references ({runs} runs, median)")
    print(f"credd run --env-file (50 refs) -- true : {statistics.median(credd_times)*1000:7.1f} ms"
          f"   get_many round trips per run: {(after - before) / runs:g}")
    print(f"env VAR=... (50 vars) true            : {statistics.median(env_times)*1000:7.1f} ms")
    print(f"python -c pass (interpreter floor)     : {statistics.median(py_times)*1000:7.1f} ms")


def bench_masking(env: dict[str, str], c: Client, root: Path, megabytes: int, n: int,
                  runs: int) -> dict[str, float]:
    clear_vault(c)
    rng = random.Random(n)
    secrets = store_secrets(c, n, rng, f"bench/s{n}")
    stored = sum(len(m.secret_fields) + m.has_value for m in c.list())
    text = root / f"text{n}.log"
    make_text(text, megabytes, secrets, rng)
    size = text.stat().st_size / 1e6
    patterns = root / f"patterns{n}.txt"
    patterns.write_text("\n".join(secrets) + "\n")
    print(f"\n## {n:,} secrets ({stored:,} values stored), {size:.0f} MB of text "
          f"(MB/s, higher is better; end to end: median of {runs})")

    data = text.read_bytes()
    start = time.perf_counter()
    compiled = form_patterns(secrets)
    masker = Masker(compiled)
    built = time.perf_counter() - start
    start = time.perf_counter()
    out = [masker.feed(data[i:i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
    out.append(masker.flush())
    scan = time.perf_counter() - start
    del data, out
    print(f"Masker alone (1 MiB chunks)            : {size / scan:8.1f}   "
          f"(+{built:.2f} s to build for {n:,} secrets, {len(compiled.values):,} patterns)")
    results = {}

    one_line = root / "one-line.log"
    one_line.write_text("one line: start, fetch, compile, nothing else\n")
    t = timed_median([sys.executable, "-m", "credd", "redact", str(one_line)], env,
                     root / "one-line.out", runs)
    print(f"credd redact ONE-LINE-FILE (fixed cost):           ({t:.2f} s)")
    t = timed_median([sys.executable, "-m", "credd", "redact", str(text)], env,
                     root / "redacted.log", runs)
    results["credd redact FILE"] = size / t
    print(f"credd redact FILE (end to end)         : {size / t:8.1f}   ({t:.2f} s)")
    redacted = (root / "redacted.log").read_bytes().count(b"<concealed by credd>")

    env_file = root / f"all{n}.env"
    entries = sorted(set(range(0, n, FIELDS_PER_ENTRY)))
    env_file.write_text("".join(
        f"S{e}_{i}=credd://bench/s{n}/{e // FIELDS_PER_ENTRY:04d}/f{i}\n"
        for e in entries for i in range(min(FIELDS_PER_ENTRY, n - e))))
    t = timed_median([sys.executable, "-m", "credd", "run", "--env-file", str(env_file), "--",
                      "cat", str(text)], env, root / "masked.log", runs)
    results["credd run -- cat FILE"] = size / t
    print(f"credd run -- cat FILE (masked pipe)    : {size / t:8.1f}   ({t:.2f} s)")
    concealed = (root / "masked.log").read_bytes().count(b"<concealed by credd>")
    print(f"  (markers: {concealed:,} in run output, {redacted:,} in redact output)")

    for tool in ("grep", "rg"):
        exe = shutil.which(tool)
        if exe is None:
            hint = " (apt-get install ripgrep)" if tool == "rg" else ""
            print(f"{tool} -F -f (search only)               :  skipped "
                  f"({tool} not installed{hint})")
            continue
        # to a file: GNU grep stops at the first match when its output is /dev/null
        t = timed_median([exe, "-F", "-f", str(patterns), str(text)], env,
                         root / f"{tool}.out", runs)
        results[f"{tool} -F -f"] = size / t
        print(f"{tool + ' -F -f':<8} (search only)             : {size / t:8.1f}   ({t:.2f} s)")
    return results


def verdict(n: int, results: dict[str, float]) -> str:
    ours = {k: v for k, v in results.items() if k.startswith("credd")}
    peers = {k: v for k, v in results.items() if not k.startswith("credd")}
    slowest = min(ours.values())
    fastest_peer = max(peers.values(), default=0.0)
    met = slowest >= GOAL_MBS and slowest > fastest_peer
    peer_text = ", ".join(f"{k} {v:.0f}" for k, v in peers.items()) or "no peers installed"
    return (f"{n:>6,} secrets: credd {' / '.join(f'{v:.0f}' for v in ours.values())} MB/s "
            f"(redact / run) vs {peer_text}: {'met' if met else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="size of the text, in MB")
    ap.add_argument("--runs", type=int, default=10, help="runs of the `credd run` benchmark")
    ap.add_argument("--mask-runs", type=int, default=3,
                    help="runs of each end-to-end masking measurement (median)")
    ap.add_argument("--secrets", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    with bench_agent("credd-bench-") as (env, c, root):
        bench_run(env, c, root, args.runs)
        verdicts = [verdict(n, bench_masking(env, c, root, args.mb, n, args.mask_runs))
                    for n in args.secrets]
    print(f"\n## Goal: `credd redact` and `credd run` masking faster than grep -F -f and "
          f"rg -F -f, and at least {GOAL_MBS:.0f} MB/s, end to end")
    for line in verdicts:
        print(line)


@contextmanager
def bench_agent(prefix: str) -> Iterator[tuple[dict[str, str], Client, Path]]:
    """A real agent on a new, unlocked vault in a throwaway directory: (its environment,
    a client, the directory); all removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    env = isolated_env(root)
    os.environ.update({k: env[k] for k in ("CREDD_SOCK", "CREDD_VAULT", "CREDD_STATE_DIR")})
    agent = start_agent(env, root / "agent.log")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {os.cpu_count()} CPUs, load average {load:.2f} at start")
    try:
        with Client(env["CREDD_SOCK"]) as c:
            c.init(PASSPHRASE, **FAST_KDF)
            c.unlock(PASSPHRASE)
            yield env, c, root
    finally:
        agent.terminate()
        agent.wait(10)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(os.path.dirname(os.path.dirname(env["CREDD_SOCK"])), ignore_errors=True)


if __name__ == "__main__":
    main()
