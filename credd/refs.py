"""Secret references: `credd://NAME` and `credd://NAME/FIELD`, and templates using them.

One rule says what `NAME/FIELD` means, for every way a secret is asked for:
`credd get`, `Client.get`, `credd.resolve`, `get_many` (`credd run`,
`credd inject`) and a mount's credentials. Names may contain `/`, so a path
alone cannot say where the name ends; the agent decides (`locate`):

    a/b/c  is the entry `a/b/c`                     if an entry has that whole name
           else field `c` of entry `a/b`             if entry `a/b` has a field `c`
           else it is missing

An entry's own name always reaches that entry, so a name read from a listing
(the TUI, the git/docker/keyring helpers) needs no special care. Only a
field is ever shadowed, by an entry named `NAME/FIELD`; readers of many
fields at once ask for those with an explicit field (`field_shadowed`).
Every reference of one command is resolved together; if any is missing the
whole command fails before anything runs, naming each missing reference
(`NotFound.names`).

Templates (`credd inject`) write a reference between double braces:
`{{ credd://NAME/FIELD }}`; spaces inside the braces are optional. This
module is pure: no I/O, no agent; callers pass a resolver (usually
`Client.get_many`) or a lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Protocol, TypeVar

from credd.errors import BadRequest, NotFound

SCHEME = "credd://"

#: `{{ credd://... }}`: the reference runs to the closing braces (names may hold spaces).
TEMPLATE_RE = re.compile(r"\{\{\s*(credd://[^{}\r\n]*?)\s*\}\}")

Resolver = Callable[[list[str]], Mapping[str, str]]


def is_ref(value: str) -> bool:
    """True when `value` is a whole reference (env-file values, --env arguments)."""
    return value.startswith(SCHEME)


def parse(ref: str) -> str:
    """Validate a reference and return its path (`NAME[/FIELD]`); BadRequest says why."""
    if not is_ref(ref):
        raise BadRequest(f"{ref[:40]!r} is not a reference: it must start with {SCHEME}")
    path = ref[len(SCHEME):]
    if not path:
        raise BadRequest(f"{SCHEME} needs a name: {SCHEME}NAME or {SCHEME}NAME/FIELD")
    if any(not segment.strip() for segment in path.split("/")):
        raise BadRequest(f"reference {ref!r} has an empty segment")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in path):
        raise BadRequest(f"reference {ref!r} contains a control character")
    return path


def find_template_refs(text: str) -> list[str]:
    """Every distinct reference in a template, in order of first appearance."""
    return list(dict.fromkeys(m.group(1) for m in TEMPLATE_RE.finditer(text)))


def resolve_all(refs: Iterable[str], resolver: Resolver) -> dict[str, str]:
    """All references in one resolver call; a NotFound names every missing one."""
    wanted = list(dict.fromkeys(refs))
    for ref in wanted:
        parse(ref)
    if not wanted:
        return {}
    try:
        values = dict(resolver(wanted))
    except NotFound as exc:
        raise missing_error(exc.names or wanted) from None
    missing = [ref for ref in wanted if ref not in values]
    if missing:
        raise missing_error(missing)
    return values


def missing_error(missing: list[str]) -> NotFound:
    return NotFound(f"{len(missing)} reference{'s' if len(missing) != 1 else ''} not found "
                    f"(nothing was run or written): {', '.join(missing)}", names=missing)


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace each `{{ credd://... }}` with its value (all must be in `values`)."""
    return TEMPLATE_RE.sub(lambda m: values[m.group(1)], template)


class HasFields(Protocol):
    """What `locate` needs of an entry's metadata (protocol.EntryMeta has it)."""

    @property
    def fields(self) -> Mapping[str, str]: ...

    @property
    def secret_fields(self) -> Iterable[str]: ...


M = TypeVar("M", bound=HasFields)


def path_of(ref: str) -> str:
    """`NAME[/FIELD]` of a reference, or of a path given without the scheme."""
    return ref[len(SCHEME):] if ref.startswith(SCHEME) else ref


def locate(ref: str, lookup: Callable[[str], M | None]) -> tuple[str, str | None, M] | None:
    """Where `credd://NAME[/FIELD]` (or the bare path) points, by the rule above:
    (entry name, field or None, the entry's metadata), or None when it is missing.
    `lookup(name)` gives an entry's metadata, or None when there is no such entry."""
    path = path_of(ref)
    meta = lookup(path)
    if meta is not None:
        return path, None, meta
    head, sep, tail = path.rpartition("/")
    if sep and head and tail:
        meta = lookup(head)
        if meta is not None and (tail in meta.fields or tail in meta.secret_fields):
            return head, tail, meta
    return None


def field_shadowed(name: str, field: str, names: Container[str]) -> bool:
    """True when `credd://name/field` reaches an entry of that whole name instead of the
    field (`names`: the entry names there are); ask for such a field with `get(name, field)`."""
    return f"{name}/{field}" in names
