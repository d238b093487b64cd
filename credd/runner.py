"""Running a program with secrets in its environment and its output masked (`credd run`).

Three ways, chosen by `run()`:

- no masking, no files: credd `exec`s the program, which then *is* the
  process (exit code, signals and stdin untouched);
- output to pipes (stdout is not a terminal): the child's stdout and stderr
  are pipes, each passed through its own `Masker`; stdin is inherited;
- output to a terminal: the child runs on a new pseudo-terminal, so colours,
  line editing and full-screen programs work; credd copies the keyboard to it
  (our terminal in raw mode, Ctrl-C reaching the child through its own line
  discipline) and the masked screen output back, and passes window size
  changes on.

Signals sent to credd (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2)
are forwarded to the child, except those the terminal already delivered to
it (credd and the child in the terminal's foreground group). credd exits
with the child's code, or 128+N when a signal N killed it.
"""

from __future__ import annotations

import errno
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile

from credd.errors import BadRequest, NotFound
from credd.mask import Masker, Patterns

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
CHUNK = 1 << 16


def write_secret_files(secrets: dict[str, str]) -> tuple[str, dict[str, str]]:
    """One 0600 file per variable in a fresh 0700 directory; returns it and VAR_FILE vars."""
    directory = tempfile.mkdtemp(prefix="credd-run-")
    os.chmod(directory, 0o700)
    env = {}
    for var, value in secrets.items():
        path = os.path.join(directory, var)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value)
        env[f"{var}_FILE"] = path
    return directory, env


def run(argv: list[str], env: dict[str, str], secrets: list[str], *, mask: bool = True,
        files_dir: str | None = None) -> int:
    """Run argv with env; returns the exit status credd should exit with."""
    try:
        if not mask and files_dir is None:
            _exec(argv, env)
        if not mask:
            return _supervise(argv, env)
        if os.isatty(sys.stdout.fileno()):
            return _run_on_pty(argv, env, secrets)
        return _run_on_pipes(argv, env, secrets)
    finally:
        if files_dir is not None:
            shutil.rmtree(files_dir, ignore_errors=True)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        raise NotFound(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise BadRequest(f"cannot execute {argv[0]}: permission denied") from None


def _spawn(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, env=env, **kwargs)
    except FileNotFoundError:
        raise NotFound(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise BadRequest(f"cannot execute {argv[0]}: permission denied") from None


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

    def __init__(self, proc: subprocess.Popen, *, from_terminal: bool) -> None:
        self.proc, self.from_terminal = proc, from_terminal
        self.saved = {}

    def _handle(self, sig: int, _frame) -> None:
        if self.from_terminal and _terminal_delivered(sig):
            return
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "_Forwarder":
        for sig in FORWARDED:
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _supervise(argv: list[str], env: dict[str, str]) -> int:
    """No masking, but credd must outlive the child (to remove --files)."""
    proc = _spawn(argv, env)
    with _Forwarder(proc, from_terminal=True):
        return _exit_status(proc.wait())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _run_on_pipes(argv: list[str], env: dict[str, str], secrets: list[str]) -> int:
    patterns = Patterns(secrets)
    proc = _spawn(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    streams = {proc.stdout.fileno(): (proc.stdout, sys.stdout.fileno(), Masker(patterns)),
               proc.stderr.fileno(): (proc.stderr, sys.stderr.fileno(), Masker(patterns))}
    with _Forwarder(proc, from_terminal=True), selectors.DefaultSelector() as sel:
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                pipe, out_fd, masker = streams[key.fd]
                data = os.read(key.fd, CHUNK)
                try:
                    _write_all(out_fd, masker.feed(data) if data else masker.flush())
                except BrokenPipeError:
                    data = b""  # nobody reads us: close the child's end too (it gets SIGPIPE)
                if not data:
                    sel.unregister(key.fd)
                    pipe.close()
        return _exit_status(proc.wait())


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


def _controlling_tty() -> None:
    """In the child, after setsid: the pty on fd 1 becomes its controlling terminal."""
    import fcntl
    import termios
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


def _run_on_pty(argv: list[str], env: dict[str, str], secrets: list[str]) -> int:
    import termios
    import tty

    master, slave = os.openpty()
    out_fd = sys.stdout.fileno()
    _set_window_size(slave, _window_size(out_fd))
    interactive = os.isatty(0)
    try:
        proc = _spawn(argv, env, stdin=slave if interactive else None, stdout=slave, stderr=slave,
                      start_new_session=True, preexec_fn=_controlling_tty)
    finally:
        os.close(slave)
    saved_tty = termios.tcgetattr(0) if interactive else None
    old_winch = signal.signal(signal.SIGWINCH,
                              lambda *_: _set_window_size(master, _window_size(out_fd)))
    try:
        if interactive:
            tty.setraw(0, termios.TCSANOW)
        with _Forwarder(proc, from_terminal=False):
            _pump_pty(master, proc, out_fd, Masker(secrets), interactive)
        return _exit_status(proc.wait())
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved_tty is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved_tty)
        os.close(master)


def _pump_pty(master: int, proc: subprocess.Popen, out_fd: int, masker: Masker,
              interactive: bool) -> None:
    """Keyboard → pty, pty → masked screen, until the child is gone and its output drained."""
    with selectors.DefaultSelector() as sel:
        sel.register(master, selectors.EVENT_READ)
        if interactive:
            sel.register(0, selectors.EVENT_READ)
        while True:
            exited = proc.poll() is not None
            events = sel.select(0 if exited else 0.2)
            if exited and not events:
                break
            for key, _ in events:
                if key.fd == 0:
                    data = os.read(0, CHUNK)
                    if data:
                        _write_all(master, data)
                    else:
                        sel.unregister(0)
                    continue
                try:
                    data = os.read(master, CHUNK)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""  # Linux: every slave fd is closed
                if not data:
                    _write_all(out_fd, masker.flush())
                    return
                _write_all(out_fd, masker.feed(data))
    _write_all(out_fd, masker.flush())
