"""Running a program with secrets in its environment and its output masked (`credd run`).

Three ways, chosen by `run()`:

- no masking, no files: credd `exec`s the program, which then *is* the
  process (exit code, signals and stdin untouched);
- output to pipes (stdout is not a terminal): the child's stdout and stderr
  are pipes (widened to 1 MiB on Linux), each passed through its own
  `Masker`; a writer thread masks and writes while the next piece is read;
  stdin is inherited;
- output to a terminal: the child runs on a new pseudo-terminal, so colours,
  line editing and full-screen programs work; credd copies the keyboard to it
  (our terminal in raw mode, Ctrl-C reaching the child through its own line
  discipline) and the masked screen output back, and passes window size
  changes on. A stderr redirected away from the terminal stays a separate,
  masked pipe.

The child is started first and the secrets, in every encoded form they
leak in (credd.forms: base64, hex, URL, JSON), are compiled for masking
while it starts (`form_patterns(..., background=True)`); nothing it writes is
shown before that is done.

Signals sent to credd (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2)
are forwarded to the child, except those the terminal already delivered to
it (credd and the child in the terminal's foreground group). credd exits
with the child's code, or 128+N when a signal N killed it.

A supervisor (credd.restarter, `--restart-on-change`) follows a run through
`Hooks`: it learns of the child and of the signals credd got, and makes the
maskers; a run with hooks never `exec`s.
The agent's `run` (a `use` grant's way to use secrets: credd/daemon/run_handler.py)
wires and pumps the same way, with the caller's descriptors in place of ours
(`Wiring`, `pump`): one masking pipeline for both.
"""

from __future__ import annotations

import errno
import os
import queue
import select
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from credd.errors import BadRequest, CreddError
from credd.forms import form_patterns
from credd.mask import Masker, Patterns

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
#: source fd -> (destination fd, its Masker, or None to copy unmasked: the keyboard)
_Routes = dict[int, tuple[int, Masker | None]]
CHUNK = 1 << 16          # per read from a terminal or the keyboard
PIPE_CHUNK = 1 << 20     # per read from the child's output pipes, widened to this where possible


class CannotRun(CreddError):
    """The command could not be started: exit 127 when it is not found, 126 when it cannot
    be executed, as `env`, shells and `op run` do, so callers tell it from the command's own
    failure. It is about the command, never the vault: no hint about entries."""

    code = "cannot_run"  # never on the wire

    def __init__(self, program: str, exc: OSError) -> None:
        missing = isinstance(exc, FileNotFoundError)
        super().__init__(f"{program}: {'command not found' if missing else exc.strerror}")
        self.exit_code = 127 if missing else 126


class Hooks:
    """What a supervisor learns of a run, and the maskers it makes; these defaults do nothing."""

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        """The child is running."""

    def signalled(self, sig: int) -> None:
        """credd got `sig` (it goes on to the child as usual)."""

    def masker(self, patterns: Patterns) -> Masker:
        """The masker of one of the child's output streams."""
        return Masker(patterns)


NO_HOOKS = Hooks()


class SecretFiles:
    """The `VAR_FILE` variables of `credd run --files`, and what holds their contents."""

    def __init__(self, env: dict[str, str], fds: tuple[int, ...] = (),
                 directory: str | None = None) -> None:
        self.env = env              # VAR_FILE -> path, for the child's environment
        self.fds = fds              # memfds (Linux), named in the paths by our pid
        self.directory = directory  # the tmpfs fallback, removed after the child

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = ()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def refill(self, secrets: dict[str, str]) -> None:
        """New contents under the same paths (for a child told to re-read them): the same
        variables, in the order `secret_files` got them."""
        if self.directory is None:
            fresh = _memfds(secrets)
            for old, new in zip(self.fds, fresh.fds, strict=True):
                os.dup2(new, old, inheritable=False)  # /proc/<pid>/fd/<old> is the new file
            fresh.close()
            return
        for var, value in secrets.items():
            path = os.path.join(self.directory, var)
            tmp = f"{path}.new"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, value.encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)


def secret_files(secrets: dict[str, str]) -> SecretFiles:
    """One read-only, memory-backed file per variable, which never reaches a disk.

    Linux: a sealed memfd per secret, given to the child as /proc/<credd's pid>/fd/N.
    Not /proc/self (the child's own), and not /dev/fd/N, which a program that closes
    inherited descriptors (Python's subprocess does) could not pass on: this path works
    for the child and everything it starts while `credd run` lives, which it does until
    the child ends (with --no-mask credd execs the child: same pid, the fds inherited).
    A `kill -9` of credd leaves no file behind; there never was one. Elsewhere, or when
    memfd_create is refused: 0600 files in a 0700 directory in $XDG_RUNTIME_DIR (a
    tmpfs), removed after the child, and by the next `credd run --files` if credd was
    killed. With neither, --files is refused rather than written to a disk.
    """
    if hasattr(os, "memfd_create"):
        try:
            return _memfds(secrets)
        except OSError:  # ENOSYS, or a seccomp filter: the runtime dir then
            pass
    return _runtime_dir_files(secrets)


def _memfds(secrets: dict[str, str]) -> SecretFiles:
    import fcntl
    env, fds = {}, []
    try:
        for var, value in secrets.items():
            fd = os.memfd_create(f"credd:{var}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            fds.append(fd)
            _write_all(fd, value.encode())
            os.fchmod(fd, 0o400)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)  # read-only for everyone
            env[f"{var}_FILE"] = f"/proc/{os.getpid()}/fd/{fd}"
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return SecretFiles(env, tuple(fds))


RUN_DIR_PREFIX = "run-"


def _runtime_dir_files(secrets: dict[str, str]) -> SecretFiles:
    import tempfile

    from credd.paths import ensure_private_dir
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise BadRequest("--files needs memory-backed files: this system has no memfd_create "
                         "and XDG_RUNTIME_DIR is unset; set it to a tmpfs directory of yours "
                         "(never a disk-backed /tmp), or pass the secrets in the environment")
    parent = ensure_private_dir(os.path.join(runtime, "credd"))
    _remove_stale(parent)
    directory = tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=parent)
    env = {}
    try:
        for var, value in secrets.items():
            path = os.path.join(directory, var)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, value.encode())
            finally:
                os.close(fd)
            env[f"{var}_FILE"] = path
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return SecretFiles(env, directory=directory)


def _remove_stale(parent: str) -> None:
    """Directories of `credd run` processes that were killed before they could clean up."""
    for name in os.listdir(parent):
        pid = name[len(RUN_DIR_PREFIX):].partition("-")[0]
        if name.startswith(RUN_DIR_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(argv: list[str], env: dict[str, str], secrets: list[str], *, mask: bool = True,
        files: SecretFiles | None = None, hooks: Hooks = NO_HOOKS) -> int:
    """Run argv with env; returns the exit status credd should exit with."""
    try:
        if not mask and hooks is NO_HOOKS and (files is None or files.directory is None):
            _exec(argv, env, files.fds if files else ())
        if not mask:
            return _supervise(argv, env, hooks)
        return _run_wired(argv, env, secrets, hooks, pty=os.isatty(sys.stdout.fileno()))
    finally:
        if files is not None:
            files.close()


def _exec(argv: list[str], env: dict[str, str], keep: tuple[int, ...] = ()) -> None:
    """Become the program (same pid); the descriptors in `keep` go with us."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd in keep:
        os.set_inheritable(fd, True)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        raise CannotRun(argv[0], exc) from None


def _spawn(argv: list[str], env: dict[str, str], hooks: Hooks, **kwargs: Any
           ) -> subprocess.Popen[bytes]:
    try:
        proc = subprocess.Popen(argv, env=env, **kwargs)
    except OSError as exc:
        raise CannotRun(argv[0], exc) from None
    hooks.started(proc)
    return proc


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _terminal_delivered(sig: int) -> bool:
    """Did the terminal already send `sig` to the child (same foreground process group)?"""
    if sig not in TERMINAL_SIGNALS:
        return False
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


class _Forwarder:
    """Installs handlers passing signals on to the child while it runs."""

    def __init__(self, proc: subprocess.Popen[bytes], hooks: Hooks, *,
                 from_terminal: bool) -> None:
        self.proc, self.hooks, self.from_terminal = proc, hooks, from_terminal
        self.saved: dict[int, Any] = {}

    def _handle(self, sig: int, _frame: FrameType | None) -> None:
        self.hooks.signalled(sig)
        if self.from_terminal and _terminal_delivered(sig):
            return
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> _Forwarder:
        for sig in FORWARDED:
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _supervise(argv: list[str], env: dict[str, str], hooks: Hooks) -> int:
    """No masking, but credd must outlive the child (to remove --files' directory, or to
    restart it)."""
    proc = _spawn(argv, env, hooks)
    with _Forwarder(proc, hooks, from_terminal=True):
        return _exit_status(proc.wait())


def _write_all(fd: int, data: bytes) -> None:
    """All of `data`, also to a descriptor left non-blocking by whoever shares it (the
    agent writes to its caller's stdout as it is: changing its flags would change the
    caller's)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def _widen(fd: int) -> None:
    """A bigger pipe (Linux): fewer, larger reads and writes while a lot is output."""
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_CHUNK)
    except (ImportError, AttributeError, OSError):
        pass  # another OS, or above /proc/sys/fs/pipe-max-size: the default size works too


class Wiring:
    """How a command's standard streams meet its caller's (`stdio`: the caller's stdin,
    stdout and stderr), for `credd run` here and for a `run` the agent does.

    On pipes, or with `pty` on a new pseudo-terminal (the caller's stdout is one):
    the command's stdout there, its stdin too when the caller's stdin is a terminal
    (the keyboard is then copied to it unmasked), its stderr too unless the caller's
    stderr was redirected away (then a masked pipe of its own). `child` is what the
    command gets as fds 0-2. The Wiring owns every descriptor it made: `close_child`
    once the command has its ends, `close` at the end.
    """

    def __init__(self, stdio: tuple[int, int, int], *, pty: bool) -> None:
        stdin, stdout, stderr = stdio
        self.master: int | None = None
        self.outputs: dict[int, int] = {}            # source -> destination, masked
        self.keyboard: tuple[int, int] | None = None  # (source, destination), unmasked
        self._child_ends: set[int] = set()           # ours until the command has them
        self._sources: set[int] = set()              # ours until the pump is done with them
        # pipes carry big writes: larger reads, and masking on a thread of its own
        self.chunk, self.threaded = (CHUNK, False) if pty else (PIPE_CHUNK, True)
        try:
            if pty:
                self.child = self._terminal(stdin, stdout, stderr)
            else:
                self.child = (stdin, self._pipe_to(stdout), self._pipe_to(stderr))
        except BaseException:
            self.close()
            raise

    def _terminal(self, stdin: int, stdout: int, stderr: int) -> tuple[int, int, int]:
        self.master, slave = os.openpty()
        self._sources.add(self.master)
        self._child_ends.add(slave)
        _set_window_size(slave, _window_size(stdout))
        self.outputs[self.master] = stdout
        err = slave if os.isatty(stderr) else self._pipe_to(stderr)
        if not os.isatty(stdin):
            return stdin, slave, err
        self.keyboard = (stdin, self.master)
        return slave, slave, err

    def _pipe_to(self, dest: int) -> int:
        """A pipe for one output stream: its write end for the command."""
        r, w = os.pipe()
        self._sources.add(r)
        self._child_ends.add(w)
        _widen(r)
        self.outputs[r] = dest
        return w

    def routes(self, masker: Callable[[], Masker]) -> _Routes:
        """What `pump` copies: each output through a Masker of its own, the keyboard as is."""
        routes: _Routes = {src: (dest, masker()) for src, dest in self.outputs.items()}
        if self.keyboard is not None:
            routes[self.keyboard[0]] = (self.keyboard[1], None)
        return routes

    def resize(self, size: bytes | None) -> None:
        """A new window size (TIOCSWINSZ bytes) for the terminal, if there is one."""
        if self.master is not None and self.master in self._sources:
            _set_window_size(self.master, size)

    def close_source(self, fd: int) -> None:
        """Done with a source: closing a pipe's read end (or the terminal) tells the
        command its reader left (SIGPIPE, or a hang-up), instead of letting it block."""
        if fd in self._sources:
            self._sources.discard(fd)
            os.close(fd)

    def close_child(self) -> None:
        for fd in self._child_ends:
            os.close(fd)
        self._child_ends.clear()

    def close(self) -> None:
        self.close_child()
        for fd in list(self._sources):
            self.close_source(fd)


def _run_wired(argv: list[str], env: dict[str, str], secrets: list[str], hooks: Hooks, *,
               pty: bool) -> int:
    """The command on pipes or on a terminal of ours (see Wiring), its output masked."""
    wiring = Wiring((0, 1, 2), pty=pty)
    try:
        stdin, stdout, stderr = wiring.child
        proc = _spawn(argv, env, hooks, stdin=stdin, stdout=stdout, stderr=stderr,
                      start_new_session=pty, preexec_fn=_controlling_tty if pty else None)
        wiring.close_child()
        # compiled after the fork (no threads to fork with) while the child starts;
        # nothing it writes is shown before that is done
        patterns = form_patterns(secrets, background=True)
        routes = wiring.routes(lambda: hooks.masker(patterns))
        with _keyboard(wiring), _Forwarder(proc, hooks, from_terminal=not pty):
            pump(routes, lambda: proc.poll() is not None, on_gone=wiring.close_source,
                 chunk=wiring.chunk, threaded=wiring.threaded)
        return _exit_status(proc.wait())
    finally:
        wiring.close()


@contextmanager
def _keyboard(wiring: Wiring) -> Iterator[None]:
    """While the command runs on our terminal: ours in raw mode (keys, Ctrl-C included, go
    to the command's own line discipline), window size changes passed on."""
    if wiring.master is None:
        yield
        return
    import termios
    import tty
    saved = termios.tcgetattr(0) if wiring.keyboard is not None else None
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: wiring.resize(_window_size(1)))
    try:
        if saved is not None:
            tty.setraw(0, termios.TCSANOW)
        yield
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)


def _window_size(fd: int) -> bytes | None:
    import fcntl
    import termios
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def _set_window_size(fd: int, size: bytes | None) -> None:
    import fcntl
    import termios
    if size is not None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)


def window_size(rows: int, cols: int) -> bytes:
    """TIOCSWINSZ bytes for a size in characters."""
    return struct.pack("HHHH", rows, cols, 0, 0)


def _controlling_tty() -> None:
    """In the child, after setsid: the pty on fd 1 becomes its controlling terminal."""
    import fcntl
    import termios
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


def _read(fd: int, chunk: int = CHUNK) -> bytes | None:
    """What there is (b"": the end; None: nothing after all, on a non-blocking source)."""
    try:
        return os.read(fd, chunk)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""  # a pty master on Linux once every slave fd is closed
        raise


class _Writer:
    """Masks and writes the child's output on a thread of its own, piece by piece in the
    order it was read (stdout and stderr interleave as they would unthreaded), so that the
    pump reading the next piece overlaps masking and writing this one: os.read, the scan
    and os.write all release the GIL. At most `depth` pieces wait: memory stays bounded."""

    def __init__(self, depth: int = 4) -> None:
        self.queue: queue.Queue[tuple[int, int, Masker, bytes] | None] = queue.Queue(depth)
        self.gone: set[int] = set()              # sources whose destination is gone (EPIPE)
        self.error: BaseException | None = None  # anything else, raised by the pump
        self.thread = threading.Thread(target=self._run, name="credd-run-writer", daemon=True)
        self.thread.start()

    def put(self, source: int, dest: int, masker: Masker, data: bytes) -> None:
        """The next piece read from `source`; b"" ends it (what the masker holds goes out)."""
        self.queue.put((source, dest, masker, data))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            source, dest, masker, data = item
            if source in self.gone or self.error is not None:
                continue
            try:
                _write_all(dest, masker.feed(data) if data else masker.flush())
            except OSError:  # EPIPE: our reader left
                self.gone.add(source)
            except BaseException as exc:
                self.error = exc

    def finish(self) -> None:
        """Wait until everything put is written."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def pump(routes: _Routes, exited: Callable[[], bool], *,
         on_gone: Callable[[int], None] = lambda fd: None, chunk: int = CHUNK,
         threaded: bool = False) -> None:
    """Copy each source fd to its destination, masked where a Masker is given, until the
    command's output ends, or it has `exited()` and nothing more is waiting.

    A source whose destination is gone (EPIPE: `| head`) is given to `on_gone` at
    once (which closes it), so the command gets SIGPIPE instead of blocking on a full
    pipe. `threaded`: masking and writing happen on a `_Writer` thread.
    """
    open_outputs = {fd for fd, (_dest, masker) in routes.items() if masker is not None}
    writer = _Writer() if threaded and open_outputs else None

    def deliver(fd: int, data: bytes) -> bool:
        """Pass on (b"": the end of the stream); False when the destination is gone."""
        dest, masker = routes[fd]
        if writer is not None and masker is not None:
            if writer.error is not None:
                raise writer.error
            if fd in writer.gone:
                return False
            writer.put(fd, dest, masker, data)
            return True
        try:
            if masker is None:
                _write_all(dest, data)
            else:
                _write_all(dest, masker.feed(data) if data else masker.flush())
        except OSError:  # EPIPE: our reader left; EIO: the child's pty is gone
            return False
        return True

    with selectors.DefaultSelector() as sel:
        for fd in routes:
            sel.register(fd, selectors.EVENT_READ)
        while open_outputs:
            done = exited()
            events = sel.select(0 if done else 0.2)
            if done and not events:
                break
            for key, _ in events:
                data = _read(key.fd, chunk)
                if data is None:
                    continue
                if not deliver(key.fd, data) or not data:
                    sel.unregister(key.fd)
                    open_outputs.discard(key.fd)
                    if routes[key.fd][1] is not None:
                        on_gone(key.fd)
    for fd in open_outputs:  # the child is gone; what its maskers still hold goes out
        deliver(fd, b"")
    if writer is not None:
        writer.finish()
