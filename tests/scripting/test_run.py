"""`credd run` against a real agent: env files, references, masking (pipes and a PTY),
isolation, --files, exit codes, signals and stdin."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from credd.errors import BadRequest
from credd.mask import REPLACEMENT
from tests.conftest import AS_NOBODY, SENTINEL, nobody_python
from tests.scripting.conftest import DB_PASSWORD, TOKEN, script

R = REPLACEMENT.decode()


def get_many_requests(client) -> set:
    """One audit line per entry name; the lines of one request share time and pid."""
    return {(a.time, a.pid) for a in client.audit(limit=1000) if a.op == "get_many"}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


SHOW = """
import hashlib, os, sys
for var in sys.argv[1:]:
    value = os.environ.get(var)
    digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else None
    print(var, digest)
print("out", os.environ.get("GH"), flush=True)
print("err", os.environ.get("DBPW"), file=sys.stderr, flush=True)
"""


def test_env_file_and_env_resolved_and_masked(stocked, credd_cmd, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("GH=credd://github/token\nMODE=production # plain\n"
                        "DBPW=credd://prod db/password\nDBHOST=credd://prod db/host\n")
    child = script(tmp_path, "show.py", SHOW)
    round_trips = len(get_many_requests(stocked))
    r = credd_cmd("run", "--env-file", str(env_file), "--env", "SENT=credd://sentinel", "--",
                  sys.executable, child, "GH", "DBPW", "DBHOST", "MODE", "SENT")
    assert r.returncode == 0, r.stderr
    assert len(get_many_requests(stocked)) == round_trips + 1  # every reference, one request
    assert not any(a.op in ("get", "reveal") for a in stocked.audit(limit=1000))
    out, err = r.stdout.decode(), r.stderr.decode()
    assert f"GH {sha(TOKEN)}" in out and f"DBPW {sha(DB_PASSWORD)}" in out
    assert f"DBHOST {sha('db.internal')}" in out and f"MODE {sha('production')}" in out
    assert f"SENT {sha(SENTINEL)}" in out
    assert f"out {R}\n" in out and f"err {R}\n" in err
    for value in (TOKEN, DB_PASSWORD, SENTINEL):
        assert value not in out + err


def test_secret_split_across_writes_is_masked(stocked, credd_cmd, tmp_path):
    child = script(tmp_path, "split.py", """
import os, sys, time
v = os.environ["GH"].encode()
for fd in (1, 2):
    os.write(fd, b"before " + v[:5]); time.sleep(0.05)
    os.write(fd, v[5:9]); time.sleep(0.05)
    os.write(fd, v[9:] + b" after\\n")
""")
    r = credd_cmd("run", "--env", "GH=credd://github/token", "--", sys.executable, child)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"before {R} after\n"
    assert r.stderr.decode() == f"before {R} after\n"


def test_no_mask_shows_values(stocked, credd_cmd, tmp_path):
    r = credd_cmd("run", "--no-mask", "--env", "GH=credd://github/token", "--",
                  sys.executable, "-c", "import os; print(os.environ['GH'])")
    assert r.returncode == 0 and r.stdout.decode() == TOKEN + "\n"


def test_missing_references_abort_before_the_child_starts(stocked, credd_cmd, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("A=credd://github/token\nB=credd://nope/one\nC=credd://prod db/nofield\n")
    marker = tmp_path / "ran"
    r = credd_cmd("run", "--env-file", str(env_file), "--env", "D=credd://missing", "--",
                  "touch", str(marker))
    err = r.stderr.decode()
    assert r.returncode == 5, err
    assert not marker.exists()
    for ref in ("credd://nope/one", "credd://prod db/nofield", "credd://missing"):
        assert ref in err
    assert "credd://github/token" not in err.split("not found")[-1]


def test_env_refuses_plain_values_on_the_command_line(stocked, credd_cmd):
    r = credd_cmd("run", "--env", "X=hunter2hunter2", "--", "true")
    assert r.returncode == 2 and "hunter2" not in r.stderr.decode()
    r = credd_cmd("run", "--files", "--env", "../escape=credd://github/token", "--", "true")
    assert r.returncode == 2 and "not a variable name" in r.stderr.decode()


def test_only_isolates_the_environment(stocked, credd_cmd, tmp_path):
    r = credd_cmd("run", "--only", "--env", "GH=credd://github/token", "--", "env",
                  env={"LEAKY": "1", "LANG": "C.UTF-8", "TERM": "xterm"})
    assert r.returncode == 0, r.stderr
    names = sorted(line.split("=", 1)[0] for line in r.stdout.decode().splitlines())
    assert names == ["GH", "HOME", "LANG", "PATH", "TERM"]
    assert f"GH={R}" in r.stdout.decode()
    r = credd_cmd("run", "--env", "GH=credd://github/token", "--", "env", env={"LEAKY": "1"})
    assert "LEAKY=1" in r.stdout.decode()


FILES_CHILD = """
import hashlib, os, stat, subprocess, sys
path = os.environ["GH_FILE"]
print(path)
print(oct(stat.S_IMODE(os.stat(path).st_mode)), os.stat(path).st_nlink)
print("GH" in os.environ, hashlib.sha256(open(path, "rb").read()).hexdigest())
print(open(path).read())
try:
    open(path, "w")
except OSError as exc:
    print("read-only", type(exc).__name__)
sys.stdout.flush()
# a grandchild, started with every inherited descriptor closed (subprocess's default)
subprocess.run(["cat", path], check=True)
print(flush=True)
"""


def test_files_are_memory_backed_read_only_and_reach_grandchildren(stocked, credd_cmd,
                                                                     tmp_path):
    child = script(tmp_path, "files.py", FILES_CHILD)
    r = credd_cmd("run", "--files", "--env", "GH=credd://github/token", "--", sys.executable, child)
    assert r.returncode == 0, r.stderr
    path, modes, check, shown, readonly, grandchild = r.stdout.decode().splitlines()
    assert path.startswith("/proc/") and "/fd/" in path  # credd run's descriptor, not a file
    assert modes == "0o400 0"  # read-only, and no name on any filesystem
    assert check == f"False {sha(TOKEN)}"
    assert shown == R and grandchild == R  # read from the file, still masked in the output
    assert readonly.startswith("read-only")
    assert not os.path.exists(path)  # gone with credd run


def test_files_without_masking_exec_with_the_descriptors(stocked, credd_cmd):
    """--no-mask execs the program: the same pid, so the same /proc/PID/fd/N paths."""
    r = credd_cmd("run", "--files", "--no-mask", "--env", "GH=credd://github/token", "--",
                  "sh", "-c", 'echo "$$ $GH_FILE"; cat "$GH_FILE"')
    assert r.returncode == 0, r.stderr
    first, value = r.stdout.decode().split("\n", 1)
    pid, path = first.split()
    assert path.startswith(f"/proc/{pid}/fd/") and value == TOKEN


def test_kill_9_of_credd_run_leaves_the_secret_in_no_file(client, credd_cmd, credd_env, tmp_path):
    """The secret must not outlive `credd run` on a disk: search every file under /tmp,
    $XDG_RUNTIME_DIR and $HOME for its bytes after `kill -9` while the child sleeps."""
    secret = "run-files-" + os.urandom(12).hex()  # unique: other test runs share /tmp
    client.set("killed/token", value=secret)
    child = script(tmp_path, "sleepy.py", "import os, sys, time\n"
                   "open(os.environ['GH_FILE']).read()\nprint('ready', flush=True)\n"
                   "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-m", "credd", "run", "--files", "--env",
                             "GH=credd://killed/token", "--", sys.executable, child],
                            env=credd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.kill()  # credd run only: its child sleeps on, orphaned
        proc.wait(10)
        needle = secret.encode()
        for root in ("/tmp", credd_env["XDG_RUNTIME_DIR"], credd_env["HOME"]):
            assert not _files_holding(root, needle), root
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()


def _files_holding(root: str, needle: bytes, limit: int = 1 << 20) -> list[str]:
    """Regular files under `root` (up to `limit` bytes) that contain `needle`."""
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                    continue
                with open(path, "rb") as f:
                    if needle in f.read():
                        found.append(path)
            except OSError:
                continue
    return found


def test_files_fall_back_to_the_runtime_dir_and_clean_up_after_a_killed_run(monkeypatch,
                                                                           tmp_path):
    """No memfd_create (another OS, a seccomp filter): 0600 files in $XDG_RUNTIME_DIR
    (a tmpfs), removed after the child, and a killed run's left by the next one."""
    from credd import runner
    monkeypatch.delattr(os, "memfd_create")
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (runtime / "credd").mkdir(mode=0o700)
    stale = runtime / "credd" / f"run-{dead.pid}-x"
    stale.mkdir(mode=0o700)
    (stale / "GH").write_text("left by a kill -9")
    files = runner.secret_files({"GH": TOKEN})
    path = files.env["GH_FILE"]
    assert not stale.exists()
    assert os.path.dirname(os.path.dirname(path)) == str(runtime / "credd")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and open(path).read() == TOKEN
    files.close()
    assert not os.path.exists(os.path.dirname(path))
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    with pytest.raises(BadRequest, match="never a disk-backed /tmp"):
        runner.secret_files({"GH": TOKEN})


def test_exit_code_and_stdin_pass_through(stocked, credd_cmd, tmp_path):
    child = script(tmp_path, "echo.py", "import sys\nsys.stdout.write(sys.stdin.read().upper())\n"
                                        "sys.exit(7)\n")
    r = credd_cmd("run", "--env", "GH=credd://github/token", "--", sys.executable, child,
                  input=b"hello through stdin\n")
    assert r.returncode == 7
    assert r.stdout == b"HELLO THROUGH STDIN\n"



def test_a_command_that_cannot_start_exits_127_or_126_as_env_does(stocked, credd_cmd, tmp_path):
    not_executable = tmp_path / "data.txt"
    not_executable.write_text("not a program\n")
    for argv, code in ((["no-such-command-xyz"], 127), ([str(not_executable)], 126),
                       ([str(tmp_path)], 126)):
        expected = subprocess.run(["env", *argv], capture_output=True).returncode
        for mask in ([], ["--no-mask"]):
            r = credd_cmd("run", *mask, "--env", "GH=credd://github/token", "--", *argv)
            err = r.stderr.decode()
            assert r.returncode == code == expected, (argv, mask, err)
            assert argv[0] in err and "credd ls" not in err and "hint" not in err, err
    assert "command not found" in credd_cmd("run", "--", "no-such-command-xyz").stderr.decode()


def _wait_for(stream, needle: bytes, timeout: float = 15) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    assert needle in seen, seen
    return seen


@pytest.mark.parametrize("how", [[], ["--via-agent"]], ids=["local", "via-agent"])
def test_signals_are_forwarded(stocked, credd_env, tmp_path, how):
    """To the child here, or passed on over the socket to the command the agent runs."""
    child = script(tmp_path, "sig.py", """
import signal, sys, time
def handler(sig, frame):
    print("got", sig, flush=True)
    sys.exit(40 + sig)
signal.signal(signal.SIGTERM, handler)
signal.signal(signal.SIGINT, handler)
print("ready", flush=True)
time.sleep(30)
""")
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-m", "credd", "run", *how, "--env",
                                 "GH=credd://github/token", "--", sys.executable, child],
                                env=credd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _wait_for(proc.stdout, b"ready")
            proc.send_signal(sig)
            assert proc.wait(15) == 40 + sig
            assert f"got {int(sig)}".encode() in proc.stdout.read()
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


def _on_terminal(run_args: list[str], env: dict, converse, *, stdin_too: bool = False) -> str:
    """`credd run RUN_ARGS` with its output on a new terminal; `converse(term)` returns what
    it saw there, and credd must then exit 0."""
    master, slave = pty.openpty()
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "credd", "run", *run_args], env=env,
                                stdin=slave if stdin_too else subprocess.DEVNULL,
                                stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        with os.fdopen(master, "r+b", buffering=0) as term:
            seen = converse(term)
            assert proc.wait(15) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    return seen.decode()


@pytest.mark.parametrize("how", [[], ["--via-agent"]], ids=["local", "via-agent"])
def test_pty_keeps_colours_and_masks(stocked, credd_env, tmp_path, how):
    """On our terminal, or on the agent's own terminal fed from ours."""
    child = script(tmp_path, "colour.py", """
import os, sys
print("tty", sys.stdout.isatty(), sys.stdin.isatty())
print("\\x1b[31m" + os.environ["GH"] + "\\x1b[0m and \\x1b[1mbold\\x1b[0m", flush=True)
line = sys.stdin.readline()
print("read", line.strip()[::-1], flush=True)
""")
    def converse(term) -> bytes:
        seen = _wait_for(term, b"bold")
        term.write(b"abc\r")
        return seen + _wait_for(term, b"read cba")

    text = _on_terminal([*how, "--env", "GH=credd://github/token", "--", sys.executable,
                         child], credd_env, converse, stdin_too=True)
    assert "tty True True" in text
    assert f"\x1b[31m{R}\x1b[0m and \x1b[1mbold\x1b[0m" in text
    assert TOKEN not in text


@pytest.mark.parametrize("how", ["", "--via-agent"], ids=["local", "via-agent"])
def test_closed_reader_ends_the_child_instead_of_hanging(stocked, credd_env, how):
    """`credd run -- yes | head -1`: when our reader goes, the child must not block forever."""
    r = subprocess.run(f"{sys.executable} -m credd run {how} --env GH=credd://github/token -- "
                       f"yes | head -1", shell=True, env=credd_env, capture_output=True,
                       timeout=30)
    assert r.stdout == b"y\n"


def test_pty_with_stderr_redirected_keeps_it_separate_and_masked(stocked, credd_env, tmp_path):
    child = script(tmp_path, "two.py", """
import os, sys
print("out", sys.stdout.isatty(), os.environ["GH"], flush=True)
print("err", sys.stderr.isatty(), os.environ["GH"], file=sys.stderr, flush=True)
""")
    master, slave = pty.openpty()
    err_log = tmp_path / "err.log"
    with open(err_log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "credd", "run", "--env",
                                 "GH=credd://github/token", "--", sys.executable, child],
                                env=credd_env, stdin=subprocess.DEVNULL, stdout=slave, stderr=err,
                                start_new_session=True)
    os.close(slave)
    with os.fdopen(master, "r+b", buffering=0) as term:
        seen = _wait_for(term, b"out")
        assert proc.wait(15) == 0
        try:
            seen += os.read(term.fileno(), 4096)
        except OSError:
            pass
    assert f"out True {R}".encode() in seen and b"err" not in seen
    assert err_log.read_text() == f"err False {R}\n"


def test_pty_passes_window_size_changes_on(stocked, credd_env, tmp_path):
    import fcntl
    import struct
    import termios
    child = script(tmp_path, "winch.py", """
import os, signal, sys, time
done = []
def winch(*_):
    print("size", *os.get_terminal_size(), flush=True); done.append(1)
signal.signal(signal.SIGWINCH, winch)
print("start", *os.get_terminal_size(), flush=True)
deadline = time.time() + 10
while not done and time.time() < deadline:
    time.sleep(0.05)
""")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "credd", "run", "--env",
                             "GH=credd://github/token", "--", sys.executable, child],
                            env=credd_env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    try:
        with os.fdopen(master, "r+b", buffering=0) as term:
            _wait_for(term, b"start 80 24")
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
            proc.send_signal(signal.SIGWINCH)  # what the terminal sends its foreground group
            _wait_for(term, b"size 132 40")
            assert proc.wait(15) == 0
    finally:
        os.close(slave)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("how", [[], ["--via-agent"]], ids=["local", "via-agent"])
def test_many_secrets_and_megabytes_of_output_are_masked_exactly(stocked, credd_cmd, tmp_path,
                                                                 how):
    """Enough secrets for the compiled matcher (built while the child starts) and output in
    large, uneven writes, secrets straddling the 1 MiB reads: the same as masking it whole
    (the agent masks each value's encoded forms too)."""
    from credd.redact import encoded_forms
    from tests.scripting.test_mask import reference
    values = [f"bulk-secret-{i:02d}-" + "k7Q" * (i % 7 + 1) for i in range(40)]
    for i, value in enumerate(values):
        stocked.set(f"bulk/{i:02d}", value=value)
    env_file = tmp_path / "bulk.env"
    env_file.write_text("".join(f"S{i}=credd://bulk/{i:02d}\n" for i in range(40)))
    raw = tmp_path / "raw.out"
    child = script(tmp_path, "bulk.py", """
import os, random, sys
rng = random.Random(5)
values = [os.environ[f"S{i}"].encode() for i in range(40)]
parts, size = [], 0
while size < 3_500_000:
    if rng.random() < 0.01:
        part = rng.choice(values)
    else:
        part = bytes(rng.choices(b"abcdefk7Q-0123 \\n", k=rng.randint(1, 300)))
    parts.append(part)
    size += len(part)
for at in (1 << 20, 2 << 20, 3 << 20):  # a secret across each 1 MiB boundary
    parts.insert(0, values[at % 40])
data = b"".join(parts)
for at in (1 << 20, 2 << 20, 3 << 20):
    v = values[at % 40]
    data = data[:at - 5] + v + data[at - 5 + len(v):]
open(sys.argv[1], "wb").write(data)
pos = 0
while pos < len(data):
    n = rng.choice((1, 700, 65536, 700_000, 1_500_000))
    os.write(1, data[pos:pos + n])
    pos += n
os.write(2, data[:100_000])
""")
    r = credd_cmd("run", *how, "--env-file", str(env_file), "--", sys.executable, child,
                  str(raw), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    data = raw.read_bytes()
    secrets = ([v.encode() for v in values] if not how
               else sorted({form for v in values for form in encoded_forms(v)}))
    expected = reference(data, secrets)
    assert r.stdout == expected
    assert r.stderr == reference(data[:100_000], secrets)
    assert expected.count(REPLACEMENT) > 100


def _pump_child(tmp_path, body: str, secrets: list[str], *, threaded: bool,
                masker_factory=None) -> bytes:
    """Run a child with piped stdout and stderr through runner.pump into one pipe."""
    from credd import runner
    from credd.mask import Masker, Patterns
    child = script(tmp_path, "pumped.py", body)
    proc = subprocess.Popen([sys.executable, child], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    r, w = os.pipe()
    patterns = Patterns(secrets, background=True)
    make = masker_factory or (lambda: Masker(patterns))
    routes = {proc.stdout.fileno(): (w, make()), proc.stderr.fileno(): (w, make())}
    chunks = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(r, 65536), b"")))
    reader.start()
    try:
        runner.pump(routes, lambda: proc.poll() is not None, chunk=runner.PIPE_CHUNK,
                    threaded=threaded)
        proc.wait(15)
    finally:
        os.close(w)
        reader.join(15)
        os.close(r)
        proc.stdout.close()
        proc.stderr.close()
    return b"".join(chunks)


def test_threaded_pump_keeps_the_order_between_stdout_and_stderr(tmp_path):
    body = """
import os, sys, time
for i in range(6):
    os.write(1 + i % 2, b"piece %d secret-value-%d\\n" % (i, i))
    time.sleep(0.05)
"""
    secrets = [f"secret-value-{i}" for i in range(12)]  # more than FEW: compiled matcher
    expected = "".join(f"piece {i} {R}\n" for i in range(6)).encode()
    assert _pump_child(tmp_path, body, secrets, threaded=True) == expected
    assert _pump_child(tmp_path, body, secrets, threaded=False) == expected


def test_threaded_pump_raises_what_masking_raised(tmp_path):
    from credd.mask import Masker

    class Broken(Masker):
        def feed(self, data):
            raise RuntimeError("masking failed")

    body = "import os\nos.write(1, b'x' * 100000)\n"
    with pytest.raises(RuntimeError, match="masking failed"):
        _pump_child(tmp_path, body, ["secret-value"], threaded=True,
                    masker_factory=lambda: Broken(["secret-value"]))


def test_pty_with_many_secrets_masks_with_the_compiled_matcher(stocked, credd_env, tmp_path):
    """More than a handful of secrets: compiled on a thread after the child is forked."""
    values = [f"pty-secret-{i:02d}-" + "Zk9" * 4 for i in range(12)]
    for i, value in enumerate(values):
        stocked.set(f"ptybulk/{i:02d}", value=value)
    env_file = tmp_path / "pty.env"
    env_file.write_text("".join(f"P{i}=credd://ptybulk/{i:02d}\n" for i in range(12)))
    child = script(tmp_path, "many.py", """
import os, sys
print("tty", sys.stdout.isatty(), flush=True)
for i in range(12):
    sys.stdout.write("v " + os.environ[f"P{i}"] + " ;")
print(" done", flush=True)
""")
    text = _on_terminal(["--env-file", str(env_file), "--", sys.executable, child], credd_env,
                        lambda term: _wait_for(term, b" done"))
    assert "tty True" in text
    assert text.count(f"v {R} ;") == 12
    assert not any(value in text for value in values)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_files_are_readable_by_the_child_of_an_ordinary_user():
    """The tests run as root, whom /proc lets through anything: check the /proc/PID/fd/N
    path as uid 65534, as a child of the process holding the memfd would open it."""
    python, pythonpath = nobody_python()
    code = ("import subprocess\nfrom credd.runner import secret_files\n"
            "files = secret_files({'X': 'v4lue'})\n"
            "print(subprocess.run(['cat', files.env['X_FILE']], capture_output=True).stdout)\n")
    out = subprocess.run([*AS_NOBODY, python, "-c", code], cwd="/", capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath},
                         timeout=30)
    assert out.stdout.strip() == "b'v4lue'", out


@pytest.mark.skipif(not (shutil.which("base64") and shutil.which("xxd")),
                    reason="needs coreutils base64 and xxd")
def test_encoded_forms_of_a_secret_are_masked(stocked, credd_cmd, tmp_path):
    """`echo $X | base64`, `| xxd -p`, and the URL, JSON and upper-case hex forms a program
    prints: every form credd.forms names is concealed, and none of the value shows."""
    from credd.forms import forms
    child = script(tmp_path, "forms.py", """
import base64, json, os, sys
from urllib.parse import quote, quote_plus
v = os.environ["DBPW"]
for text in (base64.urlsafe_b64encode(v.encode()).decode(), v.encode().hex().upper(),
             quote(v, safe=""), quote_plus(v), json.dumps({"password": v})):
    print("form:", text, flush=True)
""")
    shell = ('echo "$DBPW" | base64; echo "$DBPW" | xxd -p; '
             'printf %s "$DBPW" | base64; printf %s "$DBPW" | xxd -p; '
             f'{sys.executable} {child}')
    r = credd_cmd("run", "--env", "DBPW=credd://prod db/password", "--", "sh", "-c", shell)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 9 and all(R in line for line in lines), lines
    for form in forms(DB_PASSWORD):
        assert form not in r.stdout
    assert lines[-1] == f'form: {{"password": "{R}"}}'
