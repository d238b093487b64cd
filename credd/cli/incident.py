"""`credd incident NAME [--since T] [--json]`: the drill for a value that may have leaked
(docs/lifecycle.md, "Incident drill").

One `incident` request does the work in the agent: the readers from the audit trail (as
`credd audit who` reads them), the entries holding the same value (as `credd due` finds
duplicates, by keyed fingerprint) and the mark. This module prints it, and the next steps
named after what it found. No value is ever asked for or printed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from credd.cli import output
from credd.cli.audit import since as since_time
from credd.cli.output import arg_type, client
from credd.rules import format_time

if TYPE_CHECKING:
    from credd.protocol import DueReason, IncidentReport, Reader


def register(sub: Any) -> None:
    p = sub.add_parser("incident", help="a value may have leaked: who received it, which "
                                        "entries share it; marks it compromised until rotated")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--since", type=arg_type(since_time), metavar="T",
                   help="readers since then (a duration ago, 7d, or a date), not since the "
                        "value last changed")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_incident)


def cmd_incident(ns: argparse.Namespace) -> int:
    with client(timeout=None) as c:
        report = c.incident(ns.name, since=ns.since)
    if ns.json:
        output.print_json({**output.as_data(report), "next_steps": next_steps(report)})
    else:
        _print(report)
    return 0


def _print(report: IncidentReport) -> None:
    entry = report.entry
    print(f"{entry.name}: marked compromised {format_time(entry.compromised or 0.0)}; "
          f"the value last changed {format_time(entry.value_changed or entry.updated)} "
          f"(version {entry.version})")
    if report.readers:
        print(f"\nreceived it since {format_time(report.since)}:")
        rows = [[r.program or "-", r.grant or "-", str(r.count), format_time(r.first),
                 format_time(r.last)] for r in report.readers]
        print(output.table(rows, ["PROGRAM", "GRANT", "COUNT", "FIRST", "LAST"]))
    else:
        print(f"\nno program received it since {format_time(report.since)} (audit trail)")
    for reason in report.shared:
        print(f"{_secret(reason)} is also held by: {', '.join(reason.names)}")
    for mount in report.unread:
        print(f"mount {mount} is remote: its values were not compared")
    print("\nnext steps:")
    print("\n".join(f"  {i}. {step}" for i, step in enumerate(next_steps(report), 1)))


def _secret(reason: DueReason) -> str:
    return f"field {reason.field}" if reason.field else "the value"


def next_steps(report: IncidentReport) -> list[str]:
    """What to do now, naming the entries, grants and programs the report found."""
    name = report.entry.name
    steps = [f"rotate it: credd rotate {name} (a new value clears the mark)"]
    steps += [f"rotate {', '.join(r.names)} too: {_secret(r)} of {name} is theirs as well"
              for r in report.shared]
    grants = sorted({r.grant for r in report.readers if r.grant})
    if grants:
        steps.append(f"revoke the grants that read it: {', '.join(grants)} "
                     f"(credd grant revoke ID)")
    programs = _programs(report.readers)
    if programs:
        steps.append(f"restart what read it once rotated, and look at each: {programs}")
    steps.append("scan for leaks: credd scan --git (and the places it was copied to)")
    where = f" ({report.entry.service})" if report.entry.service else ""
    steps.append(f"check the provider's logs{where} for use of the old value since "
                 f"{format_time(report.since)}, and revoke it there")
    return steps


def _programs(readers: list[Reader]) -> str:
    return ", ".join(sorted({r.program for r in readers if r.program}))
