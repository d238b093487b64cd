"""A second `EntryStore`: entries in dictionaries, nothing encrypted, nothing on disk.

A test double of the interface (credd/store.py), not a mock of credd's
behaviour: it keeps the rules every store keeps (names, versions, history,
trash, `protocol.Set` semantics) in the plainest way, so that the agent's
handlers can be run against a store that is not the vault. If a handler
reached past the interface into the vault, the tests that use this would fail.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from credd.errors import BadRequest, Exists, NotFound
from credd.protocol import EntryMeta, Set, VersionInfo
from credd.store import SecretEntry


class _Version(msgspec.Struct):
    meta: EntryMeta
    value: str | None
    secrets: dict[str, str]
    notes: str | None
    replaced: float | None = None


class MemoryStore:
    """Entries by name, each a current version plus older ones."""

    def __init__(self, audit_key: bytes = b"k" * 32) -> None:
        self._key = audit_key
        self._current: dict[str, _Version] = {}
        self._older: dict[str, list[_Version]] = {}
        self._records: dict[str, dict[str, bytes]] = {}

    # -- reading

    @property
    def entry_count(self) -> int:
        return sum(v.meta.deleted is None for v in self._current.values())

    @property
    def audit_key(self) -> bytes:
        return self._key

    def _find(self, name: str, *, trashed: bool | None = False) -> _Version:
        found = self._current.get(_canonical(name))
        if found is None or (trashed is not None and (found.meta.deleted is not None) != trashed):
            raise NotFound(f"no entry named {name!r}", names=[name])
        return found

    def describe(self, name: str) -> EntryMeta:
        return msgspec.structs.replace(self._find(name).meta)

    def get(self, name: str, field: str | None = None) -> str:
        version = self._find(name)
        if field is None:
            if version.value is None:
                raise NotFound(f"{name!r} has no value", names=[name])
            return version.value
        if field in version.meta.fields:
            return version.meta.fields[field]
        if field not in version.secrets:
            raise NotFound(f"{name!r} has no field {field!r}", names=[name])
        return version.secrets[field]

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        found = self._find(name)
        if version is not None and version != found.meta.version:
            found = next((v for v in self._older.get(found.meta.name, [])
                          if v.meta.version == version), None)  # type: ignore[assignment]
            if found is None:
                raise NotFound(f"{name!r} has no version {version}", names=[name])
        return SecretEntry(found.meta, found.value or "", dict(found.secrets), found.notes or "")

    def entries(self) -> Sequence[EntryMeta]:
        return [v.meta for _, v in sorted(self._current.items()) if v.meta.deleted is None]

    def trash(self) -> list[EntryMeta]:
        return [v.meta for _, v in sorted(self._current.items()) if v.meta.deleted is not None]

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        found = self._find(name, trashed=None)
        older = sorted(self._older.get(found.meta.name, []), key=lambda v: -v.meta.version)
        return found.meta.version, [VersionInfo(version=v.meta.version, updated=v.meta.updated,
                                                replaced=v.replaced) for v in older]

    # -- writing

    def put(self, request: Set) -> EntryMeta:
        name = _canonical(request.name)
        old = self._current.get(name)
        live = old is not None and old.meta.deleted is None
        if request.mode == "create" and live:
            raise Exists(f"an entry named {name!r} already exists", names=[name])
        if request.mode == "update" and not live:
            raise NotFound(f"no entry named {name!r}", names=[name])
        base = old if (request.merge and live) else None
        public = dict(base.meta.fields) if base else {}
        secrets = dict(base.secrets) if base else {}
        for removed in request.remove_fields:
            if public.pop(removed, None) is None and secrets.pop(removed, None) is None:
                raise NotFound(f"{name!r} has no field {removed!r}", names=[name])
        for f in request.fields or []:
            (secrets if f.secret else public)[f.name] = f.value
        now = time.time()
        value = request.value if request.value is not None else (base.value if base else None)
        notes = request.notes if request.notes is not None else (base.notes if base else None)
        meta = EntryMeta(
            name=name, kind=request.kind or (base.meta.kind if base else "secret"),
            service=request.service if request.service is not None else
            (base.meta.service if base else ""),
            tags=tuple(request.tags) if request.tags is not None else
            (base.meta.tags if base else ()),
            fields=public, secret_fields=tuple(sorted(secrets)), has_value=value is not None,
            has_notes=notes is not None, created=old.meta.created if old else now, updated=now,
            version=old.meta.version + 1 if old else 1,
            rotate_after=_kept(request.rotate_after, base.meta.rotate_after if base else None),
            expires=_kept(request.expires, base.meta.expires if base else None))
        self._replace(name, _Version(meta, value, secrets, notes), now)
        return msgspec.structs.replace(meta)

    def _replace(self, name: str, new: _Version, now: float) -> None:
        old = self._current.get(name)
        if old is not None:
            old.replaced = now
            self._older.setdefault(name, []).append(old)
        self._current[name] = new

    def _set_deleted(self, name: str, deleted: bool) -> EntryMeta:
        found = self._find(name, trashed=not deleted)
        found.meta = msgspec.structs.replace(found.meta, deleted=time.time() if deleted else None)
        return msgspec.structs.replace(found.meta)

    def delete(self, name: str) -> EntryMeta:
        return self._set_deleted(name, True)

    def undelete(self, name: str) -> EntryMeta:
        return self._set_deleted(name, False)

    def purge(self, name: str) -> None:
        found = self._find(name, trashed=True)
        del self._current[found.meta.name]
        self._older.pop(found.meta.name, None)

    def move(self, old: str, new: str) -> EntryMeta:
        found, new = self._find(old), _canonical(new)
        if new in self._current:
            raise Exists(f"an entry named {new!r} already exists", names=[new])
        del self._current[found.meta.name]
        self._older[new] = self._older.pop(found.meta.name, [])
        found.meta = msgspec.structs.replace(found.meta, name=new, updated=time.time())
        self._current[new] = found
        return msgspec.structs.replace(found.meta)

    def restore(self, name: str, version: int) -> EntryMeta:
        found = self._find(name)
        if version == found.meta.version:
            raise BadRequest(f"version {version} of {name!r} is already current")
        older = next((v for v in self._older.get(found.meta.name, [])
                      if v.meta.version == version), None)
        if older is None:
            raise NotFound(f"{name!r} has no version {version}", names=[name])
        now = time.time()
        meta = msgspec.structs.replace(older.meta, version=found.meta.version + 1, updated=now)
        self._replace(found.meta.name, _Version(meta, older.value, dict(older.secrets),
                                                older.notes), now)
        return msgspec.structs.replace(meta)


    # -- the agent's own records (grant_book.Records), as the vault keeps them

    def records(self, kind: str) -> dict[str, bytes]:
        return dict(self._records.get(kind, {}))

    def put_record(self, kind: str, id: str, blob: bytes) -> None:
        self._records.setdefault(kind, {})[id] = blob

    def delete_record(self, kind: str, id: str) -> None:
        self._records.get(kind, {}).pop(id, None)


def _canonical(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip("/") or "//" in name:
        raise BadRequest(f"bad entry name {name!r}")
    return name


def _kept(given: float | None, before: float | None) -> float | None:
    """Set semantics for rotate_after/expires: None keeps, 0 clears."""
    if given is None:
        return before
    return given or None
