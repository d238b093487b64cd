"""credtui benchmark: time to the unlocked list, and per-keystroke filter latency.

    .venv/bin/python bench/tui_bench.py            # 10,000 and 100,000 entries
    .venv/bin/python bench/tui_bench.py 10000      # one size

A real vault (seeded through the Vault API on /dev/shm, fast KDF) behind a
real `credd serve`; the app runs headless (`App.run_test`) at 120×36.
"first paint" = a fresh interpreter importing credtui.app, plus the time from
creating the app to the list painted with every entry loaded. A keystroke is
timed three ways: the filter itself (the app's work), Pilot's press-until-idle
(repaint included), and that minus the same for a key nobody binds (the
harness and frame-rate floor).
Goals: first paint ≤ 1.0 s at 10k; keystroke ≤ 50 ms at 10k, ≤ 150 ms at 100k.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PASSPHRASE = "bench passphrase, not a secret"
QUERY = "team42/svc3"          # typed one key at a time, then erased one key at a time
FUZZY = "tm42s3k9"


def seed(directory: str, n: int) -> dict[str, str]:
    from credd.protocol import Set
    from credd.vault import KdfParams, Vault
    env = dict(os.environ, CREDD_VAULT=f"{directory}/vault.db",
               CREDD_STATE_DIR=f"{directory}/state",
               CREDD_SOCK=f"{directory}/run/agent.sock", XDG_RUNTIME_DIR=directory)
    vault, _ = Vault.create(env["CREDD_VAULT"], PASSPHRASE, state_dir=env["CREDD_STATE_DIR"],
                            kdf=KdfParams(memory_kib=19 * 1024, iterations=2, lanes=1))
    for i in range(n):
        vault.put(Set(name=f"team{i % 97}/svc{i % 7}/key{i}", kind="api_key",
                      service=f"svc{i % 37}.example.com",
                  tags=[f"t{i % 11}"], value="v"))
    vault.close()
    return env


def start_agent(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "credd", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(env["CREDD_SOCK"])
            break
        except OSError:
            time.sleep(0.05)
    from credd.client import Client
    with Client(env["CREDD_SOCK"]) as c:
        c.unlock(PASSPHRASE)
    return proc


def import_cost(env: dict[str, str]) -> float:
    code = ("import time; t = time.perf_counter(); import credtui.app; "
            "print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True).stdout) for _ in range(3)]
    return min(runs)


async def drive(socket_path: str, n: int) -> tuple[float, dict[str, list[float]]]:
    from credtui.app import CredApp
    from credtui.widgets.entry_list import EntryList
    filter_times: list[float] = []
    original = EntryList.filter

    def timed_filter(self, *args, **kwargs):  # the app's own work for a keystroke
        start = time.perf_counter()
        original(self, *args, **kwargs)
        filter_times.append(time.perf_counter() - start)

    EntryList.filter = timed_filter
    start = time.perf_counter()
    app = CredApp(socket_path, status_every=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        while not (type(app.screen).__name__ == "BrowseScreen"
                   and len(app.screen.entry_list.entries) == n):
            await asyncio.sleep(0.005)
        await pilot.pause()
        paint = time.perf_counter() - start
        await pilot.press("slash")
        idle = [await _key(pilot, "f12") for _ in range(10)]  # a key nobody binds
        keys = [await _key(pilot, ch) for ch in QUERY]
        keys += [await _key(pilot, "backspace") for _ in QUERY]
        keys += [await _key(pilot, ch) for ch in FUZZY]
        assert app.screen.entry_list.visible_count > 0
    EntryList.filter = original
    return paint, {"idle": idle, "keys": keys, "filter": filter_times}


async def _key(pilot, key: str) -> float:
    """From the key press until Pilot sees the app idle again, repaint included."""
    start = time.perf_counter()
    await pilot.press(key)
    await pilot.pause()
    return time.perf_counter() - start


def _stats(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"median {statistics.median(ordered) * 1000:6.1f} ms  "
            f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:6.1f} ms  "
            f"max {ordered[-1] * 1000:6.1f} ms")


def bench(n: int) -> None:
    base = tempfile.mkdtemp(prefix="credtui-bench-",
                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    proc = None
    try:
        t = time.perf_counter()
        env = seed(base, n)
        seeded = time.perf_counter() - t
        proc = start_agent(env)
        imported = import_cost(env)
        paint, times = asyncio.run(drive(env["CREDD_SOCK"], n))
        idle = statistics.median(times["idle"])
        print(f"{n:>7} entries (seeded in {seeded:.1f}s)")
        print(f"  first paint          {imported + paint:6.3f} s   "
              f"(import {imported:.3f} + app {paint:.3f})")
        print(f"  keystroke, filter    {_stats(times['filter'])}   (the app's work per key)")
        print(f"  keystroke, Pilot     {_stats(times['keys'])}   (press → idle, repaint included)")
        print(f"  unbound key, Pilot   {_stats(times['idle'])}   (harness + frame floor)")
        print(f"  keystroke net        {_stats([k - idle for k in times['keys']])}   "
              f"({len(times['keys'])} keys: '{QUERY}' typed and erased, '{FUZZY}' fuzzy)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [10_000, 100_000]:
        bench(size)
