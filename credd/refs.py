"""Secret references: `credd://NAME` and `credd://NAME/FIELD`, and templates using them.

Names may contain `/`, so a reference alone cannot say where the name ends.
The agent decides, in one `get_many` round trip, with this rule:

    credd://a/b/c  is field `c` of entry `a/b`   if entry `a/b` exists and has a field `c`
                   else the entry `a/b/c` (its primary value)
                   else it is missing

A field wins over a longer entry name only when that field really exists, so
adding an entry never silently changes what an existing reference means
unless the shorter entry gains that field. Every reference of one command is
resolved together; if any is missing the whole command fails before
anything runs, naming each missing reference (`NotFound.names`).

Templates (`credd inject`) write a reference between double braces:
`{{ credd://NAME/FIELD }}`; spaces inside the braces are optional. This
module is pure: no I/O, no agent; callers pass a resolver (usually
`Client.get_many`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

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


def shadowed(name: str, fields_of: Callable[[str], Iterable[str] | None]) -> bool:
    """True when `credd://name` resolves to a field of a shorter entry instead of `name`.

    `fields_of(entry)` gives that entry's field names, or None when it does not exist.
    Callers that must reach `name` itself then ask for it by name (get/reveal).
    """
    head, sep, tail = name.rpartition("/")
    fields = fields_of(head) if sep and head else None
    return fields is not None and tail in fields


def field_lookup(metas) -> Callable[[str], list[str] | None]:
    """`fields_of` for `shadowed`, from a list of EntryMeta."""
    by_name = {m.name: [*m.fields, *m.secret_fields] for m in metas}
    return by_name.get
