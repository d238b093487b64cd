"""Vault at 100,000 entries: unlock, list, get, put+commit, size, peak RSS.

Unlock and the first list are measured both ways: from the sealed metadata
snapshot (what follows a lock) and row by row (what follows a crash, a write
by another process or a rekey), see docs/vault.md.

Run by `make bench` (not by the tests). Prints one table with each figure
next to its target from issue 2. `--entries N` for a quicker look. Like the
agent it keeps a rollback counter (state dir), so a put includes that write;
the machine is shared, so CPU time is printed next to wall time and unlock
and first list are the median of three rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from credd.vault import KdfParams, Vault  # noqa: E402
from credd.protocol import Set  # noqa: E402

PASSPHRASE = "bench passphrase"
KEY = b"k" * 32


def _name(i: int) -> str:
    return f"team{i % 50}/service-{i}/api-key"


def build(path: str, n: int, state_dir: str) -> None:
    """Create the vault with the shipped KDF and fill it through `put_many`, 5,000 entries
    per transaction (one commit each)."""
    vault, _ = Vault.create(path, PASSPHRASE, kdf=KdfParams(), state_dir=state_dir)
    vault.add_key_slot(KEY)
    for start in range(0, n, 5000):
        vault.put_many([Set(name=_name(i), kind="api_key", service=f"svc{i % 300}", tags=["prod"],
                            value=f"sk-{i:08d}-" + "x" * 32)
                        for i in range(start, min(n, start + 5000))])
    vault.close()


def _timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def _timed2(fn, *args, **kwargs) -> tuple[float, float]:
    """(wall, CPU) seconds: on a shared machine CPU time shows the cost without the waiting."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


def _pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


def _drop_snapshot(path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DELETE FROM manifest")
    db.close()


def _unlock_and_list(vault: Vault, rounds: int, *, snapshot: bool) -> tuple[list, list]:
    """(wall, CPU) of `rounds` key-slot unlocks, each followed by a first `list`
    (row by row: the snapshot is dropped before each unlock)."""
    unlocks, lists = [], []
    for _ in range(rounds):
        vault.lock()
        if not snapshot:
            _drop_snapshot(vault.path)
        unlocks.append(_timed2(vault.unlock, key=KEY))
        assert vault.from_snapshot == snapshot
        lists.append(_timed2(vault.list))
    return unlocks, lists


def _ms(pairs: list[tuple[float, float]], which: int) -> str:
    return f"{statistics.median(p[which] for p in pairs) * 1000:.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    args, _others = parser.parse_known_args()  # run_all.py passes every bench the same argv
    n = args.entries
    work = tempfile.mkdtemp(prefix="credd-bench-")
    path = os.path.join(work, "vault", "vault.db")
    state = os.path.join(work, "state")  # the rollback counter, written per commit as in the agent
    try:
        t_build = _timed(build, path, n, state)
        vault = Vault.open(path, state_dir=state)
        rows = []
        t_kdf = _timed(vault.unlock, PASSPHRASE)
        rows_unlocks, rows_lists = _unlock_and_list(vault, 3, snapshot=False)
        unlocks, lists = _unlock_and_list(vault, 3, snapshot=True)
        t_list = _timed(vault.list)
        rng = random.Random(7)
        gets = [_timed(vault.get, _name(rng.randrange(n))) for _ in range(5000)]
        puts = [_timed2(vault.put, Set(name=_name(rng.randrange(n)), value="rotated-" + "y" * 32,
                                       merge=True)) for _ in range(1000)]
        t_seal = _timed(vault.lock)  # after writes: seals a new snapshot
        vault.close()
        size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        put_wall, put_cpu = [p[0] for p in puts], [p[1] for p in puts]
        rows = [
            ("build (bulk, 5k/commit)", f"{t_build:.1f} s", ""),
            ("unlock with KDF (64 MiB/t=3/p=4)", f"{t_kdf * 1000:.0f} ms", ""),
            ("unlock without KDF (key slot), median of 3", _ms(unlocks, 0), "≤ 500 ms"),
            ("  same, CPU time", _ms(unlocks, 1), ""),
            ("  row by row (no snapshot)", _ms(rows_unlocks, 0), "≤ 500 ms"),
            ("list all metadata (first after unlock), median", _ms(lists, 0), "≤ 500 ms"),
            ("  same, CPU time", _ms(lists, 1), ""),
            ("  after a row-by-row unlock", _ms(rows_lists, 0), "≤ 500 ms"),
            ("list all metadata (cached)", f"{t_list * 1000:.1f} ms", ""),
            ("get p50", f"{_pct(gets, 50) * 1e6:.0f} µs", "≤ 100 µs"),
            ("get p99", f"{_pct(gets, 99) * 1e6:.0f} µs", ""),
            ("put+commit p50 (sync=FULL, + counter)", f"{_pct(put_wall, 50) * 1000:.2f} ms",
             "≤ 2 ms"),
            ("  same, CPU time", f"{_pct(put_cpu, 50) * 1000:.2f} ms", ""),
            ("put+commit p99", f"{_pct(put_wall, 99) * 1000:.2f} ms", ""),
            ("lock after writes (seals the snapshot)", f"{t_seal * 1000:.0f} ms", ""),
            ("bytes per entry on disk", f"{size / n:.0f} B", "≤ 500 B"),
            ("peak RSS", f"{rss_mb:.0f} MB", "≤ 200 MB"),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"vault bench: {n:,} entries (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs)")
    width = max(len(r[0]) for r in rows)
    for label, value, target in rows:
        print(f"  {label:<{width}}  {value:>10}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
