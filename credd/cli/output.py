"""How the CLI talks to people and scripts: errors, JSON, colour, tables, prompts.

Stdlib-only at import time (the fast path uses `run_command` and
`format_status`); msgspec, json and getpass are imported by the functions
that need them.
"""

from __future__ import annotations

import math
import os
import sys

from credd import errors, paths
from credd.errors import BadRequest, CreddError

TYPE_CHECKING = False  # not typing's: importing typing loads `re`, too slow for the fast path
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import TypeVar

    from credd.protocol import StatusReply

    T = TypeVar("T")

#: What to do next, per error class (the most specific class wins).
HINTS: dict[type[CreddError], str] = {
    errors.LockedError: "run `credd unlock`",
    errors.NoVault: "create one with `credd init`",
    errors.AgentUnavailable: 'start one with `eval "$(credd agent)"` or `credd serve`',
    errors.NotFound: "see `credd ls` (deleted entries: `credd trash`)",
    errors.BadPassphrase: "check the passphrase (caps lock, keyboard layout) and try again",
    errors.RateLimited: "wait before trying again",
    errors.Exists: "pick another name, or change the entry with `credd set` (no --create)",
    errors.InsecurePath: "fix the owner or mode as the message says, then try again",
    errors.Denied: "run credd as the user who owns the agent and the vault",
    errors.IntegrityError: "run `credd check`; restore the vault from a backup if it is damaged",
    errors.VersionMismatch: "restart the agent: `credd stop`, then start it again",
    errors.AuditUnavailable: "check free space and permissions of the state directory",
    errors.BadRequest: "see `credd COMMAND --help`",
    errors.InternalError: "this is a bug in credd: please report it with the agent's log",
}

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: `credd ls | head` ends quietly


def hint_for(exc: CreddError) -> str:
    """The next step for this error, unless its message already names one."""
    if "`" in exc.message:
        return ""
    for cls in type(exc).__mro__:
        if cls in HINTS:
            hint = HINTS[cls]
            if isinstance(exc, errors.RateLimited) and exc.retry_after:
                hint = f"wait {math.ceil(exc.retry_after)}s before trying again"  # never 0s
            return hint
    return ""


def report_error(exc: CreddError) -> int:
    """Print `credd: message` and its hint on stderr; return the exit code."""
    red, reset = ("\033[31m", "\033[0m") if use_color(sys.stderr) else ("", "")
    lines = [f"{red}credd: {exc.message}{reset}"]
    hint = hint_for(exc)
    if hint:
        lines.append(f"  hint: {hint}")
    sys.stderr.write("\n".join(lines) + "\n")
    return exc.exit_code


def run_command(func, ns) -> int:
    """The CLI's one error boundary: a command's exceptions become messages and exit codes."""
    try:
        code = func(ns)
        sys.stdout.flush()
        return 0 if code is None else code
    except CreddError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("\ncredd: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stay quiet, and keep the interpreter's
        # final flush from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


# ---------------------------------------------------------------- data out

def as_data(obj):
    """Structs as plain dicts with every field (defaults included, no tag), recursively.

    --json output keeps a stable shape for scripts, unlike the wire, which omits defaults.
    """
    fields = getattr(type(obj), "__struct_fields__", None)
    if fields is not None:
        return {name: as_data(getattr(obj, name)) for name in fields}
    if isinstance(obj, dict):
        return {key: as_data(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_data(value) for value in obj]
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def print_json(obj) -> None:
    """Pretty JSON of any struct, list or dict on stdout."""
    import msgspec

    from credd.cli.fast import write_stdout
    write_stdout(msgspec.json.format(msgspec.json.encode(as_data(obj)), indent=2) + b"\n")


def use_color(stream) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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
    """A progress bar on stderr (only on a terminal); call it as `progress(done, total)`."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.visible = sys.stderr.isatty()
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done, self.total = done, total if total is not None else self.total
        if self.visible:
            width = 30
            filled = width * done // self.total if self.total else width
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                             f"{done}/{self.total}")
            sys.stderr.flush()

    def __enter__(self) -> "progress":
        self(0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.visible:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- secrets in

def read_secret(prompt: str, *, from_stdin: bool, confirm: bool = False,
                flag: str = "--passphrase-stdin") -> str:
    """A secret from stdin (to EOF, minus one trailing newline) or a no-echo prompt.

    Without `from_stdin` it needs a terminal and fails at once without one,
    so a script never hangs waiting for a prompt nobody sees. With it, a
    terminal on stdin still gets the no-echo prompt: typing a secret into a
    plain read would show it on the screen.
    """
    if from_stdin and not sys.stdin.isatty():
        try:
            data = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("stdin is not UTF-8 text; nothing was changed") from None
        value = data[:-2] if data.endswith("\r\n") else data.removesuffix("\n")
    else:
        if not sys.stdin.isatty():
            raise BadRequest(f"no terminal to prompt on: pipe the secret in with {flag}")
        import getpass
        value = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != value:
            raise BadRequest("the two entries differ; nothing was changed")
    if not value:
        raise BadRequest("empty secret; nothing was changed")
    return value


# ---------------------------------------------------------------- durations and dates

def format_duration(seconds: float) -> str:
    """`1h 5m`, `42s`, `3d 4h`: a time left, to its two largest units (stdlib, for the fast
    path's `status`; durations a person typed are printed exactly by credd.rules)."""
    seconds = int(round(seconds))
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


# ---------------------------------------------------------------- shared views

def format_status(s: dict) -> str:
    """`credd status` as text, from the status reply as a dict (both CLI paths use this)."""
    note = paths.fallback_note()
    lines = [
        f"state:    {s['state']}",
        f"vault:    {s['vault']}",
        f"socket:   {s['socket']}" + (f" ({note})" if note else ""),
        f"agent:    pid {s['pid']}, credd {s['version']}, protocol {s['protocol']}",
    ]
    if s.get("entries") is not None:
        lines.append(f"entries:  {s['entries']}" + (" (local vault)" if s.get("mounts") else ""))
    if s["state"] == "unlocked":
        if s.get("idle_left") is not None:
            lines.append(f"locks in: {format_duration(s['idle_left'])} if idle "
                         f"(idle timeout {format_duration(s['idle_timeout'])})")
        if s.get("lifetime_left") is not None:
            lines.append(f"at most:  {format_duration(s['lifetime_left'])} more "
                         f"(max lifetime {format_duration(s['max_lifetime'])})")
    if s.get("retry_after"):
        lines.append(f"unlock throttled for {format_duration(math.ceil(s['retry_after']))}")
    for m in s.get("mounts") or []:  # dicts on the fast path; the entries count is local
        state = m.get("state", "ok") + (f": {m['message']}" if m.get("message") else "")
        lines.append(f"mount:    {m['name']} ({m['backend']}, {m.get('location', '')}) {state}")
        lines += [f"          warning: {w}" for w in m.get("warnings") or []]
    if s.get("config_error"):
        lines.append(f"mounts:   the last good table is in force: {s['config_error']}")
    return "\n".join(lines)


def status_exit_code(state: str) -> int:
    """`credd status` exits 0 unlocked, 3 locked, 5 no vault: scripts can branch on it."""
    return {"unlocked": errors.EXIT_OK, "locked": errors.EXIT_LOCKED}.get(state,
                                                                          errors.EXIT_NOT_FOUND)


# ---------------------------------------------------------------- plumbing for commands

def client(timeout: float | None = 30.0):
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


def add_unlock_window_args(parser) -> None:
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
