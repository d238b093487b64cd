"""The encoded forms a secret value leaks in, each with its name.

A value rarely leaks only as itself: `echo $TOKEN | base64`, `xxd -p`, a URL
query string and a JSON document carry it encoded. `forms(value)` is the one
list of those forms; `credd run` and `credd redact` conceal them and `credd
scan` reports which one it found. Its own module, not part of credd.redact,
because `credd run` needs it without loading `logging`.

| name        | the bytes                                                            |
| ----------- | -------------------------------------------------------------------- |
| `plain`     | the value as UTF-8                                                   |
| `base64`    | base64 of the value, up to its last character that carries only the  |
|             | value's bits (so base64 of the value *followed by anything*, such as |
|             | echo's newline, is found too; the next character, 2 or 4 bits of    |
|             | the value mixed with what follows, and padding stay outside)         |
| `base64url` | the same in the URL-safe alphabet (`-_` for `+/`)                    |
| `hex`/`HEX` | hexadecimal, lower and upper case                                    |
| `url`       | `quote(v, safe="")`, `quote(v)`, `quote_plus(v)`                     |
| `json`      | the inside of a JSON string: `json.dumps(v)[1:-1]`, and the same     |
|             | with `ensure_ascii=False`                                            |

With `deep=True` (`credd redact --deep`) also the value's base64 *inside a
longer encoded string*, such as `Authorization: Basic base64(user:secret)`:
the characters of its base64 that carry only its bits, at the two byte
alignments other than the start (named `base64` and `base64url` too). That
adds up to four patterns per value, and so set-up time for large vaults.

`form_patterns(values)` compiles them for masking (`credd run`, `credd
redact`): hex as one pattern that ignores case, so a mixed-case dump is
concealed too. `credd scan` names a hex hit `HEX` when its letters are upper
case.

A form identical to an earlier one keeps the earlier name (most tokens'
base64 has neither `+` nor `/`, so it is their base64url too; URL and JSON
encoding leave most tokens unchanged). A form shorter than both the value and
8 bytes is dropped; values shorter than `MIN_LENGTH` have no forms at all.
"""

from __future__ import annotations

import re
from binascii import b2a_base64, hexlify
from collections.abc import Iterable

from credd.mask import MIN_LENGTH, Patterns

NAMES = ("plain", "base64", "base64url", "hex", "HEX", "url", "json")
HEX = ("hex", "HEX")  # one form in two cases: compiled as one pattern that ignores case

#: Values that URL and JSON encoding leave as they are (most tokens): their forms are quicker.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def forms(value: str, *, deep: bool = False) -> dict[bytes, str]:
    """Each distinct encoded form of `value`, mapped to its name."""
    raw = value.encode()
    if len(raw) < MIN_LENGTH:
        return {}
    stable = b2a_base64(raw, newline=False)[:len(raw) * 4 // 3]
    hex_ = hexlify(raw)
    found = {raw: "plain"}
    for form, name in ((stable, "base64"), (stable.translate(_URLSAFE), "base64url"),
                       (hex_, "hex"), (hex_.upper(), "HEX")):
        found.setdefault(form, name)
    if not _UNRESERVED.fullmatch(value):
        for form, name in _escaped(value):
            found.setdefault(form, name)
    for shift in (1, 2) if deep else ():
        # after `shift` unknown bytes, the characters also carrying their bits (or those
        # of what follows) differ; the middle is the same whatever the neighbours are
        text = b2a_base64(b"\0" * shift + raw, newline=False)
        middle = text[(shift * 4 + 2) // 3:(shift + len(raw)) * 4 // 3]
        found.setdefault(middle, "base64")
        found.setdefault(middle.translate(_URLSAFE), "base64url")
    shortest = min(len(raw), 8)
    return {form: name for form, name in found.items() if len(form) >= shortest}


def _escaped(value: str) -> list[tuple[bytes, str]]:
    """URL and JSON encodings (imported here: most values never need them)."""
    import json
    from urllib.parse import quote, quote_plus
    return [(quote(value, safe="").encode(), "url"), (quote(value).encode(), "url"),
            (quote_plus(value).encode(), "url"),
            (json.dumps(value)[1:-1].encode(), "json"),
            (json.dumps(value, ensure_ascii=False)[1:-1].encode(), "json")]


def form_patterns(values: Iterable[str], *, deep: bool = False,
                  background: bool = False) -> Patterns:
    """Every form of every value compiled for masking; hex and HEX as one pattern found
    in any case (as `xxd -p`, `%X` or a mixed-case dump write it)."""
    literal: set[bytes] = set()
    caseless: set[bytes] = set()
    for value in values:
        for form, name in forms(value, deep=deep).items():
            if name in HEX:
                caseless.add(form.lower())
            else:
                literal.add(form)
    return Patterns(literal, caseless=caseless, background=background)
