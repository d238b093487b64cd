"""`run` under a `use` grant (the agent runs the command) against `credd run` as the owner
runs it (values fetched, the command started here), end to end, in a throwaway vault.

1. `credd run --env X=credd://... -- true`: the owner's local run, the owner's
   `--via-agent`, and the same command in a session bound to a use grant
   (through the agent): medians of --runs, and the ratios to the local run.
2. `credd run -- cat FILE` of --mb MB with one secret: the same three ways.
3. `credd run --env-file (1,000 refs) -- cat FILE` of --mb MB holding secrets
   in their encoded forms: MB/s of the bound run (the agent masks every value
   and its encodings, off its event loop) beside the owner's local run (which
   masks the same forms, credd.forms): medians of --mask-runs.

The bound runs are children of this process, which opens the session on the
grant (`session_open`: the peer of its own connection becomes the root).

    .venv/bin/python bench/run_bench.py [--mb 100] [--runs 20] [--mask-runs 3]
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from scripting_bench import bench_agent, make_text, store_secrets

from credd.client import Client

CREDD = [sys.executable, "-m", "credd", "run"]
GOAL_RATIO = 1.3
GOAL_MBS = 100.0


def timed(cmd: list[str], env: dict[str, str], out: Path) -> float:
    with open(out, "wb") as sink:
        start = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=sink, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(f"{cmd[:6]} failed ({r.returncode}): {r.stderr.decode()[-300:]}")
    return elapsed


def medians(ways: dict[str, list[str]], env: dict[str, str], out: Path, runs: int,
            bound: tuple[Client, str]) -> dict[str, float]:
    """Median seconds of each way, interleaved run by run (a loaded machine drifts); the
    `bound` ways run inside a session this process opens on the grant."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    client, grant = bound
    for _ in range(runs):
        for name, cmd in ways.items():
            if name.startswith("bound"):
                session = client.session_open(grant).session
                try:
                    times[name].append(timed(cmd, env, out))
                finally:
                    client.session_close(session)
            else:
                times[name].append(timed(cmd, env, out))
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, results: dict[str, float], base: str, *, size: float = 0.0) -> None:
    print(f"\n## {title}")
    for name, t in results.items():
        rate = f"   {size / t:7.1f} MB/s" if size else ""
        print(f"{name:<34}: {t * 1000:8.1f} ms   x{t / results[base]:.2f}{rate}")


def bench_latency(env: dict[str, str], c: Client, root: Path, runs: int, grant: str,
                  mb: int) -> list[str]:
    c.set("bench/one", value="run-bench-secret-" + "q7" * 10)
    ways = {"owner: credd run (local)": [*CREDD, "--env", "X=credd://bench/one", "--", "true"],
            "owner: credd run --via-agent": [*CREDD, "--via-agent", "--env",
                                             "X=credd://bench/one", "--", "true"],
            "bound: credd run (use grant)": [*CREDD, "--env", "X=credd://bench/one", "--",
                                             "true"]}
    true = medians(ways, env, root / "true.out", runs, (c, grant))
    report(f"credd run -- true ({runs} runs, median)", true, "owner: credd run (local)")
    big = root / "big.bin"
    with open(big, "wb") as f:
        chunk = (b"0123456789abcdef" * 4096 + b"\n") * 16
        for _ in range(mb * 1_000_000 // len(chunk) + 1):
            f.write(chunk)
    size = big.stat().st_size / 1e6
    cat = {name: [*cmd[:-1], "cat", str(big)] for name, cmd in ways.items()}
    cat_runs = max(3, runs // 4)
    piped = medians(cat, env, root / "cat.out", cat_runs, (c, grant))
    report(f"credd run -- cat {size:.0f} MB ({cat_runs} runs, median)", piped,
           "owner: credd run (local)", size=size)
    big.unlink()
    return [f"true: bound / local x{_ratio(true):.2f}",
            f"cat {size:.0f} MB: bound / local x{_ratio(piped):.2f}"]


def _ratio(results: dict[str, float]) -> float:
    return results["bound: credd run (use grant)"] / results["owner: credd run (local)"]


def plant_encoded(text: Path, secrets: list[str], rng: random.Random) -> None:
    """Append lines holding secrets in encoded forms (base64, base64url) beside make_text's."""
    with open(text, "a") as f:
        for value in rng.sample(secrets, min(200, len(secrets))):
            raw = value.encode()
            f.write(f"b64 {base64.b64encode(raw).decode()} url64 "
                    f"{base64.urlsafe_b64encode(raw).decode()} plain {value}\n")


def bench_masking(env: dict[str, str], c: Client, root: Path, mb: int, runs: int,
                  grant: str, n: int = 1000) -> str:
    rng = random.Random(n)
    secrets = store_secrets(c, n, rng, "bench/many")
    text = root / "text.log"
    make_text(text, mb, secrets, rng)
    plant_encoded(text, secrets, rng)
    size = text.stat().st_size / 1e6
    env_file = root / "many.env"
    env_file.write_text("".join(f"S{e}_{i}=credd://bench/many/{e // 100:04d}/f{i}\n"
                                for e in range(0, n, 100) for i in range(min(100, n - e))))
    ways = {"owner: credd run (local)": [*CREDD, "--env-file", str(env_file), "--", "cat",
                                         str(text)],
            "bound: credd run (use grant)": [*CREDD, "--env-file", str(env_file), "--", "cat",
                                             str(text)]}
    results = medians(ways, env, root / "masked.out", runs, (c, grant))
    report(f"credd run -- cat {size:.0f} MB with {n:,} secrets ({runs} runs, median)", results,
           "owner: credd run (local)", size=size)
    masked = (root / "masked.out").read_bytes()
    leaked = sum(value.encode() in masked for value in secrets)
    print(f"  (bound output: {masked.count(b'<concealed by credd>'):,} markers, "
          f"{leaked} values left in clear)")
    rate = size / results["bound: credd run (use grant)"]
    return f"{n:,} secrets, {size:.0f} MB: bound {rate:.0f} MB/s (goal {GOAL_MBS:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="size of the output, in MB")
    ap.add_argument("--runs", type=int, default=20, help="runs of `credd run -- true`")
    ap.add_argument("--mask-runs", type=int, default=3, help="runs of the masking bench")
    ap.add_argument("--secrets", type=int, default=1000)
    args = ap.parse_args()
    with bench_agent("credd-run-bench-") as (env, c, root):
        grant = c.grant_create(["bench/*"], "use", ttl=3600).id
        lines = bench_latency(env, c, root, args.runs, grant, args.mb)
        lines.append(bench_masking(env, c, root, args.mb, args.mask_runs, grant, args.secrets))
    print(f"\n## Goals: bound <= x{GOAL_RATIO} of the local run; masking >= {GOAL_MBS:.0f} MB/s")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
