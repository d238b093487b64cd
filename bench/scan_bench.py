"""credd scan benchmark: files beside grep and ripgrep, git history beside git log alone.

    .venv/bin/python bench/scan_bench.py [--mb 100] [--secrets 1000 10000] [--commits 3000]
                                         [--runs 3] [--install-peers]

A real `credd serve` on a vault seeded through the Vault API in a temp dir
(fast KDF parameters) with exactly N secret values (fields of N/100 entries).

1. Files: a tree of --mb MB of log-like text shaped like a project (thousands
   of small files, lognormal sizes around 8 KB, plus four large logs), a few
   stored values planted in plain and encoded forms. `credd scan TREE` end to
   end (a new process: start, fetch every value from the agent, compute the
   forms, compile, walk, read, search) beside `grep -rF -f VALUES TREE` and
   `rg -F -f VALUES TREE` given the same values as plain text. They search
   for each value as written; credd for every form of it (4-7 patterns per
   value), so it does more work than they do. Runs interleaved; medians.
2. Git: a repository of --commits commits (written with git fast-import: a
   few hundred files, each commit changing a few lines of three of them), a
   value planted in one commit and removed later; `credd scan --git
   --all-refs` end to end beside `git log -p -U0 --all` alone (to a file).

Goals: files ≥ 100 MB/s with 1,000 secrets and ≥ 50 MB/s with 10,000, and
faster than grep and rg; the history in ≤ 1.5× the time of git log alone.
Each command's CPU time (user + system, children included) is printed beside
its wall time: on a shared machine it says more about the work than the clock.
Benches measure; they assert nothing (tests/test_bench_smoke.py runs this at
toy size).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import resource
import shutil
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PASSPHRASE = "bench passphrase, not a secret"
PER_ENTRY = 100
ALPHABET = string.ascii_letters + string.digits + "-_"
GOALS = {1000: 100.0, 10000: 50.0}  # MB/s, files, end to end
GIT_GOAL = 1.5                       # × git log -p -U0 --all alone


def random_secret(rng: random.Random) -> str:
    return "".join(rng.choices(ALPHABET, k=rng.randint(16, 40)))


def seed(directory: Path, n: int, rng: random.Random) -> tuple[dict[str, str], list[str]]:
    """A vault holding exactly n secret values, and the environment of an agent serving it."""
    from credd.protocol import Field, Set
    from credd.vault import KdfParams, Vault
    run = Path(tempfile.mkdtemp(prefix="csb", dir="/tmp"))  # short: sun_path is 108 bytes
    env = {**os.environ, "CREDD_VAULT": str(directory / "vault.db"),
           "CREDD_STATE_DIR": str(directory / "state"), "XDG_RUNTIME_DIR": str(run),
           "CREDD_SOCK": str(run / "credd" / "agent.sock"), "HOME": str(directory),
           "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    vault, _ = Vault.create(env["CREDD_VAULT"], PASSPHRASE, state_dir=env["CREDD_STATE_DIR"],
                            kdf=KdfParams(memory_kib=19 * 1024, iterations=2, lanes=1))
    values = [random_secret(rng) for _ in range(n)]
    for e in range(0, n, PER_ENTRY):
        vault.put(Set(name=f"bench/{e // PER_ENTRY:04d}",
                      fields=[Field(name=f"f{i}", value=v)
                              for i, v in enumerate(values[e:e + PER_ENTRY])]))
    vault.close()
    return env, values


def start_agent(env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "credd", "serve"], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(env["CREDD_SOCK"])
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"agent did not start:\n{log.read_text()}") from None
            time.sleep(0.05)
    from credd.client import Client
    with Client(env["CREDD_SOCK"]) as c:
        c.unlock(PASSPHRASE)
    return proc


def text_lines(rng: random.Random, words: list[str], n: int) -> str:
    return "".join(f"2026-11-23T00:00:{i % 60:02d}Z INFO {' '.join(rng.choices(words, k=10))} "
                   f"{rng.getrandbits(64):016x}\n" for i in range(n))


def make_tree(root: Path, megabytes: int, values: list[str], rng: random.Random) -> int:
    """Log-like text as a project's files; returns how many forms were planted."""
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10)))
             for _ in range(5000)]
    block = text_lines(rng, words, 20_000).encode()  # ~1.5 MB, sliced into files
    target = megabytes * 1_000_000
    small_total = target * 6 // 10
    written = planted = i = 0
    while written < target:
        if written < small_total:
            size = min(int(rng.lognormvariate(9, 1)), 400_000)  # median ~8 KB
            path = root / f"src/pkg{i % 40:02d}/mod{i % 7}/file{i:05d}.txt"
        else:
            size = min((target - small_total) // 4 + 1, target - written)
            path = root / f"logs/app{i % 4}.log"
        start = rng.randrange(0, len(block) - 1)
        data = (block[start:] + block)[:size] if size < len(block) else (
            block * (size // len(block) + 1))[:size]
        if i % 500 == 0:  # now and then a leaked value, plain or encoded
            value = rng.choice(values).encode()
            leak = rng.choice([value, base64.b64encode(value), value.hex().encode()])
            data = data[:len(data) // 2] + b" " + leak + b"\n" + data[len(data) // 2:]
            planted += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
        written += len(data)
        i += 1
    return planted


def make_repo(path: Path, commits: int, value: str, rng: random.Random) -> None:
    """`commits` commits via git fast-import: ~300 files of ~300 lines, each commit changing
    a few lines in three of them; `value` added at a third of the way, removed at two."""
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10)))
             for _ in range(3000)]
    files = {f"src/m{i:03d}.py": [f"{' '.join(rng.choices(words, k=8))}\n" for _ in range(300)]
             for i in range(300)}
    stream = []
    for c in range(commits):
        changed = rng.sample(sorted(files), 3) if c else sorted(files)
        for name in changed[:3] if c else []:
            lines = files[name]
            for _ in range(rng.randint(2, 6)):
                lines[rng.randrange(len(lines))] = f"{' '.join(rng.choices(words, k=8))}\n"
        if c == commits // 3:
            files[changed[0]].insert(10, f"API_KEY = '{value}'\n")
        if c == 2 * commits // 3:
            for lines in files.values():
                lines[:] = [line for line in lines if value not in line]
            changed = sorted(files)
        message = f"change {c}\n"
        stream.append(f"commit refs/heads/main\nmark :{c + 1}\n"
                      f"committer b <b@example.com> {1_700_000_000 + c * 60} +0000\n"
                      f"data {len(message)}\n{message}")
        if c:
            stream.append(f"from :{c}\n")
        for name in changed:
            body = "".join(files[name]).encode()
            stream.append(f"M 100644 inline {name}\ndata {len(body)}\n{body.decode()}\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], check=True,
                   input="".join(stream).encode())
    subprocess.run(["git", "-C", str(path), "gc", "-q"], check=True)


def install_peers() -> None:
    """ripgrep from the distribution's packages (nothing by URL)."""
    if shutil.which("rg") or not shutil.which("apt-get"):
        return
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "-q", "ripgrep"], **quiet).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-q", "ripgrep"], **quiet)


def timed(cmd: list[str], env: dict[str, str], out: Path,
          ok: tuple[int, ...] = (0, 1)) -> tuple[float, float]:
    """Wall and CPU (user + system) time of one run, stdout to a file (GNU grep stops at a
    first match when it writes to /dev/null)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "wb") as sink:
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=sink, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in ok:
        raise SystemExit(f"{cmd[:4]} failed ({done.returncode}): {done.stderr.decode()[:300]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interleaved(commands: dict[str, list[str]], env: dict[str, str], root: Path,
                runs: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time of each command, the commands taking turns run after run."""
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, cmd in commands.items():
            times[label].append(timed(cmd, env, root / output_name(label)))
    return {label: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
            for label, t in times.items()}


def output_name(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label) + ".out"


def credd_scan(*args: str) -> list[str]:
    return [sys.executable, "-m", "credd", "scan", *args]


def bench_files(env: dict[str, str], root: Path, values: list[str], megabytes: int,
                runs: int) -> str:
    n = len(values)
    rng = random.Random(n)
    tree = root / "tree"
    planted = make_tree(tree, megabytes, values, rng)
    files = [p for p in tree.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files) / 1e6
    patterns = root / "values.txt"
    patterns.write_text("\n".join(values) + "\n")
    (root / "empty").mkdir(exist_ok=True)
    commands = {"credd scan TREE": credd_scan(str(tree)),
                "credd scan EMPTY-DIR": credd_scan(str(root / "empty"))}
    for tool, cmd in (("grep", ["grep", "-rF", "-f", str(patterns), str(tree)]),
                      ("rg", ["rg", "-F", "-f", str(patterns), str(tree)])):
        if shutil.which(tool):
            commands[f"{tool} -F -f"] = cmd
    print(f"\n## files: {n:,} stored values, {len(files):,} files, {size:.0f} MB "
          f"({planted} leaks planted; MB/s, higher is better; median of {runs}, interleaved)")
    medians = interleaved(commands, env, root, runs)
    found = (root / output_name("credd scan TREE")).read_text().count("\n")
    for label, (t, cpu) in medians.items():
        rate = "" if "EMPTY" in label else f"{size / t:8.1f}"
        print(f"{label:<24}: {rate:>8}   ({t:.2f} s; CPU {cpu:.2f} s)")
    for tool in ("grep", "rg"):
        if not shutil.which(tool):
            hint = " (--install-peers installs ripgrep)" if tool == "rg" else ""
            print(f"{tool + ' -F -f':<24}:  skipped ({tool} not installed{hint})")
    print(f"  (credd reported {found} hits for {planted} planted leaks; a value stored in "
          f"one entry is one hit)")
    ours = size / medians["credd scan TREE"][0]
    peers = {k: size / v[0] for k, v in medians.items() if not k.startswith("credd")}
    goal = GOALS.get(n, 50.0)
    met = ours >= goal and all(ours > p for p in peers.values())
    peer_text = ", ".join(f"{k} {v:.0f} MB/s ({ours / v:.1f}x)" for k, v in peers.items())
    return (f"files, {n:>6,} values: credd {ours:.0f} MB/s (goal {goal:.0f}) vs "
            f"{peer_text or 'no peers installed'}: {'met' if met else 'NOT met'}")


def bench_git(env: dict[str, str], root: Path, values: list[str], commits: int,
              runs: int) -> str:
    repo = root / "repo"
    t = time.perf_counter()
    make_repo(repo, commits, values[0], random.Random(commits))
    made = time.perf_counter() - t
    commands = {"credd scan --git --all-refs": credd_scan("--git", "--all-refs", str(repo)),
                "git log -p -U0 --all": ["git", "-C", str(repo), "log", "-p", "-U0", "--all"]}
    medians = interleaved(commands, env, root, runs)
    out_mb = (root / output_name("git log -p -U0 --all")).stat().st_size / 1e6
    print(f"\n## git history: {commits:,} commits ({out_mb:.0f} MB of git log -p -U0 output; "
          f"made in {made:.1f} s), {len(values):,} stored values (median of {runs}, interleaved)")
    for label, (t, cpu) in medians.items():
        print(f"{label:<28}: {t:6.2f} s   (CPU {cpu:.2f} s)")
    hits = (root / output_name("credd scan --git --all-refs")).read_text().splitlines()
    print(f"  (credd: {len(hits)} hit{'s' * (len(hits) != 1)}: "
          f"{hits[0] if hits else 'none'})")
    ratio = medians["credd scan --git --all-refs"][0] / medians["git log -p -U0 --all"][0]
    return (f"git, {commits:,} commits: credd {ratio:.2f}x git log alone (goal <= "
            f"{GIT_GOAL}x): {'met' if ratio <= GIT_GOAL else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="size of the file tree, in MB")
    ap.add_argument("--secrets", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--commits", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3, help="runs of each command (median)")
    ap.add_argument("--install-peers", action="store_true",
                    help="install ripgrep with apt-get when it is missing")
    args = ap.parse_args()
    if args.install_peers:
        install_peers()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {os.cpu_count()} CPUs, load average {load:.2f} at start")
    verdicts = []
    for i, n in enumerate(args.secrets):
        root = Path(tempfile.mkdtemp(prefix="credd-scan-bench-"))
        agent = None
        try:
            env, values = seed(root, n, random.Random(n))
            agent = start_agent(env, root / "agent.log")
            verdicts.append(bench_files(env, root, values, args.mb, args.runs))
            if i == 0:  # the history with the first vault size
                verdicts.append(bench_git(env, root, values, args.commits, args.runs))
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(10)
            shutil.rmtree(root, ignore_errors=True)
            if agent is not None:
                shutil.rmtree(Path(env["CREDD_SOCK"]).parent.parent, ignore_errors=True)
    print("\n## Goals")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
