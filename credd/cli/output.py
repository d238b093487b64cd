"""How the argparse CLI talks to people and scripts: JSON, tables, prompts.

Stdlib-only at import time; msgspec, json and getpass are imported by the
functions that need them. The error boundary, colour and the status view are
`credd.cli.console`'s, shared with the fast path (which never imports this).
"""

from __future__ import annotations

import sys

from credd.cli.console import format_duration as format_duration  # commands import it here
from credd.cli.console import use_color, write_stdout
from credd.errors import BadRequest

TYPE_CHECKING = False  # not typing's: importing typing loads `re`, too slow for the fast path
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, TypeVar

    from credd.client import Client
    from credd.protocol import StatusReply

    T = TypeVar("T")

# ---------------------------------------------------------------- data out

#: Struct fields that hold a unix time (EntryMeta, VersionInfo, AuditRecord, AuditReader,
#: AuditReport, TokenInfo): --json prints them as RFC 3339 strings. Durations (rotate_after,
#: idle_timeout ...) stay numbers of seconds.
TIMESTAMPS = frozenset({"created", "updated", "expires", "deleted", "replaced", "time",
                        "last_used", "first", "last", "anchored_at", "compromised", "since"})


def rfc3339(when: float) -> str:
    """A unix time as RFC 3339 in UTC: `2027-01-31T23:00:00Z` (milliseconds when it has any)."""
    from datetime import UTC, datetime
    moment = datetime.fromtimestamp(when, UTC)
    spec = "seconds" if when == int(when) else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def as_data(obj: object) -> Any:
    """Structs as plain dicts with every field (defaults included, no tag), recursively;
    the one place --json output is shaped.

    --json output keeps a stable shape for scripts, unlike the wire, which omits defaults.
    Timestamps are RFC 3339 strings (TIMESTAMPS; an unknown time, 0, is null).
    """
    fields = getattr(type(obj), "__struct_fields__", None)
    if fields is not None:
        return {name: _time(getattr(obj, name)) if name in TIMESTAMPS
                else as_data(getattr(obj, name)) for name in fields}
    if isinstance(obj, dict):
        return {key: as_data(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_data(value) for value in obj]
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def _time(value: float | None) -> str | None:
    return rfc3339(value) if value else None


def print_json(obj: Any) -> None:
    """Pretty JSON of any struct, list or dict on stdout."""
    import msgspec

    write_stdout(msgspec.json.format(msgspec.json.encode(as_data(obj)), indent=2) + b"\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns; the header is bold on a colour terminal."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    head = line(headers)
    if use_color(sys.stdout):
        head = f"\033[1m{head}\033[0m"
    return "\n".join([head, *(line(r) for r in cells)])


class progress:
    """A progress bar on stderr (only on a terminal); call it as `progress(done, total)`.

    `show` writes the counts (e.g. as megabytes)."""

    def __init__(self, total: int, label: str, show: Callable[[int], str] = str) -> None:
        self.total, self.label, self.show = total, label, show
        self.visible = sys.stderr.isatty()
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done, self.total = done, total if total is not None else self.total
        if self.visible:
            width = 30
            filled = width * done // self.total if self.total else width
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                             f"{self.show(done)}/{self.show(self.total)}")
            sys.stderr.flush()

    def __enter__(self) -> progress:
        self(0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.visible:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- secrets in

#: Help for every `--passphrase-stdin`-like flag: one rule, said the same way everywhere.
STDIN_LINE = "its first line: the first newline ends it"
#: The longest line a secret may be read from (a passphrase or a key is far shorter).
LINE_MAX = 64 * 1024


def read_secret(prompt: str, *, from_stdin: bool, confirm: bool = False,
                flag: str = "--passphrase-stdin", whole: bool = False,
                check: Callable[[str], None] | None = None) -> str:
    """A secret from stdin or a no-echo prompt; `check` (e.g. the passphrase length) runs
    before the prompt asks for it again.

    From stdin, a passphrase or key is the first line (`stdin_line`); a value (`whole`) is
    everything up to EOF minus one trailing newline, so certificates keep their lines.
    Without `from_stdin` it needs a terminal and fails at once without one, so a script
    never hangs waiting for a prompt nobody sees. With it, a terminal on stdin still gets
    the no-echo prompt: typing a secret into a plain read would show it on the screen.
    """
    if from_stdin and not sys.stdin.isatty():
        value = stdin_text() if whole else stdin_line()
        if not value:
            raise BadRequest("empty secret; nothing was changed")
        if check is not None:
            check(value)
        return value
    if not sys.stdin.isatty():
        raise BadRequest(f"no terminal to prompt on: pipe the secret in with {flag}")
    import getpass
    value = getpass.getpass(prompt)
    if not value:
        raise BadRequest("empty secret; nothing was changed")
    if check is not None:
        check(value)
    if confirm and getpass.getpass("again: ") != value:
        raise BadRequest("the two entries differ; nothing was changed")
    return value


def stdin_text() -> str:
    """All of stdin as UTF-8 text, minus one trailing newline (`\n` or `\r\n`)."""
    data = _utf8(sys.stdin.buffer.read())
    return data[:-2] if data.endswith("\r\n") else data.removesuffix("\n")


def stdin_line() -> str:
    """The next line of stdin, without its newline (nor a `\r` before it): the rule for
    every passphrase and key read from stdin, so `printf 'pw\npw\n'` is `pw`, not `pw\npw`."""
    raw = sys.stdin.buffer.readline(LINE_MAX + 1)
    if len(raw) > LINE_MAX:
        raise BadRequest(f"stdin's line is longer than {LINE_MAX} bytes: that is no passphrase "
                         "or key; nothing was changed")
    line = _utf8(raw).removesuffix("\n")
    return line.removesuffix("\r")


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("stdin is not UTF-8 text; nothing was changed") from None


# ---------------------------------------------------------------- plumbing for commands

def client(timeout: float | None = 30.0) -> Client:
    """The CLI's connection to the agent (opened on first use)."""
    from credd.client import Client
    return Client(client_name="credd-cli", timeout=timeout)


def arg_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type=` from one of the parsers above (argparse reports the message)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except BadRequest as exc:
            import argparse
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = parse.__name__
    return convert


def add_unlock_window_args(parser: argparse.ArgumentParser) -> None:
    """`--timeout` and `--max-lifetime`, shared by every command that unlocks."""
    from credd.rules import parse_duration  # not at the top: the fast path imports this module
    parser.add_argument("--timeout", type=arg_type(parse_duration), metavar="D",
                        help="lock after this long idle, e.g. 15m (default: the agent's)")
    parser.add_argument("--max-lifetime", type=arg_type(parse_duration), metavar="D",
                        help="lock after this long at most, e.g. 8h (default: the agent's)")


def report_capped(ns: argparse.Namespace, status: StatusReply) -> None:
    """Say on stderr which asked-for unlock window the agent lowered to its --max-unlock."""
    if not status.capped:
        return
    windows = ((ns.timeout, status.idle_timeout), (ns.max_lifetime, status.max_lifetime))
    for asked, granted in windows:
        if asked is not None and asked > granted:
            sys.stderr.write(f"credd: asked for {format_duration(asked)}; the agent allows at most "
                             f"{format_duration(granted)} (credd serve --max-unlock)\n")
