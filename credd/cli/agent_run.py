"""`credd run` (and `credd inject -o`) through the agent: the client's half of `run`.

Under a `use` grant this process never holds a value (docs/grants.md). It sends
the command, its environment and the references; the agent answers
`ready`, and this side passes its stdin, stdout and stderr over the socket
(SCM_RIGHTS, on one byte), so the command the agent starts reads and writes
them itself, its output masked by the agent. On a terminal the agent runs the
command on a PTY of its own: this side puts the terminal in raw mode (restored
on every way out) so that keys, Ctrl-C included, reach the command's own line
discipline, and sends each window size change. Signals sent to `credd run` go
on to the command. It exits with the command's status (128+N for a signal N).

Standard library only, as the fast path whose frames it uses (credd.cli.fast).
"""

from __future__ import annotations

import os
import signal
import sys
from _socket import SCM_RIGHTS, SOL_SOCKET, socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from credd.cli.fast import expect, frame, read_reply
from credd.wire import FrameReader, lost, send_all

#: Signals passed on to the command (the agent accepts these and a few more).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
DEFAULT_UMASK = 0o022  # protocol.Run's default: not sent


def run(sock: socket, frames: FrameReader, argv: list[str], env: dict[str, str],
        secrets: dict[str, str]) -> int:
    """Have the agent run argv with `secrets` (variable -> reference) on our descriptors;
    returns what `credd run` exits with."""
    on_tty = os.isatty(1)
    rows, cols = _size() if on_tty else (0, 0)
    umask = _umask()
    send_all(sock, frame("run", argv=argv, env=env or None, secrets=secrets or None, cwd=_cwd(),
                         tty=on_tty or None, rows=rows or None, cols=cols or None,
                         umask=None if umask == DEFAULT_UMASK else umask))
    expect(read_reply(sock, frames), "ready")
    with _stdio() as fds:
        _send_fds(sock, fds)
    sock.settimeout(None)  # a command runs as long as it runs
    with _raw(on_tty and os.isatty(0)), _forwarding(sock, on_tty):
        reply = expect(read_reply(sock, frames), "run_exit")
    code = reply.get("code")
    return code if isinstance(code, int) else 1


def inject(sock: socket, frames: FrameReader, template: str, fd: int) -> None:
    """Have the agent render `template` into the open file `fd` (`credd inject -o` under a
    use grant): the values go from the agent to the file, never through this process."""
    send_all(sock, frame("inject", template=template))
    expect(read_reply(sock, frames), "ready")
    _send_fds(sock, (fd,))
    expect(read_reply(sock, frames), "ok")


def _send_fds(sock: socket, fds: tuple[int, ...]) -> None:
    """The descriptors the agent waits for after `ready`, on one byte (SCM_RIGHTS)."""
    try:
        sock.sendmsg([b"\0"], [(SOL_SOCKET, SCM_RIGHTS,
                                b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
    except OSError as exc:
        raise lost(exc) from None


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return 0, 0
    return size.lines, size.columns


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed under us: the agent then uses the owner's home
        return None


@contextmanager
def _stdio() -> Iterator[tuple[int, int, int]]:
    """Our stdin, stdout and stderr; /dev/null in place of one that is closed."""
    opened: list[int] = []
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            opened.append(os.open(os.devnull, os.O_RDWR))
            fds.append(opened[-1])
    try:
        yield fds[0], fds[1], fds[2]
    finally:
        for fd in opened:
            os.close(fd)


@contextmanager
def _raw(on: bool) -> Iterator[None]:
    """Our terminal in raw mode while the command has it: restored on every way out."""
    if not on:
        yield
        return
    import termios
    import tty
    saved = termios.tcgetattr(0)
    try:
        tty.setraw(0, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSAFLUSH, saved)


@contextmanager
def _forwarding(sock: socket, on_tty: bool) -> Iterator[None]:
    """Signals to us go on to the command; on a terminal, so do its size changes."""
    def forward(sig: int, _frame: FrameType | None) -> None:
        _send_quietly(sock, frame("signal", signal=int(sig)))

    def resize(_sig: int, _frame: FrameType | None) -> None:
        rows, cols = _size()
        if rows and cols:
            _send_quietly(sock, frame("resize", rows=rows, cols=cols))

    handlers: dict[int, Callable[[int, FrameType | None], None]] = dict.fromkeys(FORWARDED, forward)
    if on_tty:
        handlers[signal.SIGWINCH] = resize
    saved = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _send_quietly(sock: socket, data: bytes) -> None:
    """From a signal handler: a lost agent is reported by the read that waits for it."""
    try:
        sock.sendall(data)
    except OSError:
        pass
