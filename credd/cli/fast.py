"""The stdlib-only fast path for `credd get` and `credd status`, and `get_many` for run/inject.

Starting Python costs ~11 ms; msgspec (~28 ms), argparse (~11 ms), `socket`
(~9 ms: it drags in enum and selectors) and `re` would triple that for the
one command scripts run most. So `fast_main` answers `get NAME[/FIELD] [-n]`
and `status [--json]` with `_socket`, a hand-written encoder for the three
requests it sends and a tiny MessagePack reader for the replies. Anything
else, or anything unusual (--help, `--`, unknown flags), returns None and the
argparse CLI takes over. `credd run` and `credd inject` go through argparse
but fetch with `get_many` here, so they skip msgspec too (~50 ms a run).
`credd.protocol` stays the one contract: tests/test_fastpath.py checks these
bytes against `protocol.encode` and these readings against msgspec.

The socket layer (connect, uid check, framing) is `credd.wire`'s, shared
with both clients; errors and their hints are `credd.errors`', and the
printing is `credd.cli.console`'s (never `credd.cli.output`, which is the
argparse CLI's).
"""

from __future__ import annotations

import sys

from credd.errors import CreddError, ProtocolError, from_code
from credd.wire import (
    CLIENT_NAME,
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameReader,
    connect,
    recv_frame,
    send_all,
    version_mismatch,
)

TYPE_CHECKING = False  # not typing's: importing typing loads `re`
if TYPE_CHECKING:
    from _socket import socket

# ---------------------------------------------------------------- MessagePack by hand

def _pack_str(s: str) -> bytes:
    b = s.encode("utf-8")
    n = len(b)
    if n < 32:
        return bytes((0xA0 | n,)) + b
    if n < 0x100:
        return b"\xd9" + bytes((n,)) + b
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big") + b
    return b"\xdb" + n.to_bytes(4, "big") + b


def _pack_uint(i: int) -> bytes:
    if i < 0x80:
        return bytes((i,))
    if i < 0x100:
        return b"\xcc" + bytes((i,))
    if i < 0x10000:
        return b"\xcd" + i.to_bytes(2, "big")
    return b"\xce" + i.to_bytes(4, "big")


def _pack_strs(items: list[str]) -> bytes:
    n = len(items)
    header = (bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big") if n < 0x10000
              else b"\xdd" + n.to_bytes(4, "big"))
    return header + b"".join(map(_pack_str, items))


def _pack_map(items: dict[str, str]) -> bytes:
    n = len(items)
    header = (bytes((0x80 | n,)) if n < 16 else b"\xde" + n.to_bytes(2, "big") if n < 0x10000
              else b"\xdf" + n.to_bytes(4, "big"))
    return header + b"".join(_pack_str(k) + _pack_str(v) for k, v in items.items())


Value = str | int | bool | list[str] | dict[str, str]


def _pack(value: Value) -> bytes:
    if isinstance(value, str):
        return _pack_str(value)
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, list):
        return _pack_strs(value)
    if isinstance(value, dict):
        return _pack_map(value)
    return _pack_uint(value)


def frame(message_type: str, **fields: Value | None) -> bytes:
    """A whole frame for a map of str/uint/bool/[str]/{str: str} fields, as msgspec writes
    it (None: omitted, so pass None for a field at its default)."""
    items = [("type", message_type), *((k, v) for k, v in fields.items() if v is not None)]
    body = bytes((0x80 | len(items),)) + b"".join(_pack_str(k) + _pack(v) for k, v in items)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"request of {len(body)} bytes exceeds the frame limit")
    return len(body).to_bytes(4, "big") + body


def hello_frame() -> bytes:
    return frame("hello", protocol=PROTOCOL_VERSION, client=CLIENT_NAME)


def unpack(body: bytes | bytearray):
    """Decode one whole MessagePack value (maps become dicts, bin becomes bytes)."""
    value, end = _unpack(body, 0, 0)
    if end != len(body):
        raise ProtocolError("trailing bytes after the reply")
    return value


def _unpack(buf: bytes | bytearray, pos: int, depth: int):
    if depth > 32:
        raise ProtocolError("reply nested too deeply")
    b = _take(buf, pos, 1)[0]
    pos += 1
    if b < 0x80:
        return b, pos                                   # positive fixint
    if b >= 0xE0:
        return b - 0x100, pos                           # negative fixint
    if b <= 0x8F:
        return _map(buf, pos, b & 0x0F, depth)          # fixmap
    if b <= 0x9F:
        return _array(buf, pos, b & 0x0F, depth)        # fixarray
    if b <= 0xBF:
        return _str(buf, pos, b & 0x1F, depth)          # fixstr
    if b in _FIXED:
        return _FIXED[b], pos
    if b in _FLOATS:
        size, fmt = _FLOATS[b]
        import _struct  # only status replies hold floats
        return _struct.unpack(fmt, _take(buf, pos, size))[0], pos + size
    if b in _INTS:
        size, signed = _INTS[b]
        return int.from_bytes(_take(buf, pos, size), "big", signed=signed), pos + size
    if b in _SIZED:
        size, read = _SIZED[b]
        n = int.from_bytes(_take(buf, pos, size), "big")
        return read(buf, pos + size, n, depth)
    raise ProtocolError(f"unsupported MessagePack type 0x{b:02x} in reply")


def _take(buf: bytes | bytearray, pos: int, n: int) -> bytes | bytearray:
    if pos + n > len(buf):
        raise ProtocolError("truncated reply")
    return buf[pos:pos + n]


def _str(buf: bytes | bytearray, pos: int, n: int, depth: int):
    try:
        return _take(buf, pos, n).decode("utf-8"), pos + n
    except UnicodeDecodeError:
        raise ProtocolError("reply holds invalid UTF-8") from None


def _bin(buf: bytes | bytearray, pos: int, n: int, depth: int):
    return _take(buf, pos, n), pos + n


def _array(buf: bytes | bytearray, pos: int, n: int, depth: int):
    out = []
    for _ in range(n):
        item, pos = _unpack(buf, pos, depth + 1)
        out.append(item)
    return out, pos


def _map(buf: bytes | bytearray, pos: int, n: int, depth: int):
    out = {}
    for _ in range(n):
        key, pos = _unpack(buf, pos, depth + 1)
        if not isinstance(key, str):
            raise ProtocolError("reply map with a non-string key")
        out[key], pos = _unpack(buf, pos, depth + 1)
    return out, pos


# type byte -> what follows it
_FIXED = {0xC0: None, 0xC2: False, 0xC3: True}
_FLOATS = {0xCA: (4, ">f"), 0xCB: (8, ">d")}
_INTS = {0xCC: (1, False), 0xCD: (2, False), 0xCE: (4, False), 0xCF: (8, False),
         0xD0: (1, True), 0xD1: (2, True), 0xD2: (4, True), 0xD3: (8, True)}
_SIZED = {0xD9: (1, _str), 0xDA: (2, _str), 0xDB: (4, _str),      # (length bytes, reader)
          0xC4: (1, _bin), 0xC5: (2, _bin), 0xC6: (4, _bin),
          0xDC: (2, _array), 0xDD: (4, _array), 0xDE: (2, _map), 0xDF: (4, _map)}


# ---------------------------------------------------------------- the two commands

def read_reply(sock: socket, frames: FrameReader) -> dict:
    """The next reply as a dict; an `error` reply is raised as its exception."""
    reply = unpack(recv_frame(sock, frames))
    if not isinstance(reply, dict) or not isinstance(reply.get("type"), str):
        raise ProtocolError("the agent sent a reply without a type")
    if reply["type"] == "error":
        raise _error(reply)
    return reply


def _error(reply: dict) -> CreddError:
    return from_code(str(reply.get("code")), str(reply.get("message", "")),
                     names=reply.get("names") or [], retry_after=reply.get("retry_after"))


def check_welcome(reply: dict) -> None:
    if reply["type"] != "welcome":
        raise ProtocolError(f"the agent answered hello with {reply['type']!r}")
    if reply.get("protocol") != PROTOCOL_VERSION:
        raise version_mismatch(reply.get("version"), reply.get("protocol"))


def expect(reply: dict, message_type: str) -> dict:
    if reply["type"] != message_type:
        raise ProtocolError(f"the agent answered with {reply['type']!r}, not {message_type!r}")
    return reply


def get_value(sock: socket, arg: str) -> str:
    """Hello and `get` in one write. `arg` may be NAME/FIELD: the agent resolves it
    (credd.refs' rule), so one round trip answers either."""
    frames = FrameReader()
    send_all(sock, hello_frame() + frame("get", name=arg))
    check_welcome(read_reply(sock, frames))
    reply = expect(read_reply(sock, frames), "secret")
    if not isinstance(reply.get("value"), str):
        raise ProtocolError("the agent sent a secret without a value")
    return reply["value"]


def secrets_of(sock: socket, refs: list[str]) -> dict[str, str]:
    """`get_many` on `sock`: hello and the request in one write, the values by reference."""
    frames = FrameReader()
    send_all(sock, hello_frame() + frame("get_many", refs=list(refs)))
    check_welcome(read_reply(sock, frames))
    return _values(sock, frames)


def greeted(sock: socket) -> tuple[FrameReader, dict[str, object]]:
    """`hello` alone, and the agent's `welcome` (what the connection is bound to)."""
    frames = FrameReader()
    send_all(sock, hello_frame())
    welcome = read_reply(sock, frames)
    check_welcome(welcome)
    return frames, welcome


def values_on(sock: socket, frames: FrameReader, refs: list[str]) -> dict[str, str]:
    """`get_many` on a greeted connection."""
    send_all(sock, frame("get_many", refs=list(refs)))
    return _values(sock, frames)


def _values(sock: socket, frames: FrameReader) -> dict[str, str]:
    values = expect(read_reply(sock, frames), "secrets").get("values")
    if not (isinstance(values, dict) and all(isinstance(v, str) for v in values.values())):
        raise ProtocolError("the agent sent secrets that are not a map of strings")
    return {str(ref): value for ref, value in values.items()}


def get_many(refs: list[str]) -> dict[str, str]:
    """The values of many `credd://` references in one round trip, without msgspec:
    `credd run` and `credd inject` resolve through this (see refs.resolve_all)."""
    sock = connect()
    try:
        return secrets_of(sock, refs)
    finally:
        sock.close()


def _run_get(args: tuple[str, bool]) -> int:
    arg, newline = args
    sock = connect()
    try:
        value = get_value(sock, arg)
    finally:
        sock.close()
    from credd.cli.console import write_stdout
    write_stdout(value.encode("utf-8") + (b"\n" if newline else b""))
    return 0


def status_dict(sock: socket) -> dict:
    """The agent's status with every field present, in the protocol's order and defaults."""
    frames = FrameReader()
    send_all(sock, hello_frame() + frame("status"))
    check_welcome(read_reply(sock, frames))
    reply = expect(read_reply(sock, frames), "status")
    reply.pop("type")
    status = {name: reply.pop(name, default) for name, default in STATUS_FIELDS.items()}
    if _REQUIRED in status.values():
        raise ProtocolError("the agent sent a status without all its required fields")
    status.update(reply)  # fields of a newer agent, kept as they came
    status["mounts"] = [_complete(m, MOUNT_FIELDS) for m in status["mounts"]]
    return status


def _complete(record: dict, fields: dict) -> dict:
    """`record` with every field, in the protocol's order and defaults."""
    if not isinstance(record, dict):
        raise ProtocolError("the agent sent a record that is not a map")
    full = {name: record.pop(name, default) for name, default in fields.items()}
    if _REQUIRED in full.values():
        raise ProtocolError("the agent sent a record without all its required fields")
    full.update(record)
    return full


_REQUIRED = object()
#: StatusReply's fields and defaults (tests compare them with credd.protocol).
STATUS_FIELDS = {"state": _REQUIRED, "vault": _REQUIRED, "socket": _REQUIRED,
                 "pid": _REQUIRED, "version": _REQUIRED, "protocol": PROTOCOL_VERSION,
                 "entries": None, "idle_timeout": 0.0, "max_lifetime": 0.0,
                 "idle_left": None, "lifetime_left": None, "retry_after": 0.0,
                 "capped": False, "mounts": [], "config_error": "", "damage": [],
                 "slots": {}}
#: MountInfo's fields and defaults (the records in `mounts`).
MOUNT_FIELDS = {"name": _REQUIRED, "backend": _REQUIRED, "location": "", "state": "ok",
                "message": "", "warnings": [], "read_only": False}


def _run_status(args: tuple[bool]) -> int:
    from credd.cli.console import format_status, status_exit_code
    (as_json,) = args
    sock = connect()
    try:
        status = status_dict(sock)
    finally:
        sock.close()
    text = to_json(status) if as_json else format_status(status)
    sys.stdout.write(text + "\n")
    return status_exit_code(status["state"])


def to_json(obj) -> str:
    """JSON for the status dict (the stdlib json module imports `re`)."""
    if obj is None:
        return "null"
    if obj is True or obj is False:
        return "true" if obj else "false"
    if isinstance(obj, (int, float)):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return "null"
        return repr(obj)
    if isinstance(obj, str):
        return '"' + "".join(_ESCAPES.get(c) or (c if c >= " " else f"\\u{ord(c):04x}")
                             for c in obj) + '"'
    if isinstance(obj, list):
        return "[" + ", ".join(to_json(v) for v in obj) + "]"
    if isinstance(obj, dict):
        body = ",\n".join(f"  {to_json(str(k))}: {to_json(v)}" for k, v in obj.items())
        return "{\n" + body + "\n}" if obj else "{}"
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _parse(argv: list[str]):
    """(runner, args) for the shapes this path handles, else None."""
    if not argv:
        return None
    command, rest = argv[0], argv[1:]
    if command == "get":
        flags = [a for a in rest if a.startswith("-")]
        names = [a for a in rest if not a.startswith("-")]
        if len(names) == 1 and set(flags) <= {"-n"} and len(flags) <= 1:
            return _run_get, (names[0], not flags)
    elif command == "status" and rest in ([], ["--json"]):
        return _run_status, (bool(rest),)
    return None


def fast_main(argv: list[str]) -> int | None:
    """Answer `get` or `status` without argparse or msgspec; None: not mine."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    from credd.cli.console import run_command
    runner, args = parsed
    return run_command(runner, args)
