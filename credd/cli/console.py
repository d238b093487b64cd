"""Where every command meets the terminal: the error boundary, colour, stdout, status.

Both CLI paths end here: the stdlib fast path (`credd get`, `credd status`)
and the argparse commands, through `credd.cli.output`. So this module is
stdlib-only and imports nothing of the CLI's: the fast path must not pay for
output.py, and output.py builds on this one, never the other way round.
Error hints are the error classes' own (`CreddError.next_step`).
"""

from __future__ import annotations

import math
import os
import sys

from credd import errors, paths
from credd.errors import CreddError

TYPE_CHECKING = False  # not typing's: importing typing loads `re` and `enum` (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: `credd ls | head` ends quietly


def run_command(func: Callable[[Any], int | None], ns: Any) -> int:
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


def report_error(exc: CreddError) -> int:
    """Print `credd: message` and its hint on stderr; return the exit code."""
    red, reset = ("\033[31m", "\033[0m") if use_color(sys.stderr) else ("", "")
    lines = [f"{red}credd: {exc.message}{reset}"]
    hint = exc.next_step()
    if hint:
        lines.append(f"  hint: {hint}")
    sys.stderr.write("\n".join(lines) + "\n")
    return exc.exit_code


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def write_stdout(data: bytes) -> None:
    """All of `data` to stdout; under PYTHONUNBUFFERED a raw write may be partial."""
    sys.stdout.flush()
    out, view = sys.stdout.buffer, memoryview(data)
    while view:
        written = out.write(view)
        view = view[len(view) if written is None else written:]
    out.flush()


# ---------------------------------------------------------------- `credd status`

def format_status(s: dict[str, Any]) -> str:
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
    if s.get("slots"):
        lines.append("slots:    " + ", ".join(f"{n} {kind}" for kind, n in s["slots"].items())
                     + " (see `credd slots`)")
    if s["state"] == "unlocked":
        if s.get("idle_left") is not None:
            lines.append(f"locks in: {format_duration(s['idle_left'])} if idle "
                         f"(idle timeout {format_duration(s['idle_timeout'])})")
        if s.get("lifetime_left") is not None:
            lines.append(f"at most:  {format_duration(s['lifetime_left'])} more "
                         f"(max lifetime {format_duration(s['max_lifetime'])})")
    lines += [f"damaged:  {problem} (data operations refuse: `credd check`)"
              for problem in s.get("damage") or []]
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


def format_duration(seconds: float) -> str:
    """`1h 5m`, `42s`, `3d 4h`: a time left, to its two largest units (stdlib, for the fast
    path's `status`; durations a person typed are printed exactly by credd.rules)."""
    seconds = round(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])
