"""A command the agent runs, its masked output captured through pipes (`credd mcp`).

`credd run` under a `use` grant hands the agent its own terminal or stdio;
an MCP tool has neither to give, and must hand the model text. So this side
passes the agent /dev/null for stdin and the write ends of two pipes for
stdout and stderr (SCM_RIGHTS, after `ready`): the command writes into the
agent's masking thread, which writes the masked bytes into our pipes. The
values never reach this process, only what the agent let through.

What is kept is bounded (`limit` bytes a stream: its first and last halves,
the middle counted, never held), since a model's context is small and a
command's output is not. A command still running at its deadline gets
SIGTERM, then SIGKILL; output that keeps coming from what it left running is
read for a moment after its exit status, then no more.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from _socket import socket
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TypeVar

from credd import protocol as p
from credd.cli.agent_run import send_fds
from credd.client_core import hello, welcomed
from credd.errors import ProtocolError, Unavailable, from_code
from credd.wire import FrameReader, connect, send_all

LIMIT = 64 * 1024     # bytes kept of each stream
KILL_AFTER = 5.0      # seconds between SIGTERM and SIGKILL at the deadline
DRAIN = 1.0           # seconds output is still read after the exit status
_CHUNK = 65536
M = TypeVar("M", bound=p.Response)


@dataclass(frozen=True)
class Output:
    """What was kept of one stream: `text` (UTF-8, undecodable bytes replaced), of `size`
    bytes in all, `omitted` of them from the middle."""

    text: str
    size: int
    omitted: int


@dataclass(frozen=True)
class Captured:
    code: int           # the exit status, or 128+N for signal N (as `credd run` exits)
    signal: int         # N, when a signal ended it
    stdout: Output
    stderr: Output
    timed_out: bool     # it was still running at its deadline, and was ended


class _Kept:
    """The first and last `limit // 2` bytes of a stream, and how many there were."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > self.half:
            del self.tail[:len(self.tail) - self.half]

    def output(self) -> Output:
        omitted = self.size - len(self.head) - len(self.tail)
        gap = f"\n[... {omitted} bytes not shown ...]\n".encode() if omitted else b""
        text = bytes(self.head + gap + self.tail).decode("utf-8", "replace")
        return Output(text=text, size=self.size, omitted=omitted)


def run(argv: list[str], secrets: dict[str, str], *, env: dict[str, str], cwd: str,
        timeout: float, socket_path: str | None = None, client: str = "credd-python",
        source: str = "", limit: int = LIMIT) -> Captured:
    """Have the agent run argv with `secrets` (variable -> credd:// reference); its masked
    output, bounded. Errors are credd's (not found, denied, ...), raised before it runs."""
    with closing(connect(socket_path)) as sock:
        frames = FrameReader()
        welcomed(_ask(sock, frames, hello(client, source), p.Welcome))
        _ask(sock, frames, p.Run(argv=argv, env=env, secrets=secrets, cwd=cwd), p.Ready)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            send_fds(sock, (null, out_w, err_w))
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        try:
            return _collect(sock, frames, out_r, err_r, timeout, limit)
        finally:
            os.close(out_r)
            os.close(err_r)


def _collect(sock: socket, frames: FrameReader, out_r: int, err_r: int, timeout: float,
             limit: int) -> Captured:
    """Read both pipes and the socket until the exit status and the pipes' end (or DRAIN
    after the status); at the deadline, SIGTERM, then SIGKILL."""
    kept = {out_r: _Kept(limit), err_r: _Kept(limit)}
    deadline, signals = time.monotonic() + timeout, [signal.SIGTERM, signal.SIGKILL]
    status: p.RunExit | None = None
    with selectors.DefaultSelector() as sel:
        for fd in (sock.fileno(), out_r, err_r):
            sel.register(fd, selectors.EVENT_READ)
        while status is None or any(fd in sel.get_map() for fd in kept):
            now = time.monotonic()
            if now >= deadline:
                if status is not None:
                    break  # what the command left running still writes: enough
                if not signals:
                    raise Unavailable("the command is still running after SIGKILL; it ends "
                                      "with its grant or the agent")
                _signal(sock, signals.pop(0))
                deadline = now + KILL_AFTER
            for key, _ in sel.select(deadline - now):
                if key.fd in kept:
                    data = os.read(key.fd, _CHUNK)
                    if data:
                        kept[key.fd].add(data)
                    else:
                        sel.unregister(key.fd)
                    continue
                sel.unregister(key.fd)
                status = _ended(sock, frames)
                deadline = time.monotonic() + DRAIN
    return Captured(code=status.code, signal=status.signal, stdout=kept[out_r].output(),
                    stderr=kept[err_r].output(), timed_out=len(signals) < 2)


def _ended(sock: socket, frames: FrameReader) -> p.RunExit:
    sock.settimeout(30.0)  # the agent sends whole frames: this only bounds a broken one
    return _reply(frames.receive(sock), p.RunExit)


def _signal(sock: socket, sig: int) -> None:
    try:
        sock.sendall(p.encode(p.Signal(signal=int(sig))))
    except OSError:
        pass  # the agent went away: the read of the status says so


def _ask(sock: socket, frames: FrameReader, request: p.Asks[Any], kind: type[M]) -> M:
    send_all(sock, p.encode(request))
    return _reply(frames.receive(sock), kind)


def _reply(body: bytes | bytearray, kind: type[M]) -> M:
    """The reply `kind`, an `error` raised as its exception, anything else ProtocolError."""
    reply = p.decode_response(body)
    if isinstance(reply, p.Error):
        raise from_code(reply.code, reply.message, names=reply.names,
                        retry_after=reply.retry_after)
    if not isinstance(reply, kind):
        raise ProtocolError(f"the agent answered with {p.tag_of(type(reply))!r} where "
                            f"{p.tag_of(kind)!r} was expected")
    return reply
