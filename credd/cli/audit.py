"""`credd audit`: the agent's recent audit records (names appear only as HMACs)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("audit", help="show recent audit records (who read or changed what, "
                                     "names as HMACs)")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="how many of the newest records (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON array of records")
    p.set_defaults(func=audit)


def audit(ns) -> int:
    from credd.cli.output import client, print_json, table
    from credd.rules import format_time
    with client() as c:
        records = c.audit(limit=ns.limit)
    if ns.json:
        print_json(records)
        return 0
    rows = [[format_time(r.time), r.op, r.outcome, r.name_hmac[len("hmac-sha256:"):][:16] or "-",
             str(r.pid or "-"), r.exe or "-"] for r in records]
    if rows:
        print(table(rows, ["time", "op", "outcome", "name (hmac)", "pid", "program"]))
    return 0
