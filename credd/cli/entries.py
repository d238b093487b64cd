"""`credd set`, `get`, `show`, `ls` and the other commands on entries.

Secrets never come from arguments (argv is readable by every user through
/proc). A value comes from stdin (--value-stdin), a no-echo prompt
(--prompt) or the generator (--generate). Piped into `set` with none of
these, stdin is the value all the same (`echo hello | credd set NAME`, as
`pass insert -m` and `rbw add` read it): up to EOF, minus one trailing
newline. Notes are secret too: --notes prompts, --notes-stdin reads stdin.
A secret field is named on the command line and its value read separately:

    --secret-field K          prompt for K (no echo) on a terminal; without a
                              terminal, read K from stdin
    --secret-field K=@PATH    read K from a file (`@-` is stdin), e.g. <(pass show x)
    --secret-field K=VALUE    refused, with this explanation

Only one secret can come from stdin per command.
"""

from __future__ import annotations

import sys
import time

from credd.cli import output
from credd.cli.output import arg_type, client
from credd.errors import BadRequest
from credd.rules import (
    DEFAULT_KIND,
    DEFAULT_ROTATION,
    GENERATED_LENGTH,
    LABELS,
    entry_state,
    explain,
    format_date,
    format_time,
    kind_lines,
    parse_date,
    parse_period,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

    from credd.protocol import EntryMeta, MountInfo

DEFAULT_LENGTH = GENERATED_LENGTH
DEFAULT_WORDS = 5
HIDDEN = "•••••• (hidden: --reveal shows it)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_set(sub)

    p = sub.add_parser("get", help="print a secret (NAME, NAME/FIELD or credd://NAME/FIELD)")
    p.add_argument("ref", metavar="NAME[/FIELD]")
    p.add_argument("-n", dest="newline", action="store_false",
                   help="no trailing newline")
    p.add_argument("--json", action="store_true",
                   help="print {name, field, value} as JSON (the entry and field it resolved to)")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("show", help="show an entry (secrets hidden unless --reveal)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--reveal", action="store_true", help="include secret values")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("ls", help="list entries (PATTERN: a substring, or a glob with * ? [)")
    p.add_argument("pattern", nargs="?", metavar="PATTERN")
    p.add_argument("--service", metavar="S")
    p.add_argument("--kind", "--type", dest="kind", metavar="K", help="entries of this kind")
    p.add_argument("--tag", metavar="T")
    p.add_argument("--due", action="store_true", help="only entries expired or due for rotation "
                                                       "(their `state`)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_ls)

    for name, helptext, func in (("rm", "move an entry to the trash", cmd_rm),
                                 ("undelete", "bring an entry back from the trash", cmd_undelete),
                                 ("purge", "destroy an entry in the trash, with its history",
                                  cmd_purge)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name", metavar="NAME")
        if name == "purge":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.set_defaults(func=func)

    p = sub.add_parser("mv", help="rename an entry")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.set_defaults(func=cmd_mv)

    p = sub.add_parser("history", help="list the versions of an entry")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("restore", help="make an older version current again")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION", type=int)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("trash", help="list deleted entries")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_trash)

    p = sub.add_parser("generate", help="print a random password (nothing is stored)")
    p.add_argument("length", nargs="?", type=int, metavar="LEN",
                   help=f"characters (default {DEFAULT_LENGTH}), or words with --words "
                        f"(default {DEFAULT_WORDS})")
    p.add_argument("--words", action="store_true", help="pronounceable words joined by -")
    p.add_argument("--no-symbols", action="store_true", help="letters and digits only")
    p.set_defaults(func=cmd_generate)


def _register_set(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "set", help="create or change an entry (secrets from stdin or a prompt, never argv)",
        description=__doc__.split("\n", 2)[2], epilog=_kinds_help(),
        formatter_class=_raw_formatter())
    p.add_argument("name", metavar="NAME")
    value = p.add_mutually_exclusive_group()
    value.add_argument("--value-stdin", action="store_true",
                       help="read the value from stdin (to EOF, minus one trailing newline); "
                            "piped stdin is read so without it too")
    value.add_argument("--prompt", action="store_true", help="type the value (no echo)")
    value.add_argument("--generate", nargs="?", type=int, const=DEFAULT_LENGTH, metavar="LEN",
                       help=f"generate a random value (default {DEFAULT_LENGTH} characters)")
    p.add_argument("--kind", "--type", dest="kind", metavar="K",
                   help=f"what the entry is: a kind listed below or another lowercase word "
                        f"(a new entry without one is a {DEFAULT_KIND})")
    p.add_argument("--service", metavar="S")
    p.add_argument("--field", action="append", default=[], metavar="K=V",
                   help="a non-secret field (repeatable)")
    p.add_argument("--secret-field", action="append", default=[], metavar="K[=@PATH]",
                   help="a secret field, read from a prompt, stdin or a file (repeatable)")
    p.add_argument("--remove-field", action="append", default=[], metavar="K")
    notes = p.add_mutually_exclusive_group()
    notes.add_argument("--notes", action="store_true",
                       help="type the notes at a prompt (no echo: notes may hold secrets)")
    notes.add_argument("--notes-stdin", action="store_true",
                       help="read the notes from stdin (to EOF, minus one trailing newline)")
    p.add_argument("--tag", action="append", metavar="T", help="a tag (repeatable; replaces "
                                                               "the entry's tags)")
    p.add_argument("--rotate-after", type=arg_type(parse_period), metavar="D",
                   help="rotation period, e.g. 90d, 12w, 1y or 1h30m; `never`; or `default` "
                        "(the entry type's, from config.toml)")
    p.add_argument("--expires", type=arg_type(parse_date), metavar="DATE",
                   help="expiry: 2027-01-31 (valid through that day, local time) or a time "
                        "such as 2027-01-31T12:00:00Z")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--create", action="store_true", help="fail if the entry exists")
    mode.add_argument("--update", action="store_true", help="fail if the entry does not exist")
    p.add_argument("--replace", action="store_true",
                   help="replace the whole entry instead of changing only what is given")
    p.add_argument("--verify-cmd", metavar="CMD",
                   help="a command that proves the credential works, with credd:// references "
                        "(`credd verify`; '' removes it)")
    p.add_argument("--json", action="store_true", help="print the stored entry as JSON")
    p.set_defaults(func=cmd_set)


def _kinds_help() -> str:
    return "entry kinds (--kind):\n" + "\n".join(f"  {line}" for _, line in kind_lines())


def _raw_formatter() -> type[argparse.HelpFormatter]:
    import argparse
    return argparse.RawDescriptionHelpFormatter


# ---------------------------------------------------------------- set

def cmd_set(ns: argparse.Namespace) -> int:
    from credd.protocol import Field
    fields = [Field(name=k, value=v, secret=False) for k, v in map(_key_value, ns.field)]
    secret_fields, value, notes = _read_secrets(ns)
    fields += [Field(name=k, value=v, secret=True) for k, v in secret_fields]
    if ns.verify_cmd is not None:
        from credd.cli.lifecycle import verify_field
        key, command = verify_field(ns.verify_cmd)
        if command:
            fields.append(Field(name=key, value=command, secret=False))
        else:
            ns.remove_field.append(key)
    if value is None and notes is None and not (fields or _changes_metadata(ns)):
        raise BadRequest(f"nothing to store in {ns.name}: pipe the value in "
                         f"(`echo VALUE | credd set {ns.name}`), or use --prompt, --generate, "
                         f"--field or --secret-field")
    mode = "create" if ns.create else "update" if ns.update else "upsert"
    with client() as c:
        entry = c.set(ns.name, kind=ns.kind, service=ns.service, tags=ns.tag, value=value,
                      fields=fields or None, remove_fields=ns.remove_field, notes=notes,
                      rotate_after=ns.rotate_after, expires=ns.expires, mode=mode,
                      merge=not ns.replace)
    if ns.json:
        output.print_json(entry)
    else:
        generated = f" (generated a {ns.generate}-character value)" if ns.generate else ""
        print(f"stored {entry.name}, version {entry.version}{generated}")
    return 0


def _changes_metadata(ns: argparse.Namespace) -> bool:
    """Whether `set` was given anything besides secrets (so it is not a write of nothing)."""
    return any(x is not None for x in (ns.kind, ns.service, ns.tag, ns.rotate_after,
                                       ns.expires)) or bool(ns.remove_field) or ns.replace


def _key_value(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise BadRequest(f"--field expects K=V, got {spec!r}")
    return key, value


def _read_secrets(ns: argparse.Namespace
                  ) -> tuple[list[tuple[str, str]], str | None, str | None]:
    """The secret fields, the value and the notes, each from its one source; stdin at most
    once. Piped stdin that nothing else reads is the value (empty stdin: no value)."""
    plan = [_secret_source(spec) for spec in ns.secret_field]
    stdin_users = ([key for key, source in plan if source == "-"] + ["value"] * ns.value_stdin
                   + ["notes"] * ns.notes_stdin)
    if len(stdin_users) > 1:
        raise BadRequest(f"only one secret can come from stdin, not {', '.join(stdin_users)}: "
                         f"give the others with --secret-field K=@FILE or at a prompt")
    fields = [(key, _read_source(ns.name, key, source)) for key, source in plan]
    value: str | None
    if ns.generate is not None:
        value = generate_password(ns.generate)
    elif ns.value_stdin or ns.prompt:
        value = output.read_secret(f"value of {ns.name}: ", from_stdin=ns.value_stdin,
                                   confirm=True, flag="--value-stdin", whole=True)
    elif not stdin_users and sys.stdin is not None and not sys.stdin.isatty():
        value = output.stdin_text() or None
    else:
        value = None
    notes = None
    if ns.notes or ns.notes_stdin:
        notes = output.read_secret(f"notes of {ns.name}: ", from_stdin=ns.notes_stdin,
                                   flag="--notes-stdin", whole=True)
    return fields, value, notes


def _secret_source(spec: str) -> tuple[str, str | None]:
    """(key, source) where source is None (prompt, or stdin without a terminal), '-' or a path."""
    key, sep, rest = spec.partition("=")
    if not key:
        raise BadRequest(f"--secret-field needs a name, got {spec!r}")
    if not sep:
        return key, (None if sys.stdin.isatty() else "-")
    if not rest.startswith("@") or rest == "@":
        raise BadRequest(f"--secret-field {key}=... would put a secret on the command line, "
                         f"where other users can read it: use --secret-field {key} (prompt or "
                         f"stdin) or --secret-field {key}=@FILE")
    return key, rest[1:]


def _read_source(name: str, key: str, source: str | None) -> str:
    if source in (None, "-"):
        return output.read_secret(f"{name}/{key}: ", from_stdin=source == "-", confirm=True,
                                  whole=True)
    try:
        with open(source, "rb") as f:
            data = f.read().decode("utf-8")
    except OSError as exc:
        raise BadRequest(f"cannot read {key} from {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadRequest(f"{source} is not UTF-8 text; nothing was changed") from None
    value = data.removesuffix("\n")
    if not value:
        raise BadRequest(f"{source} is empty; nothing was changed")
    return value


# ---------------------------------------------------------------- read

def cmd_get(ns: argparse.Namespace) -> int:
    from credd.cli.console import write_stdout
    from credd.protocol import Get
    with client() as c:
        secret = c.call(Get(name=ns.ref))  # NAME/FIELD: the agent resolves it (credd.refs)
    if ns.json:
        output.print_json(secret)
        return 0
    write_stdout(secret.value.encode("utf-8") + (b"\n" if ns.newline else b""))
    return 0


def cmd_show(ns: argparse.Namespace) -> int:
    from credd.cli.lifecycle import show_rows
    with client() as c:
        shown = c.reveal(ns.name) if ns.reveal else None
        meta = shown.entry if shown is not None else c.describe(ns.name)
        lifecycle, prints = show_rows(c, meta)
    if ns.json:
        output.print_json({**output.as_data(shown or meta), "fingerprints": prints,
                           "lifecycle": dict(lifecycle)})
        return 0
    rows = [("name", meta.name), ("kind", meta.kind)]
    if meta.mount:
        rows.append(("mount", meta.mount))
    if meta.service:
        rows.append(("service", meta.service))
    if meta.tags:
        rows.append(("tags", ", ".join(meta.tags)))
    if meta.has_value:
        rows.append(("value", shown.value if shown else _hidden(prints.get(""))))
    rows += [(f"field {k}", v) for k, v in meta.fields.items()]
    rows += [(f"field {k}", shown.secret_fields.get(k, "") if shown else _hidden(prints.get(k)))
             for k in meta.secret_fields]
    if meta.has_notes:
        rows.append(("notes", shown.notes if shown else HIDDEN))
    rows += [("version", str(meta.version)), ("updated", format_time(meta.updated)),
             ("created", format_time(meta.created))]
    if meta.last_used is not None:
        rows.append(("last used", format_time(meta.last_used)))
    if meta.expires:
        rows.append(("expires", format_date(meta.expires)))
    reason = "" if lifecycle else explain(meta, time.time())[1]  # from an older agent
    rows += lifecycle or ([("state", reason)] if reason else [])
    if meta.deleted:
        rows.append(("deleted", format_time(meta.deleted)))
    width = max(len(k) for k, _ in rows) + 1
    print("\n".join(f"{k + ':':<{width}} {v}" for k, v in rows))
    return 0


def _hidden(fingerprint: str | None) -> str:
    """A hidden secret, with its fingerprint: what it is, without a character of it."""
    return f"{HIDDEN} {fingerprint}" if fingerprint else HIDDEN


def cmd_ls(ns: argparse.Namespace) -> int:
    filters = {"service": ns.service, "kind": ns.kind, "tag": ns.tag, "due": ns.due}
    pattern = ns.pattern or ""
    glob = any(ch in pattern for ch in "*?[")
    if glob:
        cut = min(pattern.index(ch) for ch in "*?[" if ch in pattern)
        filters["prefix"] = pattern[:cut]
    elif pattern:
        filters["contains"] = pattern
    from credd.cli.lifecycle import periods_of
    with client() as c:
        entries = c.list(**filters)
        _warn_unlisted(c.status().mounts)
        periods = periods_of(c)
    if glob:
        from fnmatch import fnmatchcase
        entries = [e for e in entries if fnmatchcase(e.name, pattern)]
    _print_entries(entries, ns.json, periods)
    return 0


def _warn_unlisted(mounts: Sequence[MountInfo]) -> None:
    """A mount that cannot list now is left out of `ls`: say so, on stderr."""
    for m in mounts:
        if m.state not in ("ok", "locked"):
            print(f"credd: mount {m.name} ({m.state}): its entries are not listed: {m.message}",
                  file=sys.stderr)


def _print_entries(entries: Sequence[EntryMeta], as_json: bool,
                   periods: Mapping[str, float] = DEFAULT_ROTATION) -> None:
    now = time.time()
    if as_json:  # the STATE column as `state`, with the data of every entry
        output.print_json([{**output.as_data(e), "state": entry_state(e, now, periods)}
                           for e in entries])
        return
    mounted = any(e.mount for e in entries)  # the MOUNT column only when there is one
    rows = [[e.name, e.kind, e.service, ",".join(e.tags), format_time(e.deleted or e.updated),
             "COMPROMISED" if e.compromised is not None else LABELS[entry_state(e, now, periods)],
             *([e.mount or "-"] if mounted else [])]
            for e in entries]
    if rows:
        print(output.table(rows, ["NAME", "KIND", "SERVICE", "TAGS", "UPDATED", "STATE",
                                  *(["MOUNT"] if mounted else [])]))


def cmd_history(ns: argparse.Namespace) -> int:
    with client() as c:
        history = c.history(ns.name)
    if ns.json:
        output.print_json(history)
        return 0
    rows = [[str(v.version), format_time(v.updated), format_time(v.replaced)]
            for v in sorted(history.versions, key=lambda v: -v.version)]
    print(f"{history.name}: current version {history.current}")
    if rows:
        print(output.table(rows, ["VERSION", "WRITTEN", "REPLACED"]))
    return 0


def cmd_trash(ns: argparse.Namespace) -> int:
    with client() as c:
        _print_entries(c.trash(), ns.json)
    return 0


# ---------------------------------------------------------------- change

def cmd_rm(ns: argparse.Namespace) -> int:
    with client() as c:
        c.delete(ns.name)
    print(f"moved {ns.name} to the trash (undo: credd undelete {ns.name})")
    return 0


def cmd_undelete(ns: argparse.Namespace) -> int:
    with client() as c:
        entry = c.undelete(ns.name)
    print(f"restored {entry.name} from the trash")
    return 0


def cmd_purge(ns: argparse.Namespace) -> int:
    if not ns.yes:
        if not sys.stdin.isatty():
            raise BadRequest("purge destroys the entry and its history: add --yes to confirm")
        answer = input(f"destroy {ns.name} and all its versions for good? type its name: ")
        if answer != ns.name:
            print("nothing was purged")
            return 1
    with client() as c:
        c.purge(ns.name)
    print(f"purged {ns.name}")
    return 0


def cmd_mv(ns: argparse.Namespace) -> int:
    with client() as c:
        entry = c.move(ns.old, ns.new)
    print(f"renamed {ns.old} to {entry.name}")
    return 0


def cmd_restore(ns: argparse.Namespace) -> int:
    with client() as c:
        entry = c.restore(ns.name, ns.version)
    print(f"restored version {ns.version} of {entry.name} as version {entry.version}")
    return 0


# ---------------------------------------------------------------- generate

SYMBOLS = "-_.,:;!?@#%^&*+=~"  # no quotes, backslash, $ or space: safe to paste in a shell
_CONSONANTS, _VOWELS = "bdfghjklmnprstvz", "aeiou"


def generate_password(length: int = DEFAULT_LENGTH, *, symbols: bool = True) -> str:
    """Uniformly random characters from letters, digits and (optionally) shell-safe symbols."""
    import secrets
    import string
    if not 8 <= length <= 4096:
        raise BadRequest(f"a generated value must be 8 to 4096 characters, not {length}")
    alphabet = string.ascii_letters + string.digits + (SYMBOLS if symbols else "")
    return "".join(secrets.choice(alphabet) for _ in range(length))


def generate_words(count: int = DEFAULT_WORDS) -> str:
    """Words of two consonant-vowel-consonant syllables: ~20.6 bits each (1280² choices)."""
    import secrets
    if not 3 <= count <= 64:
        raise BadRequest(f"use 3 to 64 words, not {count}")

    def syllable() -> str:
        return (secrets.choice(_CONSONANTS) + secrets.choice(_VOWELS)
                + secrets.choice(_CONSONANTS))

    return "-".join(syllable() + syllable() for _ in range(count))


def cmd_generate(ns: argparse.Namespace) -> int:
    if ns.words:
        print(generate_words(ns.length or DEFAULT_WORDS))
    else:
        print(generate_password(ns.length or DEFAULT_LENGTH, symbols=not ns.no_symbols))
    return 0
