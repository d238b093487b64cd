"""The thin client and `credd get` against their floors, and the agent at 100,000 entries.

    process     `credd get NAME` and `credd status` through the installed launcher
                (python -IS, credd/launcher.py) beside `python -I -S -c pass`, the
                venv's `python -c pass`, and the peers `pass show`, `gopass show`
                (one throwaway GnuPG key) and `secret-tool lookup` (gnome-keyring on
                a private D-Bus session) where installed; --install-peers installs
                them from Debian packages
    latency     in-process Client.get p50/p99 beside a raw msgspec echo server
    throughput  1, 8 and 64 concurrent client processes, agent beside the echo
    100k        an agent holding 100,000 entries: unlock (key slot, no KDF), list
                all, filtered lists, get_many of 10,000 refs, set

`--sections latency,throughput` runs only those (default: all four).

Run by `make bench`; measures, never asserts. Each figure is printed with
its goal from issue 3. The machine is shared, so read medians, not single runs.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from credd import protocol
from credd.client import Client

VENV_BIN = os.path.dirname(sys.executable)
PASSPHRASE = "bench passphrase"
FAST_KDF = {"kdf_memory_kib": 19 * 1024, "kdf_iterations": 2, "kdf_lanes": 1}
GPG_ID = "bench@credd.invalid"
SECTIONS = ("process", "latency", "throughput", "100k")
Commands = dict[str, list[str]]  # label -> argv

ECHO_SERVER = """
import asyncio, os, sys
import msgspec
from credd import protocol

decode = msgspec.msgpack.Decoder(protocol.Request).decode
encode = protocol.encode
welcome = encode(protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, version="echo",
                                  pid=os.getpid()))

async def handle(reader, writer):
    try:
        while True:
            n = int.from_bytes(await reader.readexactly(4), "big")
            req = decode(await reader.readexactly(n))
            if isinstance(req, protocol.Hello):
                writer.write(welcome)
            else:
                writer.write(encode(protocol.Secret(name=req.name, value="x" * 32)))
            await writer.drain()
    except asyncio.IncompleteReadError:
        writer.close()

async def main():
    server = await asyncio.start_unix_server(handle, sys.argv[1], limit=1 << 21)
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


# ---------------------------------------------------------------- helpers

def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<44}{value:>14}   {note}")


def wait_for(path: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {path}")


def start_agent(env: dict, log: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "credd", "serve"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    wait_for(env["CREDD_SOCK"], proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench_env(root: str, name: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users run with cached bytecode
    env.update(CREDD_SOCK=os.path.join(root, f"{name}.sock"),
               CREDD_VAULT=os.path.join(root, name, "vault.db"),
               CREDD_STATE_DIR=os.path.join(root, name, "state"), NO_COLOR="1",
               PYTHONPATH=os.path.dirname(HERE))
    return env


# ---------------------------------------------------------------- process wall time

#: Debian packages of the peers: `pass` and `gopass` over one GnuPG store, `secret-tool`
#: against gnome-keyring's Secret Service on a private D-Bus session.
PEER_PACKAGES = {"pass": "pass", "gopass": "gopass", "gpg": "gpg", "secret-tool": "libsecret-tools",
                 "gnome-keyring-daemon": "gnome-keyring", "dbus-run-session": "dbus-daemon",
                 "dbus-send": "dbus-bin"}


def install_peers() -> None:
    """apt-get install what is missing (root on Debian/Ubuntu only; quiet either way)."""
    missing = sorted({pkg for tool, pkg in PEER_PACKAGES.items() if not shutil.which(tool)})
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", *missing],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gpg_peers(root: str) -> tuple[Commands, dict[str, str]]:
    """`pass show` and `gopass show` over one throwaway store and GnuPG key."""
    if not (shutil.which("pass") and shutil.which("gpg")):
        return {}, {}
    gnupg, store = os.path.join(root, "gnupg"), os.path.join(root, "store")
    os.mkdir(gnupg, 0o700)
    extra = {"GNUPGHOME": gnupg, "PASSWORD_STORE_DIR": store}
    env = {**os.environ, **extra}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--pinentry-mode", "loopback",
                    "--quick-gen-key", GPG_ID, "default", "default", "never"],
                   env=env, capture_output=True, check=True)
    subprocess.run(["pass", "init", GPG_ID], env=env, capture_output=True, check=True)
    subprocess.run(["pass", "insert", "-e", "bench"], env=env, input=b"x" * 32 + b"\n",
                   capture_output=True, check=True)
    found = {"pass show": ["pass", "show", "bench"]}
    if shutil.which("gopass"):
        # gopasspw/gopass has `show -o`; Debian's older gopass only `show NAME`.
        probe = subprocess.run(["gopass", "show", "-o", "bench"], env=env, capture_output=True)
        found["gopass show" + (" -o" if probe.returncode == 0 else "")] = \
            ["gopass", "show", *(["-o"] if probe.returncode == 0 else []), "bench"]
    return found, extra


# Inside `dbus-run-session`: gnome-keyring creates and unlocks a login keyring with the
# empty password it reads from stdin (one empty line: without the newline it would ask a
# prompter, which has no display). Once it owns the Secret Service name (before that, a
# lookup would have D-Bus start a second, locked daemon) the bus address goes to our
# pipe; closing the session's stdin stops the daemon, and dbus-run-session ends the bus.
KEYRING_TOOLS = ("secret-tool", "gnome-keyring-daemon", "dbus-run-session", "dbus-send")
KEYRING_SESSION = """
echo | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
keyring=$!
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \\
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets | grep -q true; do
    kill -0 $keyring || exit 1
    sleep 0.05
done
echo "$DBUS_SESSION_BUS_ADDRESS"
cat >/dev/null
kill $keyring
wait $keyring
"""


@contextlib.contextmanager
def secret_tool_peer(root: str) -> Iterator[tuple[Commands, dict[str, str]]]:
    """`secret-tool lookup` against gnome-keyring on a private bus, in a throwaway HOME;
    yields its command and environment (or nothing when the tools are missing)."""
    if not all(map(shutil.which, KEYRING_TOOLS)):
        yield {}, {}
        return
    home = os.path.join(root, "keyring-home")
    os.mkdir(home, 0o700)
    env = {**os.environ, "HOME": home, "XDG_DATA_HOME": os.path.join(home, "data"),
           "XDG_RUNTIME_DIR": home, "XDG_CONFIG_HOME": os.path.join(home, "config")}
    session = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", KEYRING_SESSION],
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert session.stdin and session.stdout
    try:
        extra = {"DBUS_SESSION_BUS_ADDRESS": session.stdout.readline().strip()}
        lookup = ["secret-tool", "lookup", "service", "credd-bench", "key", "bench"]
        stored = extra["DBUS_SESSION_BUS_ADDRESS"] and subprocess.run(
            ["secret-tool", "store", "--label=bench", *lookup[2:]], env={**env, **extra},
            input=b"x" * 32, capture_output=True).returncode == 0
        yield ({"secret-tool lookup": lookup}, extra) if stored else ({}, {})
    finally:
        session.stdin.close()
        try:
            session.wait(10)
        except subprocess.TimeoutExpired:
            session.kill()


def process_times(env: dict[str, str], commands: Commands, runs: int) -> dict[str, list[float]]:
    """Interleaved runs, so a busy moment on the machine hits every command alike; each
    round starts one command further on, so no command always follows the same one."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    order = list(commands.items())
    for i in range(runs + 2):
        for label, argv in order[i % len(order):] + order[:i % len(order)]:
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{label} failed with {done.returncode}")
            if i >= 2:  # two warm-up rounds (bytecode caches, page cache)
                times[label].append(elapsed)
    return times


def credd_commands(root: str) -> Commands:
    """`credd` as `make run` / `make install-user` install it (the -IS launcher), as a
    plain pip console script would run it, and as `python -m credd`, beside the floors."""
    from credd import launcher
    launched = os.path.join(root, "launcher")
    os.mkdir(launched)
    credd = launcher.install(launched)
    pip_script = os.path.join(root, "pip-credd")
    with open(pip_script, "w") as f:  # what pip's console-script generator writes
        f.write(f"#!{sys.executable}\nimport sys\nfrom credd.cli import main\n"
                f"sys.exit(main())\n")
    os.chmod(pip_script, 0o755)
    return {"python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
            "python -c pass (same venv)": [sys.executable, "-c", "pass"],
            "credd get NAME": [credd, "get", "bench"],
            "credd status": [credd, "status"],
            "pip console script: credd get": [pip_script, "get", "bench"],
            "python -m credd get NAME": [sys.executable, "-m", "credd", "get", "bench"]}


def section_process(env: dict[str, str], root: str, runs: int, install: bool) -> None:
    print(f"\n`credd get` as a whole process ({runs} interleaved rounds; median, p90)")
    if install:
        install_peers()
    commands = credd_commands(root)
    gpg_commands, gpg_env = gpg_peers(root)
    commands.update(gpg_commands)
    try:
        with secret_tool_peer(root) as (st_commands, st_env):
            commands.update(st_commands)
            times = process_times({**env, **gpg_env, **st_env}, commands, runs)
    finally:
        if gpg_env:  # the throwaway key's gpg-agent goes with its directory
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, **gpg_env},
                           capture_output=True)
    medians = {label: statistics.median(samples) for label, samples in times.items()}
    for label, samples in times.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
        row(label, ms(medians[label]), f"p90 {ms(p90).strip()}")
    for command in ("credd get NAME", "credd status"):
        ratios = [f"{medians[command] / medians[other]:.2f}x {other}" for other in medians
                  if other not in ("credd get NAME", "credd status")
                  and not other.startswith(("pip console", "python -m"))]
        print(f"  {command} / " + ", ".join(ratios))
    peers_found = [label for label in medians if label.split()[0] in PEER_PACKAGES]
    gopass = next((label for label in peers_found if label.startswith("gopass")), None)
    if gopass:
        ratio = medians["credd get NAME"] / medians[gopass]
        print(f"  goal: credd get <= gopass show: {ratio:.2f}x")
    if peers_found:
        fastest = min(peers_found, key=medians.__getitem__)
        ratio = medians["credd get NAME"] / medians[fastest]
        print(f"  stretch: ahead of every peer: {ratio:.2f}x the fastest ({fastest})")
    missing = sorted({"pass show", "gopass show", "secret-tool lookup"} -
                     {" ".join(label.split()[:2]) for label in peers_found})
    if missing:
        print(f"  not installed, skipped: {', '.join(missing)} (--install-peers fetches them)")


# ---------------------------------------------------------------- latency and throughput

def raw_get(sock: socket.socket, frame: bytes, decode) -> str:
    sock.sendall(frame)
    header = sock.recv(4, socket.MSG_WAITALL)
    return decode(sock.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)).value


def raw_connection(path: str):
    import msgspec
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    decode = msgspec.msgpack.Decoder(protocol.Response).decode
    sock.sendall(protocol.encode(protocol.Hello(protocol=protocol.PROTOCOL_VERSION)))
    header = sock.recv(4, socket.MSG_WAITALL)
    sock.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)
    frame = protocol.encode(protocol.Get(name="bench"))
    return lambda: raw_get(sock, frame, decode)


def client_getter(path: str):
    client = Client(path)
    return lambda: client.get("bench")


def latencies(getters: dict, n: int, block: int = 250) -> dict[str, list[float]]:
    """Per-call times of each getter, taken in alternating blocks: the machine's busy and
    idle moments (which move a Unix-socket round trip by 2x here) hit every one alike."""
    for get in getters.values():
        for _ in range(200):
            get()
    samples: dict[str, list[float]] = {label: [] for label in getters}
    for _ in range(max(1, n // block)):
        for label, get in getters.items():
            times = samples[label]
            for _ in range(block):
                start = time.perf_counter()
                get()
                times.append(time.perf_counter() - start)
    return samples


def section_latency(agent_sock: str, echo_sock: str, n: int) -> None:
    print(f"\nin-process get, {n} sequential calls each, interleaved (p50, p99)")
    samples = latencies({"raw msgspec echo": raw_connection(echo_sock),
                         "Client.get against the echo": client_getter(echo_sock),
                         "Client.get against the agent": client_getter(agent_sock)}, n)
    for label, times in samples.items():
        row(label, f"{pct(times, 50) * 1e6:8.0f} us", f"p99 {pct(times, 99) * 1e6:.0f} us")
    ratio = pct(samples["Client.get against the agent"], 50) / pct(samples["raw msgspec echo"], 50)
    print(f"  goal: Client.get p50 <= 1.5x echo: {ratio:.2f}x")


def _worker(kind: str, path: str, start, seconds: float, out) -> None:
    get = client_getter(path) if kind == "agent" else raw_connection(path)
    start.wait()
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        get()
        count += 1
    out.send(count)


def throughput(kind: str, path: str, clients: int, seconds: float) -> float:
    ctx = mp.get_context("fork")
    start = ctx.Event()
    pipes, procs = [], []
    for _ in range(clients):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(kind, path, start, seconds, send))
        proc.start()
        pipes.append(recv)
        procs.append(proc)
    time.sleep(0.5 + clients * 0.02)  # every worker connected and waiting
    start.set()
    total = sum(p.recv() for p in pipes)
    for proc in procs:
        proc.join()
    return total / seconds


def section_throughput(agent_sock: str, echo_sock: str, seconds: float) -> None:
    print(f"\nthroughput, concurrent client processes ({seconds:.0f} s each)")
    for clients in (1, 8, 64):
        echo = throughput("echo", echo_sock, clients, seconds)
        agent = throughput("agent", agent_sock, clients, seconds)
        goal = "  (goal >= 0.5x)" if clients == 8 else ""
        row(f"{clients:>2} clients: agent / echo", f"{agent:8.0f} /s",
            f"echo {echo:.0f} /s, {agent / echo:.2f}x{goal}")


# ---------------------------------------------------------------- 100,000 entries

def timed(fn, repeat: int = 1) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def section_big(root: str, entries: int) -> None:
    import vault_bench
    env = bench_env(root, "big")
    os.makedirs(os.path.dirname(env["CREDD_VAULT"]), mode=0o700)
    os.environ["CREDD_STATE_DIR"] = env["CREDD_STATE_DIR"]  # the vault's rollback counter
    print(f"\nan agent with {entries:,} entries")
    started = time.perf_counter()
    vault_bench.build(env["CREDD_VAULT"], entries, env["CREDD_STATE_DIR"])
    print(f"  (built in {time.perf_counter() - started:.0f} s)")
    agent = start_agent(env, os.path.join(root, "big.log"))
    try:
        with Client(env["CREDD_SOCK"], timeout=None) as c:
            _unlock_and_list(c, "from the snapshot")
            listed, _ = timed(c.list, repeat=5)
            row("list all again, median of 5", ms(listed), "goal <= 200 ms")
            by_service, found = timed(lambda: c.list(service="svc7"), repeat=5)
            row(f"list --service ({len(found)} match)", ms(by_service))
            by_prefix, found = timed(lambda: c.list(prefix="team7/"), repeat=5)
            row(f"list prefix ({len(found):,} match)", ms(by_prefix))
            by_text, found = timed(lambda: c.list(contains="service-4242"), repeat=5)
            row(f"list substring ({len(found)} match)", ms(by_text))
            refs = [f"credd://{vault_bench._name(i)}" for i in range(0, entries, 10)][:10_000]
            many, values = timed(lambda: c.get_many(refs), repeat=3)
            row(f"get_many ({len(values):,} refs)", ms(many))
            sets = [timed(lambda i=i: c.set(f"bench/new-{i}", value="v" * 32))[0]
                    for i in range(30)]
            row("set (durable commit), median of 30", ms(statistics.median(sets)))
    finally:
        stop(agent)
    _without_snapshot(env, root)


def _unlock_and_list(c: Client, how: str) -> None:
    """The key-slot unlock, then the first list after it, both timed."""
    import vault_bench
    unlock, _ = timed(lambda: c.unlock(key=vault_bench.KEY))
    row(f"unlock {how} (key slot)", ms(unlock))
    first, everything = timed(c.list)
    row(f"  first list after it ({len(everything):,}, paged)", ms(first), "goal <= 200 ms")


def _without_snapshot(env: dict, root: str) -> None:
    """A fresh agent on the same vault with its snapshot dropped: what follows a crash."""
    db = sqlite3.connect(env["CREDD_VAULT"], isolation_level=None)
    db.execute("DELETE FROM manifest")
    db.close()
    agent = start_agent(env, os.path.join(root, "big.log"))
    try:
        with Client(env["CREDD_SOCK"], timeout=None) as c:
            _unlock_and_list(c, "row by row")
    finally:
        stop(agent)


# ---------------------------------------------------------------- main

def section_small(root: str, args) -> None:
    """Everything measured against the small vault and the echo server."""
    env = bench_env(root, "small")
    agent = start_agent(env, os.path.join(root, "agent.log"))
    echo_sock = os.path.join(root, "echo.sock")
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, echo_sock], env=env,
                            stdout=subprocess.DEVNULL)
    try:
        wait_for(echo_sock, echo)
        with Client(env["CREDD_SOCK"], timeout=None) as c:
            c.init(PASSPHRASE, **FAST_KDF)
            c.unlock(PASSPHRASE, idle_timeout=3600)
            c.set("bench", value="x" * 32)
        if "process" in args.sections:
            section_process(env, root, args.runs, args.install_peers)
        if "latency" in args.sections:
            section_latency(env["CREDD_SOCK"], echo_sock, args.calls)
        if "throughput" in args.sections:
            section_throughput(env["CREDD_SOCK"], echo_sock, args.seconds)
    finally:
        stop(agent)
        stop(echo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="process runs per command")
    parser.add_argument("--calls", type=int, default=5000, help="sequential in-process gets")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput point")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--install-peers", action="store_true",
                        help="apt-get install pass, gopass, secret-tool, gnome-keyring if missing")
    parser.add_argument("--sections", type=lambda s: set(s.split(",")), default=set(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    args, _ = parser.parse_known_args()

    root = tempfile.mkdtemp(prefix="cb", dir="/tmp")  # short: sun_path
    os.chmod(root, 0o700)
    try:
        if args.sections & {"process", "latency", "throughput"}:
            section_small(root, args)
        if "100k" in args.sections:
            section_big(root, args.entries)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
