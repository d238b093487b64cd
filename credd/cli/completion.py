"""Shell completion: `credd completion bash|zsh|fish` prints a script to source.

The scripts hold no command lists of their own: they call back into
`credd __complete WORDS...` (the words typed so far, the last one partial),
which walks the argparse tree, so completion can never drift from the
parser. Entry names come from the agent, filtered by prefix on its side;
when it is absent or locked, names simply do not complete.
"""

from __future__ import annotations

import argparse
import sys

SCRIPTS = {
    "bash": """\
_credd_complete() {
    local IFS=$'\\n'
    COMPREPLY=($(credd __complete "${COMP_WORDS[@]:0:COMP_CWORD+1}" 2>/dev/null))
}
complete -o default -o nospace -F _credd_complete credd
""",
    "zsh": """\
#compdef credd
_credd_complete() {
    local -a candidates
    candidates=("${(@f)$(credd __complete "${words[@]:0:$CURRENT}" 2>/dev/null)}")
    compadd -S '' -- ${candidates:#}
}
compdef _credd_complete credd
""",
    "fish": """\
complete -c credd -f -a '(credd __complete (commandline -opc) (commandline -ct) 2>/dev/null)'
""",
}

#: Positional metavars that name an entry.
_ENTRY_METAVARS = ("NAME", "NAME[/FIELD]", "OLD")
#: Commands whose entry names live in the trash.
_TRASH_COMMANDS = ("undelete", "purge")


def register(sub) -> None:
    p = sub.add_parser("completion", help='print a shell completion script, e.g. '
                                          'eval "$(credd completion bash)"')
    p.add_argument("shell", choices=sorted(SCRIPTS))
    p.set_defaults(func=cmd_completion)


def cmd_completion(ns) -> int:
    sys.stdout.write(SCRIPTS[ns.shell])
    return 0


def complete(words: list[str]) -> int:
    """`credd __complete credd WORD... PARTIAL`: print one candidate per line."""
    from credd.cli import build_parser

    *done, partial = words[1:] or [""]
    for candidate in candidates(build_parser(), done, partial):
        if candidate.startswith(partial):
            print(candidate)
    return 0


def candidates(parser: argparse.ArgumentParser, done: list[str], partial: str) -> list[str]:
    """What may follow `done` in `parser`'s command tree."""
    command: list[str] = []
    for word in done:
        sub = _subcommands(parser)
        if word == "--":
            return []  # past `--` the words belong to another program
        if sub and word in sub:
            parser = sub[word]
            command.append(word)
    if partial.startswith("-"):
        return sorted(s for a in parser._actions for s in a.option_strings
                      if a.help != argparse.SUPPRESS)
    if done and _takes_value(parser, done[-1]):
        return []  # an option's value: let the shell complete files
    sub = _subcommands(parser)
    if sub:
        return sorted(sub)
    positionals = [a for a in parser._actions if not a.option_strings]
    given = sum(1 for w in done[len(command):] if not w.startswith("-"))
    if given < len(positionals) and positionals[given].metavar in _ENTRY_METAVARS:
        return entry_names(partial, trash=bool(command) and command[-1] in _TRASH_COMMANDS)
    return []


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _takes_value(parser: argparse.ArgumentParser, word: str) -> bool:
    action = parser._option_string_actions.get(word)
    return action is not None and action.nargs != 0


def entry_names(prefix: str, *, trash: bool = False) -> list[str]:
    """Names the agent holds that start with `prefix`; none when it cannot say."""
    from credd.client import Client
    from credd.errors import CreddError

    try:
        with Client(client_name="credd-completion", timeout=2.0) as client:
            entries = client.trash() if trash else client.list(prefix=prefix)
    except (CreddError, OSError):
        return []
    return [entry.name for entry in entries]
