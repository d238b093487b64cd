"""`credd grant ...` and `credd session`: lend access without handing out values.

A grant (docs/grants.md) names entries by pattern and a mode: `use` (run
commands with the values, never see one), `read`, `write`. It is used either
by a session (`credd session`: every process started under it, and all their
descendants, are bound to it) or by another uid on a socket of its own
(`--uid`: a sandbox). Grants live in the vault; every change is audited.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from credd.errors import BadRequest, NotFound

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from credd.client import Client
    from credd.protocol import AccessRequest, Grant

MODES = ("use", "read", "write")


def register(sub: Any) -> None:
    import argparse

    from credd.cli.output import arg_type
    from credd.rules import parse_duration

    grant = sub.add_parser("grant", help="lend access to entries to a session or a sandbox uid "
                                         "(docs/grants.md)")
    verbs = grant.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("create", help="make a grant; prints its id")
    _spec_args(p, arg_type(parse_duration), required=True)
    p.add_argument("--uid", type=_uid, metavar="U",
                   help="a sandbox: another user (uid or name) reaches the grant on a socket of "
                        "its own; a `use` grant then needs --command")
    p.add_argument("--json", action="store_true", help="the whole grant as JSON")
    p.set_defaults(func=cmd_create)

    p = verbs.add_parser("ls", help="grants in force, and access requests waiting for you")
    p.add_argument("--all", action="store_true", help="also revoked and expired ones")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = verbs.add_parser("show", help="one grant in full")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = verbs.add_parser("revoke", help="revoke a grant (and every grant made inside it) now")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_revoke)

    for verb, approve in (("approve", True), ("deny", False)):
        p = verbs.add_parser(verb, help=f"{verb} a waiting access request (see `credd grant ls`)")
        p.add_argument("request", metavar="REQUEST_ID")
        p.set_defaults(func=cmd_answer, approve=approve)

    p = sub.add_parser("session", help="run a command bound to a grant, with everything it "
                                       "starts (docs/grants.md)")
    p.add_argument("--grant", metavar="ID", help="an existing grant (without --uid)")
    _spec_args(p, arg_type(parse_duration), required=False)
    p.add_argument("--yes", action="store_true",
                   help="make the grant without asking on the terminal (scripts, CI)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS]")
    p.set_defaults(func=cmd_session)


def _spec_args(p: argparse.ArgumentParser, duration: Callable[[str], float], *,
               required: bool) -> None:
    """What a new grant says: the same flags for `grant create` and `session`."""
    p.add_argument("--names", action="extend", nargs="+", default=[], required=required,
                   metavar="PATTERN", help="entry names or globs (`*` matches anything, `/` "
                                           "too: 'stripe/*'); repeatable")
    p.add_argument("--mode", choices=MODES, required=required,
                   help="use: run commands with the values, never see one; read: get them; "
                        "write: also change the entries")
    p.add_argument("--ttl", type=duration, metavar="D",
                   help="how long it lasts, e.g. 2h (default 8h, at most 30d)")
    p.add_argument("--label", default="", metavar="L", help="what it is for, shown in `ls`")
    p.add_argument("--uses", type=int, metavar="N", help="at most N uses (a value read or a "
                                                         "command run)")
    p.add_argument("--command", dest="commands", action="append", default=[],
                   metavar="PATTERN", help="a command `run` may start, e.g. 'git push **' "
                                           "(`**` ends it: any further arguments); repeatable")
    p.add_argument("--confirm", action="store_true",
                   help="each use waits for you: `credd grant approve REQUEST_ID`")
    p.add_argument("--inject", action="store_true",
                   help="use mode: `credd inject -o FILE` may have the agent write the values "
                        "into a file the program names (which it can then read)")


def _uid(text: str) -> int:
    if text.isdigit():
        return int(text)
    import pwd
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        import argparse
        raise argparse.ArgumentTypeError(f"no user named {text!r}") from None


def _create(c: Client, ns: argparse.Namespace, *, uid: int | None = None,
            label: str = "") -> Grant:
    return c.grant_create(ns.names, ns.mode, ttl=ns.ttl, label=ns.label or label,
                          uses=ns.uses, commands=ns.commands, confirm=ns.confirm,
                          inject=ns.inject, uid=uid)


# ---------------------------------------------------------------- grant

def cmd_create(ns: argparse.Namespace) -> int:
    from credd.cli.output import client, print_json
    with client() as c:
        grant = _create(c, ns, uid=ns.uid)
    if ns.json:
        print_json(grant)
        return 0
    print(grant.id)
    sys.stderr.write(f"credd: {_summary(grant)}\n")
    if grant.uid is not None:
        where = grant.socket or "(no socket: see the agent's log)"
        sys.stderr.write(f"credd: uid {grant.uid} reaches it on {where}\n"
                         f"       in the sandbox: CREDD_SOCK={where} "
                         f"CREDD_AGENT_UID={os.geteuid()}\n")
    return 0


def cmd_ls(ns: argparse.Namespace) -> int:
    from credd.cli.output import client, print_json, table
    with client() as c:
        listed = c.grants(all=ns.all)
    if ns.json:
        print_json(listed)
        return 0
    now = time.time()
    rows = [[g.id, g.mode, _names(g.names), _state(g, now), _uses(g), _where(g), g.label]
            for g in listed.grants]
    if rows:
        print(table(rows, ["id", "mode", "names", "state", "uses", "for", "label"]))
    else:
        sys.stderr.write("no grants in force (make one with `credd grant create`)\n")
    if listed.pending:
        print("\nwaiting for your answer (`credd grant approve|deny REQUEST_ID`):")
        print(table([[r.id, r.grant, _asks(r), _names(r.names), r.program or "-",
                      str(r.pid or "-"), _left(r.expires - now)] for r in listed.pending],
                    ["request", "grant", "asks", "names", "program", "pid", "left"]))
        for r in listed.pending:
            if r.reason:
                print(f"  {r.id}: {r.reason!r}")
    return 0


def _asks(request: AccessRequest) -> str:
    """The op, or for a `request_access` the mode it would widen the grant to."""
    return f"{request.mode or 'more'} access" if request.op == "request_access" else request.op


def cmd_show(ns: argparse.Namespace) -> int:
    from credd.cli.output import client, print_json
    from credd.rules import format_time
    with client() as c:
        listed = c.grants(all=True)
    grant = next((g for g in listed.grants if g.id == ns.id), None)
    if grant is None:
        raise NotFound(f"no grant {ns.id!r}; see `credd grant ls --all`")
    if ns.json:
        print_json(grant)
        return 0
    now = time.time()
    lines = [("id", grant.id), ("label", grant.label or "-"), ("mode", grant.mode),
             ("names", ", ".join(grant.names)), ("state", _state(grant, now)),
             ("created", f"{format_time(grant.created)} by {grant.created_by or '-'}"),
             ("expires", format_time(grant.expires)), ("uses", _uses(grant)),
             ("commands", ", ".join(grant.commands) or "any"),
             ("confirm", "each use" if grant.confirm else "no"),
             ("inject", "into files it names" if grant.inject else "no"),
             ("for", _where(grant)),
             ("made inside", grant.parent or "-")]
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
    return 0


def cmd_revoke(ns: argparse.Namespace) -> int:
    from credd.cli.output import client
    with client() as c:
        grant = c.grant_revoke(ns.id)
    sys.stderr.write(f"credd: revoked {grant.id}; sessions and sockets bound to it are "
                     "refused from their next request\n")
    return 0


def cmd_answer(ns: argparse.Namespace) -> int:
    from credd.cli.output import client
    with client() as c:
        c.grant_answer(ns.request, ns.approve)
    sys.stderr.write(f"credd: {'approved' if ns.approve else 'denied'} {ns.request}\n")
    return 0


# ---------------------------------------------------------------- session

def cmd_session(ns: argparse.Namespace) -> int:
    """Bind this process to a grant (made here, after asking, unless --grant names one), run
    the command under it as a subreaper, end everything it left, close the session."""
    from credd.cli.output import client
    argv = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not argv:
        raise BadRequest("no command given: credd session (--grant ID | --names ... --mode M) "
                         "-- CMD [ARGS]")
    if bool(ns.grant) == bool(ns.names or ns.mode):
        raise BadRequest("say which grant: --grant ID, or --names ... --mode M [--ttl D] to "
                         "make one for this session")
    c = client(timeout=30.0)
    made = None
    try:
        if ns.grant:
            grant_id = ns.grant
        else:
            if not ns.mode:
                raise BadRequest("--mode use|read|write is needed to make a grant")
            if not ns.yes:
                _ask(f"lend {ns.mode} access to {', '.join(ns.names)} for "
                     f"{_duration(ns.ttl)} to `{' '.join(argv)[:60]}` and all it starts?")
            made = _create(c, ns, label=f"session: {os.path.basename(argv[0])}"[:120])
            grant_id = made.id
        return _run_bound(c, grant_id, argv)
    finally:
        if made is not None:
            _quietly(c.grant_revoke, made.id)
        c.close()


def _run_bound(c: Client, grant_id: str, argv: list[str]) -> int:
    from credd import subreaper
    try:
        subreaper.become_subreaper()
    except OSError as exc:
        raise BadRequest(f"credd session cannot bind its command here: {exc.strerror or exc}") \
            from None
    opened = c.session_open(grant_id)
    sys.stderr.write(f"credd: session {opened.session}: {_summary(opened.grant)}\n")
    lost: list[bool] = []
    try:
        pid = subreaper.spawn(argv, {**os.environ, "CREDD_SESSION": opened.session})
        code = subreaper.run(pid, c.fileno(), on_lost=lambda: lost.append(True))
    except OSError as exc:
        raise NotFound(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    finally:
        left = subreaper.end_all()
        if left:
            sys.stderr.write(f"credd: ended {left} process(es) the session left running\n")
        if not lost:
            _quietly(c.session_close, opened.session)
    if lost:
        sys.stderr.write("credd: the agent went away; the session's processes were ended, "
                         "since they could no longer be bound\n")
        return code or 1
    return code


def _ask(question: str) -> None:
    """Confirm on the terminal itself (not stdin: the command's input may be a pipe)."""
    try:  # unbuffered: a buffered "r+" wants a seekable file, and a terminal is not one
        with open("/dev/tty", "rb+", buffering=0) as tty:
            tty.write(f"credd: {question} [y/N] ".encode())
            answer = tty.readline().decode(errors="replace").strip().lower()
    except OSError:
        raise BadRequest("no terminal to confirm the grant on: confirm it with --yes, or make "
                         "it first with `credd grant create` and pass --grant") from None
    if answer not in ("y", "yes"):
        raise BadRequest("not confirmed; nothing was lent")


def _quietly(call: Callable[[str], object], arg: str) -> None:
    from credd.errors import CreddError
    try:
        call(arg)
    except CreddError as exc:
        sys.stderr.write(f"credd: {exc.message}\n")


# ---------------------------------------------------------------- words

def _summary(grant: Grant) -> str:
    return (f"grant {grant.id}: {grant.mode} {_names(grant.names, 80)}, ends in "
            f"{_left(grant.expires - time.time())}"
            + (f", {grant.uses} uses" if grant.uses is not None else "")
            + (", each use confirmed" if grant.confirm else ""))


def _names(names: Sequence[str], width: int = 40) -> str:
    text = ", ".join(names)
    return text if len(text) <= width else text[:width - 1] + "…"


def _state(grant: Grant, now: float) -> str:
    if grant.revoked is not None:
        return "revoked"
    if grant.expires <= now:
        return "expired"
    if grant.uses is not None and grant.used >= grant.uses:
        return "used up"
    return f"ends in {_left(grant.expires - now)}"


def _uses(grant: Grant) -> str:
    return f"{grant.used}/{grant.uses}" if grant.uses is not None else str(grant.used)


def _where(grant: Grant) -> str:
    if grant.uid is None:
        return "sessions"
    return f"uid {grant.uid}" + (f" on {grant.socket}" if grant.socket else "")


def _left(seconds: float) -> str:
    from credd.cli.console import format_duration
    return format_duration(seconds)


def _duration(ttl: float | None) -> str:
    from credd.grants import DEFAULT_TTL
    return _left(DEFAULT_TTL if ttl is None else ttl)
