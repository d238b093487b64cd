"""`credd due | rotate | verify | fingerprint`: an entry's life after it is stored
(docs/lifecycle.md).

`due` asks the agent for its report; `rotate` stages a new value in the vault, runs the
entry's check against it when asked, and makes it current only if the check passes;
`verify` runs checks here, in the client, as `credd run` runs commands (credd/verify.py
says why), then tells the agent each result; `fingerprint` prints a value's keyed
fingerprint. `show`, `ls` and `unlock` take their lifecycle lines from here too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from credd.cli import output
from credd.cli.output import arg_type, client
from credd.errors import BadRequest, CreddError, NotFound
from credd.rules import (
    DEFAULT_ROTATION,
    DUE_WITHIN,
    GENERATED_LENGTH,
    UNUSED_AFTER,
    explain,
    format_duration,
    format_time,
    parse_duration,
    reason_text,
    rotation_text,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from credd.client import Client
    from credd.protocol import DueReport, EntryMeta, Inspection
    from credd.verify import Check, Result

#: `verify --all` runs this many checks at a time (two of one service never together).
DEFAULT_JOBS = 4


def register(sub: Any) -> None:
    p = sub.add_parser("due", help="entries that need attention: expired or expiring, due for "
                                   "rotation, reused, short, unused, failing their check "
                                   "(exit 1 when any)")
    p.add_argument("--within", type=arg_type(parse_duration), default=DUE_WITHIN, metavar="D",
                   help=f"also what falls due or expires within D (default "
                        f"{format_duration(DUE_WITHIN)})")
    p.add_argument("--unused", type=arg_type(_unused), default=UNUSED_AFTER, metavar="D",
                   help=f"entries not used for D (default {format_duration(UNUSED_AFTER)}; "
                        "`never` leaves them out)")
    p.add_argument("--no-values", dest="values", action="store_false",
                   help="skip what needs every value decrypted (reuse, short passwords)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_due)

    p = sub.add_parser("rotate", help="replace a value: staged first, made current once its "
                                      "check passes (--verify)")
    p.add_argument("name", metavar="NAME")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--generate", nargs="?", type=int, const=GENERATED_LENGTH, metavar="LEN",
                        help=f"a random value (default {GENERATED_LENGTH} characters)")
    source.add_argument("--value-stdin", action="store_true", help="read the new value from "
                                                                   "stdin")
    source.add_argument("--prompt", action="store_true", help="type the new value (no echo)")
    source.add_argument("--finish", action="store_true",
                        help="make the pending value current (after --stage or a failed check)")
    source.add_argument("--abandon", action="store_true", help="drop the pending value")
    source.add_argument("--pending", action="store_true",
                        help="print the pending value (to set it where it is used)")
    p.add_argument("--verify", action="store_true",
                   help="run the entry's check with the new value first; keep it pending if "
                        "the check fails")
    p.add_argument("--stage", action="store_true",
                   help="only stage the new value (finish later with --finish)")
    p.add_argument("--timeout", type=arg_type(parse_duration), metavar="D",
                   help="the check's time limit (default 30s)")
    p.set_defaults(func=cmd_rotate)

    p = sub.add_parser("verify", help="run entries' checks (exit 0 all passed, 1 any failed)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every entry that has a check")
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                   help=f"checks at a time (default {DEFAULT_JOBS}; one service's one by one)")
    p.add_argument("--timeout", type=arg_type(parse_duration), metavar="D",
                   help="each check's time limit (default 30s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fingerprint", help="a value's keyed fingerprint (fp:xxxx-xxxx), safe to "
                                           "log")
    p.add_argument("ref", metavar="NAME[/FIELD]")
    p.set_defaults(func=cmd_fingerprint)


def _unused(text: str) -> float:
    return 0.0 if text.strip().lower() in ("never", "off", "0") else parse_duration(text)


# ---------------------------------------------------------------- rules from the agent

def periods_of(c: Client) -> Mapping[str, float]:
    """The rotation periods the agent applies (the defaults from an agent without them)."""
    try:
        return c.policy().rotation
    except BadRequest:  # an older agent: it has no `policy` request
        return DEFAULT_ROTATION


def due_line(c: Client) -> str:
    """`3 entries due: credd due` (what needs doing by date), or '' when nothing does."""
    try:
        report = c.due(values=False, unused=0.0)
    except BadRequest:
        return ""
    n = len(report.entries)
    return f"{n} {'entry' if n == 1 else 'entries'} due: credd due" if n else ""


#: Reasons `show` has a line of its own for (compromised, state, pending, checked).
_SHOWN_APART = frozenset({"compromised", "expired", "expiring", "rotation_due", "pending",
                          "check_failed"})


def show_rows(c: Client, meta: EntryMeta) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """`show`'s lifecycle lines (rotation, pending value, last check, and the state with
    every reason `due` has for the entry) and the fingerprints of its secrets ("" for the
    value); nothing from an agent without `inspect`."""
    try:
        seen = c.inspect(meta.name)
    except BadRequest:
        return [], {}
    now, periods = time.time(), {meta.kind: seen.rotation} if seen.rotation else {}
    rows = [("rotate", rotation_text(meta, periods))]
    if meta.compromised is not None:
        rows.insert(0, ("compromised", f"marked {format_time(meta.compromised)} (credd incident "
                                       f"{meta.name}): rotate it; a new value clears the mark"))
    if meta.pending is not None:
        rows.append(("pending", f"a new value since {format_time(meta.pending)} (credd rotate "
                                f"{meta.name} --finish [--verify] or --abandon)"))
    rows.append(("checked", _checked(seen)))
    rows.append(("state", explain(meta, now, periods)[1]))
    rows += [("state", reason_text(reason, now)) for reason in seen.reasons
             if reason.reason not in _SHOWN_APART]
    prints = {"": seen.fingerprint, **seen.field_fingerprints} if seen.fingerprint else dict(
        seen.field_fingerprints)
    return [(k, v) for k, v in rows if v], prints


def _checked(seen: Inspection) -> str:
    last = seen.verification
    if last is None:
        return "never" if seen.entry.fields.get("verify") else ""
    status = f", exit {last.exit_status}" if last.outcome == "failed" else ""
    return f"{last.outcome} {format_time(last.time)}{status} ({last.seconds:.1f}s)"


# ---------------------------------------------------------------- due

def cmd_due(ns: argparse.Namespace) -> int:
    with client(timeout=None) as c:
        report = c.due(within=ns.within, unused=ns.unused, values=ns.values)
    if ns.json:
        data = output.as_data(report)
        for entry, shown in zip(report.entries, data["entries"]):
            for reason, detail in zip(entry.reasons, shown["reasons"]):
                detail["detail"] = reason_text(reason, report.now)
        output.print_json(data)
    else:
        _print_due(report)
    return 1 if report.entries else 0


def _print_due(report: DueReport) -> None:
    rows = [[entry.name if i == 0 else "", reason.reason, reason_text(reason, report.now)]
            for entry in report.entries for i, reason in enumerate(entry.reasons)]
    if rows:
        print(output.table(rows, ["NAME", "REASON", "DETAIL"]))
    n = len(report.entries)
    summary = (f"credd due: {n} of {report.checked} {'entry' if report.checked == 1 else 'entries'}"
               f" need{'s' if n == 1 else ''} attention" if n else
               f"credd due: nothing due among {report.checked} entries")
    if report.values:
        summary += f"; {report.values} values compared"
    sys.stderr.write(summary + "\n")
    for mount in report.unread:
        sys.stderr.write(f"credd: mount {mount} is remote: its values were not read\n")
    if report.config_error:
        sys.stderr.write(f"credd: {report.config_error} (the last good periods are in force)\n")


# ---------------------------------------------------------------- rotate

def cmd_rotate(ns: argparse.Namespace) -> int:
    from credd.cli.entries import generate_password
    other_step = ns.finish or ns.abandon or ns.pending
    if ns.stage and (other_step or ns.verify):
        raise BadRequest("--stage writes a new value and stops: no --verify, --finish, "
                         "--abandon or --pending with it")
    if ns.verify and (ns.abandon or ns.pending):
        raise BadRequest("--verify goes with a new value or --finish")
    with client(timeout=None) as c:
        if ns.pending:
            from credd.cli.console import write_stdout
            write_stdout(c.get_pending(ns.name).encode() + b"\n")
            return 0
        if ns.abandon:
            c.abandon_rotation(ns.name)
            print(f"dropped the pending value of {ns.name}; the current value stays")
            return 0
        check = _check_of(c.describe(ns.name)) if ns.verify else None
        if ns.finish:
            value = c.get_pending(ns.name) if check is not None else ""
        else:
            value = (generate_password(ns.generate) if ns.generate is not None else
                     output.read_secret(f"new value of {ns.name}: ", from_stdin=ns.value_stdin,
                                        confirm=True, flag="--value-stdin"))
            c.rotate(ns.name, value)
            if ns.stage:
                print(f"staged a new value for {ns.name} (the current one stays current): "
                      f"`credd rotate {ns.name} --pending` prints it; --finish [--verify] makes "
                      f"it current; --abandon drops it")
                return 0
        if check is not None and not _passes(c, ns.name, check, value, ns.timeout):
            return 1
        entry = c.finish_rotation(ns.name)
    print(f"rotated {ns.name}: version {entry.version} is current (the previous value: "
          f"`credd restore {ns.name} {entry.version - 1}`)")
    return 0


def _check_of(meta: EntryMeta) -> Check:
    from credd.verify import command_of, parse_check
    command = command_of(meta)
    if command is None:
        raise BadRequest(f"{meta.name} has no check to verify with: add one with "
                         f"`credd set {meta.name} --verify-cmd '...'`")
    return parse_check(command)


def _passes(c: Client, name: str, check: Check, value: str, timeout: float | None) -> bool:
    """Run the check with the pending `value` for the entry's own reference; report it."""
    from credd.refs import SCHEME
    values = _values(c, check, {SCHEME + name: value})
    result = _run(check, values, timeout)
    _record(c, name, result)
    if result.outcome == "ok":
        return True
    _print_result(name, result, sys.stderr)
    sys.stderr.write(f"credd: the check failed, so the current value of {name} stays current; "
                     f"the new one is kept pending: `credd rotate {name} --finish --verify` "
                     f"once it works, or --abandon\n")
    return False


def _values(c: Client, check: Check, given: dict[str, str]) -> dict[str, str]:
    from credd.refs import resolve_all
    wanted = [ref for ref in check.refs if ref not in given]
    return {**given, **resolve_all(wanted, c.get_many)} if wanted else dict(given)


def _run(check: Check, values: Mapping[str, str], timeout: float | None) -> Result:
    from credd.verify import DEFAULT_TIMEOUT, run_check
    return run_check(check, values, timeout=timeout or DEFAULT_TIMEOUT)


def _record(c: Client, name: str, result: Result) -> None:
    try:
        c.record_verification(name, result.outcome, exit_status=result.exit_status,
                              seconds=result.seconds)
    except CreddError as exc:  # the check ran: its result is what matters here
        sys.stderr.write(f"credd: the result was not kept: {exc.message}\n")


# ---------------------------------------------------------------- verify

def cmd_verify(ns: argparse.Namespace) -> int:
    if bool(ns.names) == ns.all:
        raise BadRequest("say what to verify: NAME..., or --all")
    if ns.jobs < 1:
        raise BadRequest("--jobs must be at least 1")
    with client(timeout=None) as c:
        metas = [c.describe(n) for n in dict.fromkeys(ns.names)] if ns.names else [
            m for m in c.list() if m.fields.get("verify")]
        planned = [(meta, _planned(c, meta)) for meta in metas]
        results = _run_all(planned, ns.jobs, ns.timeout, lambda n, r: _record(c, n, r))
    if ns.json:
        output.print_json([_as_json(meta.name, results.get(meta.name)) for meta in metas])
    else:
        for meta in metas:
            result = results.get(meta.name)
            if result is None:
                print(f"{'no check':<9} {meta.name}")
            else:
                _print_result(meta.name, result, sys.stdout)
        _summary(results, len(metas))
    return 0 if len(results) == len(metas) and all(
        r.outcome == "ok" for r in results.values()) else 1


def _planned(c: Client, meta: EntryMeta) -> tuple[Check, dict[str, str]] | Result | None:
    """The check with its values, a result that says why it cannot run, or None (none)."""
    from credd.verify import Result, command_of, parse_check
    if command_of(meta) is None:
        return None
    try:
        check = parse_check(command_of(meta) or "")
        return check, _values(c, check, {})
    except (BadRequest, NotFound) as exc:
        return Result("error", None, exc.message, 0.0)


def _run_all(planned: list[tuple[EntryMeta, Any]], jobs: int, timeout: float | None,
             record: Callable[[str, Result], None]) -> dict[str, Result]:
    """Every planned check, `jobs` at a time; one service's checks one after another (a
    service may count concurrent logins as an attack). Recorded as each ends."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from credd.verify import Result
    results: dict[str, Result] = {}
    groups: dict[str, list[tuple[str, Check, dict[str, str]]]] = {}
    for meta, plan in planned:
        if isinstance(plan, Result):
            results[meta.name] = plan
        elif plan is not None:
            groups.setdefault(meta.service or meta.name, []).append((meta.name, *plan))

    def run_group(group: list[tuple[str, Check, dict[str, str]]]) -> list[tuple[str, Result]]:
        return [(name, _run(check, values, timeout)) for name, check, values in group]

    total = sum(map(len, groups.values()))
    with output.progress(total, "verifying") as bar, ThreadPoolExecutor(jobs) as pool:
        for done in as_completed([pool.submit(run_group, g) for g in groups.values()]):
            for name, result in done.result():
                results[name] = result
                record(name, result)
                bar(len(results))
    for meta, plan in planned:  # a check that could not run is a result too
        if isinstance(plan, Result):
            record(meta.name, plan)
    return results


def _print_result(name: str, result: Result, stream: Any) -> None:
    shown = {"ok": "ok", "failed": "FAILED", "timeout": "TIMEOUT", "error": "ERROR"}
    why = f"exit {result.exit_status}, " if result.outcome == "failed" else ""
    stream.write(f"{shown[result.outcome]:<9} {name}  ({why}{result.seconds:.1f}s)\n")
    if result.outcome != "ok":
        for line in result.output.rstrip("\n").splitlines()[-20:]:
            stream.write(f"  | {line}\n")


def _summary(results: Mapping[str, Result], asked: int) -> None:
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    parts = [f"{n} {outcome}" for outcome, n in sorted(counts.items())]
    if asked > len(results):
        parts.append(f"{asked - len(results)} without a check")
    sys.stderr.write(f"credd verify: {', '.join(parts) or 'nothing to verify'}\n")


def _as_json(name: str, result: Result | None) -> dict[str, Any]:
    if result is None:
        return {"name": name, "outcome": "no_check", "exit_status": None, "seconds": 0.0,
                "output": ""}
    return {"name": name, **result._asdict()}


# ---------------------------------------------------------------- fingerprint

def cmd_fingerprint(ns: argparse.Namespace) -> int:
    with client() as c:
        print(c.fingerprint(ns.ref))  # NAME/FIELD by the rule of `get`, in the agent
    return 0


# ---------------------------------------------------------------- set --verify-cmd

def verify_field(command: str) -> tuple[str, str]:
    """`set --verify-cmd`: the check as a plain field (checked first), with a note on stderr
    when a value would travel in the command's arguments."""
    from credd.verify import FIELD, parse_check
    if not command.strip():
        return FIELD, ""
    exposed = parse_check(command).argv_refs()
    if exposed:
        sys.stderr.write(f"credd: note: {', '.join(exposed)} will be in the check's arguments, "
                         "which every local user can read while it runs (/proc); VAR=credd://"
                         "NAME before the command puts it in the environment instead\n")
    return FIELD, command

