"""How a credd entry is kept in an OpenBao / Vault KV v2 secret, and back.

The KV data map is what every other client of the server sees (`bao kv get`,
an application reading its secret), so it holds only the entry's values:

- the primary value under `value`, the notes under `notes`;
- every field, secret or not, under its own name (`username`, `password`).

`value` and `notes` are therefore reserved: a field of either name is refused.
credd's own metadata lives in the secret's `custom_metadata` (strings, per
secret, not per version), under `credd.`-prefixed keys written only when they
differ from the default: `credd.kind`, `credd.service`, `credd.tags` (a JSON
list), `credd.plain` (a JSON list of the fields that are not secret),
`credd.rotate_after` (seconds), `credd.expires` and `credd.created` (unix
times). Keys without the prefix belong to others and are kept on every write.

A secret written by another tool maps back naturally: its `value` key (if any)
is the value, every other key a secret field; a value that is not a string
(JSON numbers, objects) is shown as its JSON text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from credd.errors import BadRequest, NotFound
from credd.rules import DEFAULT_KIND
from credd.vault.model import MetaRecord, SecretRecord

VALUE, NOTES = "value", "notes"
OURS = "credd."
MAX_CUSTOM = 512  # bytes in one custom metadata value (OpenBao and Vault)
_KIND, _SERVICE, _TAGS, _PLAIN = "credd.kind", "credd.service", "credd.tags", "credd.plain"
_ROTATE, _EXPIRES, _CREATED = "credd.rotate_after", "credd.expires", "credd.created"


def to_kv(meta: MetaRecord, secret: SecretRecord) -> dict[str, str]:
    """The KV data map of an entry; `BadRequest` for a field named like a reserved key."""
    data: dict[str, str] = {}
    for fields in (meta.fields, secret.fields):
        for name, text in fields.items():
            if name in (VALUE, NOTES):
                raise BadRequest(f"a field cannot be named {name!r} on an OpenBao mount: "
                                 f"the KV key {name!r} holds the entry's {name}")
            data[name] = text
    if secret.value is not None:
        data[VALUE] = secret.value
    if secret.notes is not None:
        data[NOTES] = secret.notes
    return data


def custom_of(meta: MetaRecord) -> dict[str, str]:
    """credd's keys of the custom metadata for `meta` (defaults left out)."""
    given: dict[str, str | None] = {
        _KIND: meta.kind if meta.kind != DEFAULT_KIND else None,
        _SERVICE: meta.service or None,
        _TAGS: _json(list(meta.tags)) if meta.tags else None,
        _PLAIN: _json(sorted(meta.fields)) if meta.fields else None,
        _ROTATE: _number(meta.rotate_after),
        _EXPIRES: _number(meta.expires),
        _CREATED: _number(meta.created),
    }
    custom = {key: text for key, text in given.items() if text is not None}
    for key, text in custom.items():
        if len(text.encode()) > MAX_CUSTOM:
            raise BadRequest(f"{meta.name!r}: its {key[len(OURS):]} take {len(text.encode())} "
                             f"bytes, more than KV custom metadata holds ({MAX_CUSTOM})")
    return custom


def merged_custom(ours: dict[str, str], theirs: dict[str, str] | None) -> dict[str, str]:
    """The whole custom metadata to write: others' keys kept, credd's replaced."""
    kept = {k: v for k, v in (theirs or {}).items() if not k.startswith(OURS)}
    return {**kept, **ours}


def from_kv(name: str, data: dict[str, Any] | None, custom: dict[str, str] | None,
            version: int, updated: float, deleted: float | None
            ) -> tuple[MetaRecord, SecretRecord]:
    """The entry a KV version stands for (`data` None: a deleted version, metadata only)."""
    custom = custom or {}
    plain = set(_list(custom.get(_PLAIN)))
    public: dict[str, str] = {}
    secret = SecretRecord()
    hidden: dict[str, str] = {}
    for key, raw in (data or {}).items():
        text = raw if isinstance(raw, str) else _json(raw)
        if key == VALUE:
            secret.value = text
        elif key == NOTES:
            secret.notes = text
        else:
            (public if key in plain else hidden)[key] = text
    secret.fields = hidden
    created = _float(custom.get(_CREATED))
    meta = MetaRecord(
        name=name, kind=custom.get(_KIND) or DEFAULT_KIND, service=custom.get(_SERVICE, ""),
        tags=tuple(_list(custom.get(_TAGS))), fields=public,
        secret_fields=tuple(sorted(hidden)), has_value=secret.value is not None,
        has_notes=secret.notes is not None,
        created=created or (updated if version == 1 else 0.0), updated=updated,
        version=version, rotate_after=_float(custom.get(_ROTATE)) or None,
        expires=_float(custom.get(_EXPIRES)) or None, deleted=deleted)
    return meta, secret


def field_value(meta: MetaRecord, secret: SecretRecord, field: str | None) -> str:
    """`get`'s answer: the value, or one field (plain or secret); `NotFound` naming what is."""
    if field is None:
        if secret.value is None:
            have = ", ".join(sorted([*meta.fields, *secret.fields])) or "none"
            raise NotFound(f"{meta.name!r} has no value; its fields: {have}", names=[meta.name])
        return secret.value
    found = meta.fields.get(field, secret.fields.get(field))
    if found is None:
        raise NotFound(f"{meta.name!r} has no field {field!r}", names=[meta.name])
    return found


def timestamp(text: str | None) -> float | None:
    """A KV time (RFC 3339, nanoseconds, 'Z') as unix time; None for '' (not deleted)."""
    if not text:
        return None
    head, dot, tail = text.rstrip("Z").partition(".")
    fraction = "." + tail[:6] if dot else ""  # datetime keeps microseconds
    return datetime.fromisoformat(f"{head}{fraction}+00:00").timestamp()


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        items = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return []
    return [str(item) for item in items] if isinstance(items, list) else []


def _number(value: float | None) -> str | None:
    return None if not value else repr(float(value))


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0
