"""Who is on the other end of a connection, asked of the kernel before a byte is read.

The uid comes from SO_PEERCRED (Linux) or getpeereid (macOS): the kernel's
record of who connected, not anything the peer says. Only the agent's own uid
is served, not even root. Naming the peer's program (psutil) is for the audit
trail only and happens lazily, the first time a record needs it.

Two names are kept. `exe` is the kernel's (the executable file). `program` is
what a person would recognise (`credd get`, `git`, `pytest`, `python3
tool.py`), read from the peer's command line: never the whole command line,
which can hold secrets, only the program and, for credd itself, the
subcommand. A process can rewrite its own command line, and the name a client
gives in `hello` is whatever it says, so `program` is a label for people,
never a fact to decide anything on.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import struct
import sys
from dataclasses import dataclass, field

_UCRED = struct.Struct("3i")  # pid, uid, gid
_SOL_LOCAL, _LOCAL_PEERPID = 0, 2  # macOS <sys/un.h>
_MAX_PROGRAM = 80


@dataclass
class Peer:
    uid: int
    pid: int | None
    #: What the client called itself in `hello` (e.g. `credd-cli`): shown when the process
    #: cannot be read, never trusted.
    client: str = ""
    #: What drives the client, as its hello said (`mcp`); a label for the trail, not trusted.
    source: str = ""
    _named: tuple[str, str] | None = field(default=None, repr=False)  # (exe, program)

    @property
    def exe(self) -> str:
        """The peer's executable, or "" when it cannot be known (it exited, or is hidden)."""
        return self._name()[0]

    @property
    def program(self) -> str:
        """The peer's program as a person would name it (see the module docstring)."""
        return self._name()[1]

    def _name(self) -> tuple[str, str]:
        if self._named is None:
            exe, argv = _process_of(self.pid)
            self._named = exe, program_name(argv, exe) or _printable(self.client)
        return self._named


def credentials(sock: socket.socket) -> Peer:
    """The connected peer's uid and pid; OSError when the kernel cannot tell (fail closed)."""
    if sys.platform.startswith("linux"):
        pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        return Peer(uid=uid, pid=pid or None)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()  # type: ignore[unreachable,unused-ignore]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno(), "getpeereid failed")
    try:
        pid = struct.unpack("i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0] or None
    except OSError:
        pid = None
    return Peer(uid=uid.value, pid=pid)


def is_allowed(peer: Peer) -> bool:
    return peer.uid == os.geteuid()


def _process_of(pid: int | None) -> tuple[str, list[str]]:
    """(executable, command line) of a process; empty when it cannot be read."""
    if not pid:
        return "", []
    import psutil  # the agent's, lazily: records only
    try:
        process = psutil.Process(pid)
    except (psutil.Error, OSError):
        return "", []
    try:
        exe = process.exe()
    except (psutil.Error, OSError):
        exe = ""
    try:
        argv = process.cmdline()
    except (psutil.Error, OSError):
        argv = []
    return exe, argv


# ---------------------------------------------------------------- program names

_PYTHON = re.compile(r"(python|pypy)[0-9.]*[dmu]?")
#: Interpreters named with their script: `bash deploy.sh`, `node build.js`.
_SCRIPTED = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "node", "ruby", "perl", "php"})
_PYTHON_VALUE_FLAGS = "cmWX"  # -c CMD, -m MOD, -W ARG, -X OPT (also glued: -Wignore)
_MODULE = re.compile(r"[A-Za-z_][\w.]*")


def program_name(argv: list[str], exe: str = "") -> str:
    """The program of a command line as a person would name it, without its arguments.

    `python3 -m pytest -k x` → `python3 -m pytest`; `/venv/bin/python /venv/bin/pytest`
    → `pytest`; `python3 ./tool.py --token T` → `python3 tool.py`; `credd get NAME`
    (any way it is started) → `credd get`; `bash -c '...'` → `bash -c`; `git` → `git`.
    """
    first = (_base(argv[0]) if argv else "") or _base(exe)
    if not first:
        return ""
    if _PYTHON.fullmatch(first):
        name = _python(first, argv[1:])
    elif first in _SCRIPTED:
        name = _scripted(first, argv[1:])
    elif first == "credd":
        name = _credd(argv[1:])
    else:
        name = first
    return _printable(name)


def _base(path: str) -> str:
    return os.path.basename(path).lstrip("-")  # "-bash": a login shell


def _python(interpreter: str, args: list[str]) -> str:
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-":
            return f"{interpreter} -"
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        if arg.startswith("--"):
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        flags, i = arg[1:], i + 1
        for j, flag in enumerate(flags):
            if flag in _PYTHON_VALUE_FLAGS:
                glued = flags[j + 1:]
                value = glued or (args[i] if i < len(args) else "")
                i += 0 if glued else 1
                if flag == "c":
                    return f"{interpreter} -c"
                if flag == "m":
                    return _module(interpreter, value, args[i:])
                break
    if i >= len(args):
        return interpreter
    return _script(interpreter, args[i], args[i + 1:])


def _module(interpreter: str, module: str, rest: list[str]) -> str:
    if module == "credd":
        return _credd(rest)
    return f"{interpreter} -m {module if _MODULE.fullmatch(module) else '?'}"


def _script(interpreter: str, path: str, rest: list[str]) -> str:
    """A script by its file name; an installed command (no extension) by its name alone."""
    name = _base(path)
    if name == "credd":
        return _credd(rest)
    return f"{interpreter} {name}" if "." in name else name


def _scripted(interpreter: str, args: list[str]) -> str:
    for arg in args:
        if arg in ("-c", "-e", "-E", "--eval"):
            return f"{interpreter} {arg}"
        if not arg.startswith("-"):
            return f"{interpreter} {_base(arg)}"
    return interpreter


def _credd(args: list[str]) -> str:
    """`credd` and its subcommand, only when it is one (an argument could be a secret)."""
    from credd.cli import COMMANDS
    command = next((a for a in args if not a.startswith("-")), "")
    known = any(command in names for names in COMMANDS.values())
    return f"credd {command}" if known else "credd"


def _printable(text: str) -> str:
    """At most 80 characters, control characters shown as '?' (a file name can hold any)."""
    return "".join(c if c.isprintable() else "?" for c in text[:_MAX_PROGRAM])
