"""Vault at 100,000 entries: unlock, list, get, put+commit, size, peak RSS.

Run by `make bench` (not by the tests). Prints one table with each figure
next to its target from issue 2. `--entries N` for a quicker look.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from credd.vault import KdfParams, Vault  # noqa: E402
from credd.vault.model import MetaRecord, SecretRecord  # noqa: E402

PASSPHRASE = "bench passphrase"
KEY = b"k" * 32


def _name(i: int) -> str:
    return f"team{i % 50}/service-{i}/api-key"


def build(path: str, n: int) -> Vault:
    """Create the vault with the shipped KDF and fill it in large transactions."""
    vault, _ = Vault.create(path, PASSPHRASE, kdf=KdfParams())
    vault.add_key_slot(KEY)
    now = time.time()
    for start in range(0, n, 5000):
        # Bulk load through the vault's own write path, 5,000 rows per commit.
        with vault._writing() as (conn, keys, txn):
            for i in range(start, min(n, start + 5000)):
                name = _name(i)
                meta = MetaRecord(name=name, kind="api_key", service=f"svc{i % 300}",
                                  tags=["prod"], has_value=True, created=now, updated=now)
                vault._write_row(conn, keys, txn, keys.row_id(name), meta,
                                 SecretRecord(value=f"sk-{i:08d}-" + "x" * 32), None)
    vault.close()
    return Vault.open(path)


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args([a for a in sys.argv[1:] if a.startswith("--entries")] or [])
    n = args.entries
    work = tempfile.mkdtemp(prefix="credd-bench-")
    path = os.path.join(work, "vault", "vault.db")
    try:
        t_build = _timed(build, path, n)
        vault = Vault.open(path)
        rows = []
        t_kdf = _timed(vault.unlock, PASSPHRASE)
        vault.lock()
        t_nokdf, c_nokdf = _timed2(vault.unlock, key=KEY)
        t_list_first, c_list_first = _timed2(vault.list)
        t_list = _timed(vault.list)
        rng = random.Random(7)
        gets = [_timed(vault.get, _name(rng.randrange(n))) for _ in range(5000)]
        puts = [_timed(vault.put, _name(rng.randrange(n)), value="rotated-" + "y" * 32,
                       merge=True) for _ in range(1000)]
        vault.close()
        size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows = [
            ("build (bulk, 5k/commit)", f"{t_build:.1f} s", ""),
            ("unlock with KDF (64 MiB/t=3/p=4)", f"{t_kdf * 1000:.0f} ms", ""),
            ("unlock without KDF (key slot)", f"{t_nokdf * 1000:.0f} ms", "≤ 500 ms"),
            ("  same, CPU time", f"{c_nokdf * 1000:.0f} ms", ""),
            ("list all metadata (first, sorts)", f"{t_list_first * 1000:.0f} ms", "≤ 500 ms"),
            ("  same, CPU time", f"{c_list_first * 1000:.0f} ms", ""),
            ("list all metadata (cached)", f"{t_list * 1000:.1f} ms", ""),
            ("get p50", f"{_pct(gets, 50) * 1e6:.0f} µs", "≤ 100 µs"),
            ("get p99", f"{_pct(gets, 99) * 1e6:.0f} µs", ""),
            ("put+commit p50 (sync=FULL)", f"{_pct(puts, 50) * 1000:.2f} ms", "≤ 2 ms"),
            ("put+commit p99", f"{_pct(puts, 99) * 1000:.2f} ms", ""),
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
