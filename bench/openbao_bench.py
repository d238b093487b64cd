"""The openbao mount beside the local vault, in one run, against a real `bao server -dev`.

    get, local vault              Client.get of a local entry (the floor)
    get, mount, cached            Client.get of a mounted entry read before, within revalidate
    get, mount, revalidated       the same with revalidate ~0: one metadata request per get
    get, mount, uncached          the first Client.get of each mounted entry: one data read
    hvac read, bare               hvac's read_secret_version of the same secrets, in-process
    ls of the mount               Client.list of N mounted entries: first (LIST) and cached
    migrate                       `credd migrate` of M entries openbao -> local, then local ->
                                  openbao, then again (all already there), beside bare hvac
                                  loops reading / writing the same M secrets in-process

Targets (issue 15): cached get ≤ 1.5x a local get; uncached get ≤ 1.5x a bare hvac
read. Interleaved blocks, medians (the machine is shared). `--entries N` sizes the ls,
`--migrate M` the migration (default 10,000).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from client_bench import bench_env, latencies, ms, row, start_agent, stop

from credd.client import Client
from credd.daemon.mounts.config import MountConfig, add
from tests.mounts.bao import ROOT_TOKEN, BaoServer

PASSPHRASE = "bench passphrase"
KDF = {"kdf_memory_kib": 19 * 1024, "kdf_iterations": 2, "kdf_lanes": 1}


def fill(server: BaoServer, folder: str, n: int) -> None:
    """n secrets under `folder`, written by 8 threads (setup, not measured)."""
    clients = [server.client() for _ in range(8)]

    def write(i: int) -> None:
        clients[i % 8].secrets.kv.v2.create_or_update_secret(
            f"{folder}s{i:06d}", {"value": f"v-{i}"}, mount_point="secret")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(n)))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000, help="entries in the ls mount")
    parser.add_argument("--calls", type=int, default=2000, help="gets per kind")
    parser.add_argument("--migrate", type=int, default=10_000, help="entries to migrate")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cob")
    server = BaoServer(Path(root) / "bao").start()
    env = bench_env(root, "agent")
    env["CREDD_CONFIG"] = config = os.path.join(root, "config", "config.toml")
    agent = start_agent(env, os.path.join(root, "agent.log"))
    try:
        return run(args, server, env, config)
    finally:
        stop(agent)
        server.stop()


def run(args: argparse.Namespace, server: BaoServer, env: dict, config: str) -> int:
    calls, uncached = args.calls, max(50, args.calls // 4)
    kv = server.client().secrets.kv.v2
    kv.create_or_update_secret("hot/db", {"value": "x" * 40}, mount_point="secret")
    fill(server, "cold/", uncached * 2 + 250)  # latencies() warms up with 200
    fill(server, "big/", args.entries)
    for name, prefix, revalidate in (("hot", "hot/", 3600.0), ("warm", "hot/", 1e-6),
                                     ("cold", "cold/", 3600.0), ("big", "big/", 3600.0)):
        add(config, MountConfig(name=name, backend="openbao", url=server.url, prefix=prefix,
                                token="credd://openbao/token", revalidate=revalidate))
    client = Client(env["CREDD_SOCK"])
    client.init(PASSPHRASE, **KDF)
    client.unlock(PASSPHRASE)
    client.set("openbao/token", value=ROOT_TOKEN)
    client.set("local/db", value="x" * 40)
    bare = server.client().secrets.kv.v2
    cold = iter(range(uncached * 2 + 250))

    def cold_get() -> None:
        client.get(f"cold/s{next(cold):06d}")

    def bare_read() -> None:
        bare.read_secret_version("hot/db", mount_point="secret", raise_on_deleted_version=True)

    print(f"openbao mount beside the local vault ({calls} calls each, median)")
    samples = latencies({"local": lambda: client.get("local/db"),
                         "cached": lambda: client.get("hot/db"),
                         "warm": lambda: client.get("warm/db"),
                         "bare": bare_read}, calls)
    cold_samples = latencies({"cold": cold_get, "bare": bare_read}, uncached * 2, block=50)
    local, cached = median_ms(samples["local"]), median_ms(samples["cached"])
    hvac_ms, cold_ms = median_ms(cold_samples["bare"]), median_ms(cold_samples["cold"])
    row("get, local vault", ms(local / 1000))
    row("get, mount, cached", ms(cached / 1000), f"{cached / local:.2f}x local (goal ≤ 1.5x)")
    row("get, mount, revalidated (1 metadata read)", ms(median_ms(samples["warm"]) / 1000),
        f"{median_ms(samples['warm']) / median_ms(samples['bare']):.2f}x bare hvac read")
    row("hvac read, bare (in-process)", ms(hvac_ms / 1000))
    row("get, mount, uncached (1 data read)", ms(cold_ms / 1000),
        f"{cold_ms / hvac_ms:.2f}x bare hvac read (goal ≤ 1.5x)")
    start = time.perf_counter()
    listed = client.list(prefix="big/")
    first = time.perf_counter() - start
    start = time.perf_counter()
    client.list(prefix="big/")
    again = time.perf_counter() - start
    assert len(listed) == args.entries, (len(listed), args.entries)
    row(f"ls of a mount with {args.entries:,} entries, first", ms(first))
    row(f"ls of a mount with {args.entries:,} entries, cached", ms(again))
    client.close()
    migrate_section(server, env, config, args.migrate)
    return 0


def migrate_section(server: BaoServer, env: dict, config: str, n: int) -> None:
    """`credd migrate` of n entries both ways, each right after the bare hvac loop it is
    compared with (the machine is shared: neighbours in time see the same load). The bare
    write loop runs twice: the data alone, and the data and custom metadata, the two
    requests credd makes to keep an entry's kind, tags and dates."""
    fill(server, "seed/", n)
    for name, prefix in (("seed", "seed/"), ("out", "out/")):
        add(config, MountConfig(name=name, backend="openbao", url=server.url, prefix=prefix,
                                token="credd://openbao/token"))
    kv = server.client().secrets.kv.v2
    custom = {"credd.created": repr(time.time())}

    def bare_read(i: int) -> None:
        kv.read_secret_version(f"seed/s{i:06d}", mount_point="secret",
                               raise_on_deleted_version=True)

    def bare_write(i: int) -> None:
        kv.create_or_update_secret(f"bare/s{i:06d}", {"value": f"v-{i}"}, cas=0,
                                   mount_point="secret")

    def bare_write_meta(i: int) -> None:
        kv.create_or_update_secret(f"bare2/s{i:06d}", {"value": f"v-{i}"}, cas=0,
                                   mount_point="secret")
        kv.update_metadata(f"bare2/s{i:06d}", custom_metadata=custom, mount_point="secret")

    reads = loop(bare_read, n)
    inward = migrate(env, "seed/", "mig/", n)
    writes_meta = loop(bare_write_meta, n)
    outward = migrate(env, "mig/", "out/", n)
    writes = loop(bare_write, n)
    rerun = migrate(env, "mig/", "out/", n, key="already_there")
    print(f"migrate {n:,} entries (`credd migrate`, one process, wall time)")
    row("hvac read loop, bare", f"{reads:8.2f} s ")
    row("migrate openbao -> local", f"{inward:8.2f} s ",
        f"{inward / reads:.2f}x the bare read loop")
    row("hvac write loop, bare (data + metadata)", f"{writes_meta:8.2f} s ")
    row("hvac write loop, bare (data)", f"{writes:8.2f} s ")
    row("migrate local -> openbao", f"{outward:8.2f} s ",
        f"{outward / writes_meta:.2f}x data + metadata, {outward / writes:.2f}x data alone")
    row("migrate local -> openbao again (all there)", f"{rerun:8.2f} s ",
        f"{rerun / reads:.2f}x the bare read loop")


def migrate(env: dict, src: str, dst: str, n: int, key: str = "copied") -> float:
    """Seconds `credd migrate SRC DST` takes; checks that it did what it should."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "credd", "migrate", src, dst, "--json"],
                          env=env, capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout)[key]) == n, done.stdout[-2000:]
    return took


def loop(call, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        call(i)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
