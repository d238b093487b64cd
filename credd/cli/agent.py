"""Agent lifecycle: `credd serve` (the agent in the foreground) and `credd stop`.

`credd agent` (detached, ssh-agent style) lives with the service commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from credd.cli.output import arg_type
from credd.rules import parse_duration

if TYPE_CHECKING:
    import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the agent in the foreground (systemd, launchd, tests)")
    p.add_argument("--socket", metavar="PATH", help="socket path (default: $CREDD_SOCK, "
                   "else $XDG_RUNTIME_DIR/credd/agent.sock)")
    p.add_argument("--vault", metavar="PATH", help="vault file (default: $CREDD_VAULT, "
                   "else the user data dir)")
    p.add_argument("--state-dir", metavar="PATH", help="audit log directory "
                   "(default: $CREDD_STATE_DIR, else the user state dir)")
    p.add_argument("--idle-timeout", type=arg_type(parse_duration), metavar="D", default=None,
                   help="lock after this long without use, e.g. 15m (default 15m)")
    p.add_argument("--max-lifetime", type=arg_type(parse_duration), metavar="D", default=None,
                   help="lock this long after an unlock whatever happens, e.g. 8h (default 8h)")
    p.add_argument("--max-unlock", type=arg_type(parse_duration), metavar="D", default=None,
                   help="the longest idle timeout or lifetime a client may ask for with "
                        "`credd unlock --timeout/--max-lifetime`; longer ones get this "
                        "(default 8h, or the two options above if longer)")
    p.add_argument("--read-timeout", type=arg_type(parse_duration), metavar="D", default=None,
                   help="drop a client that takes longer to send one request (default 10s)")
    p.add_argument("--max-connections", type=int, metavar="N", default=None,
                   help="concurrent connections (default 128)")
    p.add_argument("--seal-after", type=arg_type(parse_duration), metavar="D", default=None,
                   help="seal the vault's metadata snapshot this long after the last write "
                        "(default 30s); lock seals it too")
    p.add_argument("--approval-timeout", type=arg_type(parse_duration), metavar="D",
                   default=None, help="how long a use of a --confirm grant waits for "
                                      "`credd grant approve` before it is refused (default 25s)")
    p.add_argument("--audit-max-bytes", type=int, metavar="N", default=None,
                   help="rotate the audit log past this many bytes (default 10 MiB)")
    p.add_argument("--audit-keep", type=int, metavar="N", default=None,
                   help="rotated audit files to keep, audit.jsonl.1 to .N (default 5)")
    p.add_argument("--allow-insecure-memory", action="store_true",
                   help="start even if the process cannot be made non-dumpable "
                        "or core files cannot be disabled")
    p.set_defaults(func=serve)

    p = sub.add_parser("stop", help="lock the vault and stop the agent")
    p.set_defaults(func=stop)


def serve(ns: argparse.Namespace) -> int:
    from credd import paths
    from credd.daemon import Config
    from credd.daemon import serve as run
    config = Config(socket=ns.socket or paths.socket_path(),
                    vault=ns.vault or paths.vault_path(),
                    state_dir=ns.state_dir or paths.state_dir(),
                    allow_insecure_memory=ns.allow_insecure_memory)
    for name in ("idle_timeout", "max_lifetime", "max_unlock", "read_timeout",
                 "max_connections", "seal_after", "approval_timeout", "audit_max_bytes",
                 "audit_keep"):
        if getattr(ns, name) is not None:
            setattr(config, name, getattr(ns, name))
    for name in ("max_connections", "audit_max_bytes", "audit_keep"):
        if getattr(config, name) < 1:
            from credd.errors import BadRequest
            raise BadRequest(f"--{name.replace('_', '-')} must be at least 1")
    return run(config)


def stop(ns: argparse.Namespace) -> int:
    from credd import paths
    from credd.spawn import stop_agent
    info = stop_agent(paths.socket_path())
    print(f"credd agent (pid {info.pid}) stopped")
    return 0
