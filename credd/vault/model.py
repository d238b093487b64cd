"""On-disk records (msgspec, then encrypted), names, and the redacted SecretEntry.

These structs are the file format, separate from the wire's `EntryMeta` so
the two evolve independently; `to_entry_meta` is the one bridge. They are
array-like (positional) for size and speed: new fields go at the end, with
defaults, and old bytes keep decoding. gc=False: they hold only strings,
numbers and flat containers, so they can never be part of a cycle, and
100,000 of them at unlock would otherwise keep the cycle collector busy. For
the same reason MetaRecord's name lists are tuples (the same msgpack arrays
on disk): an empty one is the shared `()`, and the collector stops tracking a
tuple of strings after one look, where 200,000 lists would be traversed by
every full collection for as long as the vault stays unlocked.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator
from typing import TypeVar

import msgspec

from credd.errors import BadRequest
from credd.protocol import EntryMeta
from credd.rules import DEFAULT_KIND, KINDS, MAX_TIME, is_kind
from credd.store import SecretEntry  # noqa: F401 (re-exported: the seam owns it)

MAX_NAME = 256
MAX_LABEL = 128  # field names, tags, service


class MetaRecord(msgspec.Struct, array_like=True, kw_only=True, gc=False, omit_defaults=True):
    """Everything but the secret values: decrypted into the cache at unlock."""

    name: str
    kind: str = DEFAULT_KIND
    service: str = ""
    tags: tuple[str, ...] = ()
    fields: dict[str, str] = {}        # non-secret fields with values
    secret_fields: tuple[str, ...] = ()
    has_value: bool = False
    has_notes: bool = False
    created: float = 0.0
    updated: float = 0.0
    version: int = 1
    rotate_after: float | None = None
    expires: float | None = None
    deleted: float | None = None
    value_changed: float = 0.0         # when the secret value or fields last changed
    pending: float | None = None       # when `stage` kept a pending value (in the secret)
    compromised: float | None = None   # when `incident` marked the value (a new value clears it)


T = TypeVar("T", bound=type)


def redacted(cls: T) -> T:
    """Hide every field of a secret-carrying struct from repr, str and rich
    (msgspec's own __rich_repr__ would print the values)."""
    def hidden(self: object) -> str:
        return f"{type(self).__name__}(<redacted>)"

    def rich(self: object) -> Iterator[tuple[str, str]]:
        return iter((("secrets", "<redacted>"),))

    setattr(cls, "__repr__", hidden)  # noqa: B010 (assigning a method of another class)
    setattr(cls, "__str__", hidden)  # noqa: B010
    setattr(cls, "__rich_repr__", rich)  # noqa: B010
    return cls


@redacted
class SecretRecord(msgspec.Struct, array_like=True, kw_only=True, gc=False, omit_defaults=True):
    """The secret column: decrypted per request, never cached."""

    value: str | None = None
    fields: dict[str, str] = {}        # secret fields
    notes: str | None = None
    pending: str | None = None         # a staged new value, never served as the value


@redacted
class HistoryRecord(msgspec.Struct, array_like=True, kw_only=True, gc=False, omit_defaults=True):
    """One superseded version: its metadata and secrets, and when it was replaced."""

    meta: MetaRecord
    secret: SecretRecord
    replaced: float


_enc = msgspec.msgpack.Encoder()
_meta_dec = msgspec.msgpack.Decoder(MetaRecord)
_secret_dec = msgspec.msgpack.Decoder(SecretRecord)
_history_dec = msgspec.msgpack.Decoder(HistoryRecord)
encode = _enc.encode
decode_meta = _meta_dec.decode
decode_secret = _secret_dec.decode
decode_history = _history_dec.decode


def to_entry_meta(m: MetaRecord | EntryMeta) -> EntryMeta:
    """The wire form, with its own `fields` dict (a caller's edit never reaches the cache);
    also a copy of a wire record.

    Positional, twice as fast as keywords for a first `list` of 100,000: the
    two structs declare the same fields in the same order (a test pins it).
    """
    return EntryMeta(m.name, m.kind, m.service, m.tags, dict(m.fields),
                     m.secret_fields, m.has_value, m.has_notes, m.created, m.updated,
                     m.version, m.rotate_after, m.expires, m.deleted, m.value_changed,
                     m.pending, m.compromised)


def from_entry_meta(e: EntryMeta) -> MetaRecord:
    """The file form of a wire record (the reverse of `to_entry_meta`); on write paths only."""
    return MetaRecord(name=e.name, kind=e.kind, service=e.service, tags=e.tags,
                      fields=dict(e.fields), secret_fields=e.secret_fields,
                      has_value=e.has_value, has_notes=e.has_notes, created=e.created,
                      updated=e.updated, version=e.version, rotate_after=e.rotate_after,
                      expires=e.expires, deleted=e.deleted, value_changed=e.value_changed,
                      pending=e.pending, compromised=e.compromised)


# ---------------------------------------------------------------- validation

def _bad_chars(text: str) -> bool:
    """Control or invisible format characters; `isprintable` clears most text at C speed
    (every category refused here is one it calls unprintable)."""
    return not text.isprintable() and any(
        unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in text)


def canonical_name(name: object) -> str:
    """NFC, no surrounding space, '/'-separated non-empty segments, ≤ 256 characters."""
    if not isinstance(name, str):
        raise BadRequest("an entry name must be text")
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise BadRequest("an entry name cannot be empty")
    if len(name) > MAX_NAME:
        raise BadRequest(f"an entry name is at most {MAX_NAME} characters (got {len(name)})")
    if _bad_chars(name):
        raise BadRequest("an entry name cannot contain control or invisible format characters")
    for segment in name.split("/"):
        if not segment:
            raise BadRequest(f"entry name {name!r} has an empty segment "
                             "(leading, trailing or doubled '/')")
        if segment != segment.strip():
            raise BadRequest(f"entry name {name!r}: a segment cannot start or end with space")
        if segment in (".", ".."):
            raise BadRequest(f"entry name {name!r}: '.' and '..' are not allowed as segments")
    return name


def check_label(what: str, text: object, *, allow_empty: bool = False) -> str:
    """Field names, tags and service: short single-line text without surrounding space."""
    if not isinstance(text, str):
        raise BadRequest(f"{what} must be text")
    text = unicodedata.normalize("NFC", text)
    if not text and allow_empty:
        return text
    if not text or text != text.strip() or len(text) > MAX_LABEL or _bad_chars(text):
        raise BadRequest(f"{what} {text[:MAX_LABEL]!r} must be 1–{MAX_LABEL} characters, "
                         "without control characters or surrounding space")
    return text


def check_kind(kind: object) -> str:
    if not is_kind(kind):
        raise BadRequest(f"entry type {kind!r} must be a lowercase word such as "
                         f"{', '.join(KINDS)}")
    return kind


def check_time(what: str, value: object) -> float | None:
    """A non-negative finite number up to MAX_TIME; 0 and None both mean 'none'."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= MAX_TIME:
        raise BadRequest(f"{what} must be a number of seconds from 0 to {MAX_TIME} "
                         "(the end of the year 9999)")
    return float(value) or None


def check_text(what: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be text")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode (lone surrogate)") from None
    return value
