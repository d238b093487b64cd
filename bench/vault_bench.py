"""Vault at 100,000 entries (or `--entries N`): unlock, list, get, writes, size, peak RSS.

Each figure is printed beside what it is measured against:
- unlock (key slot, so without the KDF) beside the read-all floor: a fresh sqlite3
  connection fetching every row's id, rev and meta (`SELECT id, rev, meta FROM
  entries`), the least an unlock that looks at every row can do; from the chunks
  (what follows a lock) and row by row (what follows a crash before a seal, or a
  migration), see docs/vault.md;
- the first write after an unlock, and after a seal (it drops one chunk), beside a
  steady-state write (the same write again: its chunk is already gone).
Unlock and the floor are measured in alternation and reported as medians with their
ranges, wall and CPU time: the machine is shared, and CPU time shows the cost without
the waiting. Like the agent it keeps a rollback counter (state dir), so a write
includes that write.

Run by `make bench` (not by the tests); `--entries 1000000` builds a million entries
(a few minutes) for the scaling figures.
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
from collections.abc import Callable

import msgspec

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from credd.protocol import Set
from credd.vault import KdfParams, Vault

PASSPHRASE = "bench passphrase"
KEY = b"k" * 32
Pair = tuple[float, float]  # (wall, CPU) seconds


def _name(i: int) -> str:
    return f"team{i % 50}/service-{i}/api-key"


def build(path: str, n: int, state_dir: str) -> None:
    """Create the vault with the shipped KDF and fill it through `put_many`, 5,000 entries
    per transaction (one commit each)."""
    vault, _ = Vault.create(path, PASSPHRASE, kdf=KdfParams(), state_dir=state_dir)
    vault.add_key_slot(KEY, proof=PASSPHRASE)
    for start in range(0, n, 5000):
        vault.put_many([Set(name=_name(i), kind="api_key", service=f"svc{i % 300}",
                            tags=["prod"], value=f"sk-{i:08d}-" + "x" * 32)
                        for i in range(start, min(n, start + 5000))])
    vault.close()


def _timed(fn: Callable[[], object]) -> Pair:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


def _floor(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute("SELECT id, rev, meta FROM entries").fetchall()
    db.close()


def _drop_manifest(path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DELETE FROM manifest")
    db.close()


def _unlocks(vault: Vault, rounds: int, *, chunks: bool) -> tuple[list[Pair], list[Pair],
                                                                 list[Pair]]:
    """(floor, unlock, first list) per round, floor and unlock in alternation; without
    `chunks` the manifest is dropped before each unlock (row by row)."""
    floors, unlocks, lists = [], [], []
    for _ in range(rounds):
        vault.lock()
        if not chunks:
            _drop_manifest(vault.path)
        floors.append(_timed(lambda: _floor(vault.path)))
        unlocks.append(_timed(lambda: vault.unlock(key=KEY)))
        assert vault.from_snapshot == chunks
        lists.append(_timed(vault.list))
    return floors, unlocks, lists


def _dirty_segment(vault: Vault, name: str) -> None:
    """Drop the chunk holding `name` by writing its neighbour in the same segment (not
    timed): a write of `name` then touches pages as cold as a first write's."""
    index = vault.session.index  # package-internal: a bench may look
    live, _trash = index.segments[index.segment_of(name)].parts()
    names = [n for n in live.names if n != name]
    if names:
        vault.put(Set(name=names[0], value="neighbour", merge=True))


def _first_writes(vault: Vault, n: int, rounds: int, rng: random.Random
                  ) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(first write after an unlock, first after a seal, a steady-state write) per round.
    Each is a merge of a random name; the first ones drop that name's chunk, the steady
    one's chunk is already gone."""
    after_unlock, after_seal, steady = [], [], []

    def timed_put(name: str) -> Pair:
        return _timed(lambda: vault.put(Set(name=name, value="rotated", merge=True)))

    def steady_put() -> Pair:
        name = _name(rng.randrange(n))
        _dirty_segment(vault, name)
        return timed_put(name)

    for _ in range(rounds):
        vault.lock()  # seals what the last round wrote
        vault.unlock(key=KEY)
        after_unlock.append(timed_put(_name(rng.randrange(n))))
        steady.append(steady_put())
        vault.seal_snapshot()
        after_seal.append(timed_put(_name(rng.randrange(n))))
        steady.append(steady_put())
    return after_unlock, after_seal, steady


def _med(pairs: list[Pair], which: int) -> float:
    return statistics.median(p[which] for p in pairs)


def _ms(pairs: list[Pair], which: int = 0) -> str:
    values = [p[which] * 1000 for p in pairs]
    return f"{statistics.median(values):.1f} ms [{min(values):.0f}–{max(values):.0f}]"


def _ratio(a: list[Pair], b: list[Pair], which: int) -> str:
    return f"{_med(a, which) / _med(b, which):.2f}×"


def _encode_all(vault: Vault) -> None:
    """What the agent does for an unfiltered list: encode the entries view (in pages)."""
    view, encode = vault.entries(), msgspec.msgpack.Encoder().encode
    for start in range(0, len(view), 4096):
        encode(view[start:start + 4096])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args, _others = parser.parse_known_args()  # run_all.py passes every bench the same argv
    n, rounds = args.entries, args.rounds
    work = tempfile.mkdtemp(prefix="credd-bench-")
    path = os.path.join(work, "vault", "vault.db")
    state = os.path.join(work, "state")  # the rollback counter, written per commit as in the agent
    rng = random.Random(7)
    try:
        t_build = _timed(lambda: build(path, n, state))
        vault = Vault.open(path, state_dir=state)
        t_kdf = _timed(lambda: vault.unlock(PASSPHRASE))
        row_floors, row_unlocks, row_lists = _unlocks(vault, max(1, rounds // 2), chunks=False)
        floors, unlocks, lists = _unlocks(vault, rounds, chunks=True)
        t_encode = _timed(lambda: _encode_all(vault))
        gets = [_timed(lambda: vault.get(_name(rng.randrange(n))))[0] for _ in range(5000)]
        after_unlock, after_seal, steady = _first_writes(vault, n, rounds, rng)
        puts = [_timed(lambda: vault.put(Set(name=_name(rng.randrange(n)), merge=True,
                                             value="rotated-" + "y" * 32)))
                for _ in range(1000)]
        t_seal = _timed(vault.lock)  # after 1,000 scattered writes: reseals their chunks
        vault.close()
        size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        put_wall = [p[0] for p in puts]
        rows = [
            ("build (put_many, 5k per commit)", f"{t_build[0]:.1f} s", ""),
            ("unlock with KDF (64 MiB/t=3/p=4)", f"{t_kdf[0] * 1000:.0f} ms", ""),
            ("read-all floor: wall", _ms(floors), "fresh connection, SELECT id, rev, meta"),
            ("  CPU", _ms(floors, 1), ""),
            ("unlock without KDF, from the chunks: wall", _ms(unlocks),
             f"{_ratio(unlocks, floors, 0)} the floor (goal ≤ 1.5×)"),
            ("  CPU", _ms(unlocks, 1), f"{_ratio(unlocks, floors, 1)} the floor"),
            ("unlock row by row (no manifest): wall", _ms(row_unlocks),
             f"{_ratio(row_unlocks, row_floors, 0)} the floor"),
            ("  CPU", _ms(row_unlocks, 1), f"{_ratio(row_unlocks, row_floors, 1)} the floor"),
            ("first list() after a chunk unlock (copies)", _ms(lists), "≤ 500 ms"),
            ("  CPU", _ms(lists, 1), ""),
            ("  after a row-by-row unlock", _ms(row_lists), "≤ 500 ms"),
            ("encode entries() (the agent's list, no copies)", f"{t_encode[0] * 1000:.0f} ms", ""),
            ("get p50", f"{_pct(gets, 50) * 1e6:.0f} µs", "≤ 100 µs"),
            ("get p99", f"{_pct(gets, 99) * 1e6:.0f} µs", ""),
            ("first write after an unlock (p50)", _ms(after_unlock),
             f"{_ratio(after_unlock, steady, 0)} steady (goal ≤ 2×)"),
            ("first write after a seal (p50)", _ms(after_seal),
             f"{_ratio(after_seal, steady, 0)} steady (goal ≤ 2×)"),
            ("steady-state write (p50)", _ms(steady), "random name, its chunk already dropped"),
            ("  CPU: first after unlock / steady", f"{_ms(after_unlock, 1)} / {_ms(steady, 1)}",
             ""),
            ("put+commit p50, 1,000 random names", f"{_pct(put_wall, 50) * 1000:.2f} ms",
             "≤ 2 ms"),
            ("put+commit p99", f"{_pct(put_wall, 99) * 1000:.2f} ms", ""),
            ("lock after them (seals their chunks)", f"{t_seal[0] * 1000:.0f} ms", ""),
            ("bytes per entry on disk", f"{size / n:.0f} B", "≤ 500 B"),
            ("peak RSS", f"{rss_mb:.0f} MB", "≤ 200 MB at 100k"),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"vault bench: {n:,} entries (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs); medians [ranges] of {rounds} rounds")
    width = max(len(r[0]) for r in rows)
    for label, value, target in rows:
        print(f"  {label:<{width}}  {value:>24}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
