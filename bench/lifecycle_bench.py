"""`credd due` and fingerprints at 100,000 entries (or `--entries N`), beside their floors.

An agent holding N api_key entries (vault_bench's build, one value each) is asked:

- `list` of every entry: the floor for anything that looks at every entry's metadata;
- `due` without values (`credd unlock`'s line): dates only, from metadata;
- `due` with values, cold: the first after an unlock decrypts every value once to
  fingerprint it (on a reader thread; the event loop keeps answering, shown by a `get`
  timed while it runs), beside `get_many` of every value, the floor for reading them all;
- `due` with values, warm: the digests kept while unlocked, nothing decrypted;
- `fingerprint` of one entry, beside `get` of it.

Run by `make bench`; measures, never asserts. The machine is shared: read medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from client_bench import bench_env, ms, row, start_agent, stop, timed

from credd.client import Client


def _during(work, probe, every: float = 0.05) -> tuple[float, list[float]]:
    """Run `work()`; meanwhile time `probe()` every `every` seconds on another connection."""
    samples: list[float] = []
    done = threading.Event()

    def probing() -> None:
        while not done.is_set():
            samples.append(timed(probe)[0])
            time.sleep(every)

    thread = threading.Thread(target=probing)
    thread.start()
    try:
        took, _ = timed(work)
    finally:
        done.set()
        thread.join()
    return took, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    import vault_bench
    root = tempfile.mkdtemp(prefix="credd-lifecycle-bench-")
    try:
        env = bench_env(root, "due")
        os.makedirs(os.path.dirname(env["CREDD_VAULT"]), mode=0o700)
        os.environ["CREDD_STATE_DIR"] = env["CREDD_STATE_DIR"]
        print(f"an agent with {args.entries:,} entries")
        vault_bench.build(env["CREDD_VAULT"], args.entries, env["CREDD_STATE_DIR"])
        agent = start_agent(env, os.path.join(root, "agent.log"))
        try:
            with Client(env["CREDD_SOCK"], timeout=None) as c, \
                    Client(env["CREDD_SOCK"], timeout=None) as probe:
                c.unlock(key=vault_bench.KEY)
                listed, metas = timed(c.list, repeat=3)
                row("list every entry (the metadata floor)", ms(listed))
                dates, _ = timed(lambda: c.due(values=False), repeat=3)
                row("due without values (unlock's line)", ms(dates),
                    f"{dates / listed:.2f}x list")
                name = metas[0].name
                cold, gets = _during(c.due, lambda: probe.get(name))
                row("due with values, first after unlock", ms(cold))
                if gets:
                    row("  a get meanwhile, median / max", f"{ms(statistics.median(gets))} / "
                                                            f"{ms(max(gets))}")
                refs = [f"credd://{m.name}" for m in metas]
                fetched = sum(timed(lambda r=refs[i:i + 2000]: c.get_many(r))[0]
                              for i in range(0, len(refs), 2000))
                row("get_many of every value (the decrypt floor)", ms(fetched),
                    f"cold due {cold / fetched:.2f}x")
                warm, report = timed(c.due, repeat=3)
                row("due with values, again (digests kept)", ms(warm),
                    f"{warm / listed:.2f}x list; {report.values:,} values compared")
                one, _ = timed(lambda: c.fingerprint(name), repeat=50)
                get, _ = timed(lambda: c.get(name), repeat=50)
                row("fingerprint of one entry, median of 50", ms(one), f"get {ms(get)}")
        finally:
            stop(agent)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
