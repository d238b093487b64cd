"""`credd audit`: questions to the agent's audit trail (names are HMACs in it, never clear).

    credd audit [--name N] [--grant G] [--program P] [--since T] [--op OP]
                [--outcome O] [--limit N] [--json]
    credd audit who NAME [--since T] [--json]
    credd audit verify [--json]

The agent answers all three over the whole trail, rotated files included:
it holds the audit key, so `--name` and `who` send the name and the agent
matches its HMAC. Times in `--json` output are RFC 3339 (UTC).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from credd.cli.output import arg_type
from credd.errors import BadRequest

if TYPE_CHECKING:
    from credd.protocol import AuditRecord, AuditReport

EPILOG = """\
exit codes: as every command (see `credd --help`); `credd audit verify` exits 1
when the trail is broken, after saying where.
"""


def since(text: str) -> float:
    """Unix time of `--since`: a duration ago (`2h`, `7d`) or a date (the start of that
    local day) or a time (`2027-01-31T12:00`)."""
    from credd.rules import parse_date, parse_duration
    try:
        return time.time() - parse_duration(text)
    except BadRequest:
        pass
    when = parse_date(text)
    if len(text.strip()) == 10:  # parse_date reads a day as its end: here it is its start
        from datetime import date, datetime
        when = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time()).timestamp()
    return when


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="ask the audit trail: recent records, who read an entry, "
                                     "is the trail intact", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", metavar="NAME", help="records about this entry")
    p.add_argument("--grant", metavar="ID", help="records of connections bound to this grant")
    p.add_argument("--program", metavar="P", help="records of this program: exactly, by its "
                                                  "first word (credd), or a glob ('*git*')")
    _since_arg(p)
    p.add_argument("--op", metavar="OP", help="records of this operation (get, set, unlock...)")
    p.add_argument("--outcome", metavar="O", help="records with this outcome (ok, not_found...)")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="how many of the newest matches (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON array of records")
    p.set_defaults(func=audit)
    questions = p.add_subparsers(dest="question", metavar="{who,verify}")
    who = questions.add_parser("who", help="every program and grant that received an entry's "
                                           "value, with counts and first/last time")
    who.add_argument("name", metavar="NAME")
    _since_arg(who)
    who.add_argument("--json", action="store_true", help="print JSON")
    who.set_defaults(func=audit_who)
    verify = questions.add_parser("verify", help="check the trail's hash chain and its anchor; "
                                                 "exit 1 if broken", epilog=EPILOG)
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=audit_verify)


def _since_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=arg_type(since), metavar="T",
                        help="only since then: a duration ago (2h, 7d) or a date (2027-01-31)")


def audit(ns: argparse.Namespace) -> int:
    from credd import protocol
    from credd.cli.output import client, print_json, table
    from credd.rules import format_time
    request = protocol.Audit(limit=ns.limit, name=ns.name, grant=ns.grant, program=ns.program,
                             since=ns.since, op=ns.op, outcome=ns.outcome)
    with client() as c:
        records = c.call(request).records
    if ns.json:
        print_json(records)
        return 0
    granted = any(r.grant for r in records)
    rows = [[format_time(r.time), r.op, r.outcome, _name(r, ns.name), r.program or "-",
             str(r.pid or "-")] + ([r.grant or "-"] if granted else []) for r in records]
    if rows:
        print(table(rows, ["TIME", "OP", "OUTCOME", "NAME", "PROGRAM", "PID"]
                    + (["GRANT"] if granted else [])))
    return 0


def _name(record: AuditRecord, asked: str | None) -> str:
    """The name asked about (every record matched it), else the start of the HMAC; for a
    grant's change, the grant."""
    if not record.name_hmac:
        return record.subject or "-"
    return asked or record.name_hmac.removeprefix("hmac-sha256:")[:16]


def audit_who(ns: argparse.Namespace) -> int:
    from credd import protocol
    from credd.cli.output import client, print_json, table
    from credd.rules import format_time
    with client() as c:
        reply = c.call(protocol.AuditWho(name=ns.name, since=ns.since))
    if ns.json:  # times as RFC 3339 (output.TIMESTAMPS)
        print_json({"name": ns.name, "name_hmac": reply.name_hmac, "readers": reply.readers})
        return 0
    if not reply.readers:
        print(f"no program received the value of {ns.name}"
              + (" in that time" if ns.since else " in the audit trail"))
        return 0
    rows = [[r.program or "-", r.grant or "-", str(r.count), format_time(r.first),
             format_time(r.last)] for r in reply.readers]
    print(table(rows, ["PROGRAM", "GRANT", "COUNT", "FIRST", "LAST"]))
    return 0


def audit_verify(ns: argparse.Namespace) -> int:
    from credd import protocol
    from credd.cli.output import client, print_json
    with client() as c:
        report = c.call(protocol.AuditVerify())
    if ns.json:
        print_json(report)
    else:
        print(_summary(report))
    return 0 if report.ok else 1


def _summary(report: AuditReport) -> str:
    from credd.rules import format_time
    if not report.ok:
        where = f"{report.file} line {report.line}: " if report.line else \
            f"{report.file}: " if report.file else ""
        return f"audit trail BROKEN: {where}{report.problem}"
    files = len(report.files)
    text = (f"audit trail intact: {report.records} records in {files} "
            f"file{'s' * (files != 1)}")
    if report.records:
        text += f" (seq {report.first_seq}..{report.head_seq})"
    if report.anchored_seq is not None:
        since = report.head_seq - report.anchored_seq
        text += (f"; anchored at seq {report.anchored_seq} ({format_time(report.anchored_at)})"
                 f", {since} record{'s' * (since != 1)} since")
    if report.unchained:
        text += f"; {report.unchained} older records from before the chain, not verifiable"
    return text
