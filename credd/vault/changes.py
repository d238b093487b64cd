"""A validated `put`: the arguments of protocol.Set checked once, then applied
to the previous version (merge) or from scratch."""

from __future__ import annotations

import msgspec

from credd.errors import BadRequest, NotFound
from credd.protocol import Field, Set
from credd.rules import DEFAULT_KIND
from credd.vault.model import (
    MetaRecord,
    SecretRecord,
    check_kind,
    check_label,
    check_text,
    check_time,
    redacted,
)


@redacted
class Change(msgspec.Struct, kw_only=True):
    """A validated put request, applied to the previous version (merge) or from scratch."""

    kind: str | None
    service: str | None
    tags: list[str] | None
    value: str | None
    fields: list[Field]
    remove: list[str]
    notes: str | None
    rotate_after: float | None
    expires: float | None
    clear_rotate: bool
    clear_expires: bool

    @classmethod
    def validate(cls, request: Set) -> Change:
        """The request's arguments checked; `mode`, `merge` and the name are the caller's."""
        kind, service, tags, value = request.kind, request.service, request.tags, request.value
        notes, rotate_after, expires = request.notes, request.rotate_after, request.expires
        remove_fields = request.remove_fields
        fields = [_field(f) for f in (request.fields or [])]
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise BadRequest("a field name appears twice")
        rotate = check_time("rotate_after", rotate_after)
        expiry = check_time("expires", expires)
        if isinstance(tags, str):
            raise BadRequest("tags must be a list of words")
        return cls(kind=None if kind is None else check_kind(kind),
                   service=None if service is None else check_label("service", service,
                                                                   allow_empty=True),
                   tags=None if tags is None else list(dict.fromkeys(
                       check_label("tag", t) for t in tags)),
                   value=check_text("value", value), fields=fields,
                   remove=[check_label("field name", f) for f in remove_fields],
                   notes=check_text("notes", notes), rotate_after=rotate, expires=expiry,
                   clear_rotate=rotate_after is not None and rotate is None,
                   clear_expires=expires is not None and expiry is None)

    def apply(self, name: str, base: tuple[MetaRecord, SecretRecord] | None,
              now: float) -> tuple[MetaRecord, SecretRecord]:
        if base is None:
            meta, secret = MetaRecord(name=name), SecretRecord()
            self_public, self_secret = {}, {}
        else:
            meta = msgspec.structs.replace(base[0], name=name)
            secret = msgspec.structs.replace(base[1])
            self_public, self_secret = dict(meta.fields), dict(secret.fields)
        for removed in self.remove:
            if self_public.pop(removed, None) is None and self_secret.pop(removed, None) is None:
                raise NotFound(f"{name!r} has no field {removed!r}", names=[name])
        for f in self.fields:
            self_public.pop(f.name, None)
            self_secret.pop(f.name, None)
            (self_secret if f.secret else self_public)[f.name] = f.value
        meta.kind = self.kind or (meta.kind if base else DEFAULT_KIND)
        meta.service = self.service if self.service is not None else meta.service
        meta.tags = tuple(self.tags) if self.tags is not None else meta.tags
        secret.value = self.value if self.value is not None else secret.value
        secret.notes = self.notes if self.notes is not None else secret.notes
        if self.rotate_after is not None or self.clear_rotate or base is None:
            meta.rotate_after = self.rotate_after
        if self.expires is not None or self.clear_expires or base is None:
            meta.expires = self.expires
        meta.fields, secret.fields = self_public, self_secret
        meta.secret_fields = tuple(sorted(self_secret))
        meta.has_value, meta.has_notes = secret.value is not None, secret.notes is not None
        meta.created = meta.created or now
        meta.updated, meta.deleted = now, None
        return meta, secret


def _field(f: object) -> Field:
    if isinstance(f, dict):
        try:
            f = Field(**f)
        except TypeError as exc:
            raise BadRequest(f"bad field: {exc}") from None
    if not isinstance(f, Field):
        raise BadRequest("fields must be protocol.Field records")
    if not isinstance(f.secret, bool):
        raise BadRequest(f"field {f.name!r}: secret must be a boolean")
    return Field(name=check_label("field name", f.name),
                 value=check_text(f"field {f.name!r}", f.value) or "", secret=f.secret)
