"""Mounts beside the local vault, in one agent: listing 10,000 mounted entries, and gets.

    ls          `list` of N local entries, of a files mount of N files and of an env mount
                of N variables (each alone, by prefix), and of everything merged
    get         in-process Client.get p50 of a local entry, a file and a variable,
                interleaved; the ratios to the local get

The files mount is listed once after it is added (the scan) and then again
(the cached listing, revalidated by one stat per directory). `--entries N`
(default 10,000). Run by `make bench`; measures, never asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from client_bench import bench_env, latencies, ms, pct, row, start_agent, stop, timed

from credd.client import Client


def mount(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "credd", "mount", "add", *args], env=env, check=True,
                   capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=3000, help="gets per kind")
    args, _ = parser.parse_known_args()
    n = args.entries
    root = tempfile.mkdtemp(prefix="mb", dir="/tmp")  # short: sun_path
    os.chmod(root, 0o700)
    try:
        run(root, n, args.calls)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def run(root: str, n: int, calls: int) -> None:
    import vault_bench
    env = bench_env(root, "m")
    env["XDG_CONFIG_HOME"] = os.path.join(root, "config")
    secrets = os.path.join(root, "secrets")
    os.makedirs(secrets, mode=0o700)
    for i in range(n):
        with open(os.path.join(secrets, f"file-{i:05d}"), "w") as f:
            f.write(f"v-{i}-" + "x" * 32)
    env.update({f"BENCH_CRED_K{i:05d}": f"v-{i}-" + "x" * 32 for i in range(n)})
    os.makedirs(os.path.dirname(env["CREDD_VAULT"]), mode=0o700)
    os.environ["CREDD_STATE_DIR"] = env["CREDD_STATE_DIR"]
    vault_bench.build(env["CREDD_VAULT"], n, env["CREDD_STATE_DIR"])
    agent = start_agent(env, os.path.join(root, "agent.log"))
    try:
        with Client(env["CREDD_SOCK"], timeout=None) as c:
            c.unlock(key=vault_bench.KEY, idle_timeout=3600)
            c.set("bench", value="x" * 32)
            print(f"\nls with {n:,} entries in each store (median of 5)")
            local, _ = timed(c.list, repeat=5)
            row(f"local vault ({n:,})", ms(local))
            mount(env, "run", "--backend", "files", "--dir", secrets)
            scan, _ = timed(lambda: c.list(prefix="run/"), repeat=1)
            row("files mount, first (scan)", ms(scan), f"{scan / local:.2f}x local")
            cached, found = timed(lambda: c.list(prefix="run/"), repeat=5)
            row(f"files mount ({len(found):,})", ms(cached), f"{cached / local:.2f}x local")
            mount(env, "platform", "--backend", "env", "--env-prefix", "BENCH_CRED_")
            listed, found = timed(lambda: c.list(prefix="platform/"), repeat=5)
            row(f"env mount ({len(found):,})", ms(listed), f"{listed / local:.2f}x local")
            merged, found = timed(c.list, repeat=5)
            row(f"everything merged ({len(found):,})", ms(merged),
                f"{merged / (3 * local):.2f}x 3 local lists")
        print(f"\nin-process get, {calls} calls each, interleaved (p50, p99)")
        getters = {}
        for label, name in (("local entry", "bench"), ("files entry", "run/file-00001"),
                            ("env entry", "platform/k00001")):
            client = Client(env["CREDD_SOCK"])
            getters[label] = lambda client=client, name=name: client.get(name)
        samples = latencies(getters, calls)
        base = pct(samples["local entry"], 50)
        for label, times in samples.items():
            row(label, f"{pct(times, 50) * 1e6:8.0f} us",
                f"p99 {pct(times, 99) * 1e6:.0f} us, {pct(times, 50) / base:.2f}x local")
    finally:
        stop(agent)


if __name__ == "__main__":
    sys.exit(main())
