"""`credd token create/ls/revoke`: scoped tokens on an openbao mount's server, for a
helper elsewhere (a CI job, a container) that talks to OpenBao itself.

`create` prints the token alone on stdout, once (`TOKEN=$(credd token create …)`),
and what it is (accessor, policy, expiry) on stderr; the agent keeps only the
accessor.
"""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from typing import Any


def register(sub: Any) -> None:
    from credd.cli.output import arg_type
    from credd.rules import parse_duration
    duration = arg_type(parse_duration)
    top = sub.add_parser("token", help="mint, list and revoke scoped tokens on an openbao "
                                       "mount's server")
    cmds = top.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    p = cmds.add_parser("create", help="mint a child token limited to some paths of a mount")
    p.add_argument("--mount", required=True, metavar="NAME", help="the openbao mount")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--paths", action="append", metavar="PATHS",
                       help="paths under the mount's prefix, comma-separated or repeated; "
                            "'*' only at the end (e.g. 'prod/*')")
    scope.add_argument("--policy", metavar="NAME", help="use this existing server policy")
    p.add_argument("--ttl", type=duration, default=24 * 3600.0, metavar="D",
                   help="how long the token lives (default 24h)")
    p.add_argument("--read-only", action="store_true", help="read and list only")
    p.add_argument("--uses", type=int, default=0, metavar="N",
                   help="how many requests it may make (default unlimited)")
    p.add_argument("--wrap", nargs="?", type=duration, const=300.0, metavar="D",
                   help="print a response-wrapping token instead, unwrappable once within D "
                        "(default 5m): `bao unwrap` gives the real token")
    p.add_argument("--json", action="store_true", help="the token and its info as JSON")
    p.set_defaults(func=create)

    p = cmds.add_parser("ls", help="the live tokens credd minted")
    p.add_argument("--mount", metavar="NAME", help="only this mount's")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.set_defaults(func=list_)

    p = cmds.add_parser("revoke", help="revoke a token credd minted (and its children)")
    p.add_argument("accessor", metavar="ACCESSOR", help="its accessor, from `credd token ls`")
    p.add_argument("--mount", metavar="NAME", help="the mount (default: the one it was "
                                                   "minted on)")
    p.set_defaults(func=revoke)


def create(ns: Namespace) -> int:
    from credd.cli.output import as_data, client, print_json
    paths = [part.strip() for given in ns.paths or [] for part in given.split(",") if part.strip()]
    with client() as c:
        reply = c.token_create(ns.mount, paths=paths, policy=ns.policy, ttl=ns.ttl,
                               read_only=ns.read_only, uses=ns.uses, wrap=ns.wrap)
    if ns.json:
        print_json({"token": reply.token, "wrapped": reply.wrapped, **as_data(reply.info)})
        return 0
    what = "wrapping token (unwrap it once)" if reply.wrapped else "token"
    sys.stderr.write(f"credd: minted a {what} on mount {reply.info.mount}: accessor "
                     f"{reply.info.accessor}, policy {', '.join(reply.info.policies)}, "
                     f"{_left(reply.info.expires)} left; shown once, not kept by credd\n")
    sys.stdout.write(reply.token + "\n")
    return 0


def list_(ns: Namespace) -> int:
    from credd.cli.output import client, print_json, table
    with client() as c:
        tokens = c.tokens(ns.mount)
    if ns.json:
        print_json(tokens)
        return 0
    rows = [[t.mount, t.accessor, ",".join(t.policies), _left(t.expires),
             str(t.uses_left or "-"), ",".join(t.paths) or "-",
             "read" if t.read_only else "read/write"] for t in tokens]
    if rows:
        print(table(rows, ["mount", "accessor", "policies", "left", "uses", "paths", "access"]))
    return 0


def revoke(ns: Namespace) -> int:
    from credd.cli.output import client
    with client() as c:
        c.token_revoke(ns.accessor, ns.mount)
    sys.stderr.write(f"credd: revoked {ns.accessor}\n")
    return 0


def _left(expires: float | None) -> str:
    from credd.cli.output import format_duration
    return "no expiry" if expires is None else format_duration(max(0.0, expires - time.time()))
