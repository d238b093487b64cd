"""Entry names for what other programs hand the helpers: an injective, reversible escape.

A keyring service, a git username or a registry URL may hold anything: `/`,
control characters, surrounding space, a lone `.`, text that NFC would
change, 500 characters. An entry name is NFC, printable, made of
`/`-separated non-empty segments without surrounding space, and at most 256
characters (credd/vault/model.py `canonical_name`). `segment` escapes as
`%XX` (UTF-8) every character that could break those rules, so that

- `unsegment(segment(t)) == t` for every text, hence distinct texts never
  share a segment (`" u"` and `"u"` are two entries, not one);
- a segment never contains `/` (or the caller's separators), so segments
  joined by them split back unambiguously;
- the vault's canonical form of the result is the result itself.

Readable text stays readable (`my service`, `github.com`, `Ünïcödé`); the
empty text is `%`, which escaping never produces otherwise. `fit` keeps a
name within 256 characters with a hash, marked by `%~`, which escaping never
produces either, so a shortened name can equal no full one; the helpers keep
the real strings in fields, so nothing is lost.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from urllib.parse import unquote

MAX_NAME = 256   # credd.vault.model.MAX_NAME (the thin client cannot import the vault)
MAX_LABEL = 128  # credd.vault.model.MAX_LABEL
EMPTY = "%"
HASHED = "%~"
_TOKEN = re.compile(r"%[0-9A-F]{2}|.", re.DOTALL)
_SAFE_ASCII = frozenset(string.ascii_letters + string.digits + " !$&'()*+,-.:;=@_~")


def _escape(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def _keep(char: str, also: str) -> bool:
    """May `char` stand for itself? Never a mark or anything NFC changes (see segment)."""
    if char in also:
        return False
    if char.isascii():
        return char in _SAFE_ASCII
    return (char.isprintable() and not unicodedata.category(char).startswith("M")
            and unicodedata.normalize("NFC", char) == char)


def segment(text: str, also: str = "") -> str:
    """`text` as one valid name segment; `also` are further characters to escape (the
    caller's own separators)."""
    if not text:
        return EMPTY
    if text in (".", ".."):
        return "%2E" * len(text)
    last = len(text) - 1
    out = "".join(c if _keep(c, also) and not (c == " " and i in (0, last)) else _escape(c)
                  for i, c in enumerate(text))
    if not unicodedata.is_normalized("NFC", out):  # kept characters that compose (jamo)
        out = "".join(c if c.isascii() else _escape(c) for c in out)
    return out


def unsegment(seg: str) -> str:
    """The text `segment` made `seg` from."""
    return "" if seg == EMPTY else unquote(seg, errors="surrogatepass")


def _cut(seg: str, limit: int) -> str:
    """The longest prefix of `seg` of at most `limit` characters that splits no escape."""
    head, size = [], 0
    for token in _TOKEN.findall(seg):
        size += len(token)
        if size > limit:
            break
        head.append(token)
    return "".join(head)


def label(text: str) -> str:
    """`text` as a service label (≤ 128 characters, no control characters, no surrounding
    space): its segment, shortened. A label is for display and search; it needs no
    inverse, the helpers keep the real text in a field."""
    return _cut(segment(text), MAX_LABEL).rstrip(" ") if text else ""


def fit(name: str, head: str) -> str:
    """`name` if it is short enough, else `head` (segments of it) + `%~` + a 128-bit hash
    of `name`."""
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{_cut(head, MAX_NAME - len(HASHED) - len(digest))}{HASHED}{digest}"
