"""The `credd` command.

`main` first offers the arguments to the stdlib-only fast path
(`credd.cli.fast`: `get`, `status`), which answers the hot commands without
importing argparse or msgspec. Everything else builds the argparse tree from
the command modules below; each module registers its subcommands and imports
its heavy dependencies inside the functions that need them.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: this module is on the fast path
if TYPE_CHECKING:
    import argparse

#: Modules under credd.cli that contribute subcommands, in help order, and the commands each
#: registers: a command builds only its own module's part of the tree (~26 ms less than all
#: of it); tests/cli/test_parser_tree.py holds this table to what the modules register.
COMMANDS = {
    "vault": ("init", "unlock", "lock", "passwd", "status", "check", "rekey"),
    "backup": ("backup", "restore-backup"),
    "entries": ("set", "get", "show", "ls", "rm", "undelete", "purge", "mv", "history",
                "restore", "trash", "generate"),
    "scripting": ("run", "inject", "export", "import", "redact", "aws-credential-process"),
    "lifecycle": ("due", "rotate", "verify", "fingerprint"),
    "incident": ("incident",),
    "scan": ("scan",),
    "agent": ("serve", "stop"),
    "service": ("service", "agent"),
    "keyring_cmd": ("keyring",),
    "slots": ("slots",),
    "audit": ("audit",),
    "grants": ("grant", "session"),
    "mount": ("mount",),
    "migrate": ("migrate",),
    "tokens": ("token",),
    "completion": ("completion",),
}
COMMAND_MODULES = tuple(COMMANDS)
_MODULE_OF = {command: module for module, names in COMMANDS.items() for command in names}

EXIT_CODES = """\
exit codes:
  0  ok
  1  other error; `credd scan`: a stored secret was found; `credd due`: something is due;
     `credd verify`: a check failed; `credd migrate`: an entry is not at its destination
     (conflict, skipped, stopped)
  2  usage error (bad arguments or request)
  3  vault is locked (run `credd unlock`)
  4  no agent reachable (start one: `eval "$(credd agent)"` or `credd serve`)
  5  not found
  6  wrong passphrase
  7  denied (permissions, peer or policy)
  8  integrity error (the vault failed authentication)
"""


def main(argv: list[str] | None = None) -> int:
    """Run `credd ARGS`; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    from credd.cli.fast import fast_main
    code = fast_main(args)
    return full_main(args) if code is None else code


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argparse tree: all of it, or only the part of the module that registers
    `command` (help, errors and options of that command are the same either way)."""
    import argparse
    import importlib

    from credd import __version__

    parser = argparse.ArgumentParser(
        prog="credd",
        description="credd: a credential agent and vault. Secrets go in through stdin or a "
                    "prompt, never as arguments.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"credd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    own = _MODULE_OF.get(command) if command else None
    for name in (own,) if own else COMMAND_MODULES:
        try:
            module = importlib.import_module(f"credd.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"credd.cli.{name}":
                continue  # that command group is not part of this build
            raise
        module.register(sub)
    return parser


def full_main(args: list[str]) -> int:
    if args[:1] == ["__complete"]:  # called back by the completion scripts, not by people
        from credd.cli.completion import complete
        return complete(args[1:])
    if args and not args[0].startswith("-") and args[0] not in _MODULE_OF:
        return unknown_command(args[0])
    parser = build_parser(args[0] if args else None)
    ns = parser.parse_args(args)
    func = getattr(ns, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    from credd.cli.console import run_command
    return run_command(func, ns)


def unknown_command(word: str) -> int:
    """`credd gte`: the nearest command, not argparse's list of all of them (exit 2)."""
    import difflib

    from credd.cli.console import report_error
    from credd.errors import BadRequest
    # of a similar length, as the agent's did-you-mean: `frobnicate` is not `rotate`
    alike = [c for c in _MODULE_OF if abs(len(c) - len(word)) <= max(2, len(word) // 4)]
    near = difflib.get_close_matches(word, alike, n=1)
    guess = f"; did you mean `credd {near[0]}`?" if near else ""
    return report_error(BadRequest(f"unknown command {word!r}{guess} "
                                   f"(`credd --help` lists them all)"))
