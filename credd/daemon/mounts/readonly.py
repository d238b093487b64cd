"""What the read-only mounts (env, files) share: writes refused, no trash, no history.

A subclass lists its entries (`entries`, `describe`) and reads one entry's
secrets (`_secrets`); `get` and `reveal` are answered from those two.
"""

from __future__ import annotations

from collections.abc import Sequence

from credd.errors import Denied, NotFound
from credd.protocol import EntryMeta, MountInfo, Set, VersionInfo
from credd.store import SecretEntry


class ReadOnlyMount:
    backend = ""
    read_only = True
    remote = False

    def __init__(self, name: str, location: str) -> None:
        self.name = name
        self.location = location

    # -- what a subclass gives

    def entries(self) -> Sequence[EntryMeta]:
        raise NotImplementedError

    def describe(self, name: str) -> EntryMeta:
        raise NotImplementedError

    def _secrets(self, meta: EntryMeta) -> tuple[str, dict[str, str]]:
        """(primary value or "", secret fields) of the entry `meta` describes."""
        raise NotImplementedError

    def warnings(self) -> list[str]:
        return []

    # -- reading

    @property
    def entry_count(self) -> int:
        return len(self.entries())

    @property
    def audit_key(self) -> bytes:
        """None of its own: the router answers with the local vault's."""
        return b""

    def info(self) -> MountInfo:
        return MountInfo(name=self.name, backend=self.backend, location=self.location,
                         warnings=self.warnings(), read_only=True)

    def close(self) -> None:
        pass

    def get(self, name: str, field: str | None = None) -> str:
        meta = self.describe(name)
        if field is not None and field in meta.fields:
            return meta.fields[field]
        value, secrets = self._secrets(meta)
        if field is None and meta.has_value:
            return value
        if field is not None and field in secrets:
            return secrets[field]
        what = "value" if field is None else f"field {field!r}"
        raise NotFound(f"{meta.name!r} has no {what}; its fields: "
                       f"{', '.join([*meta.fields, *meta.secret_fields]) or 'none'}",
                       names=[meta.name])

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        meta = self.describe(name)
        if version is not None and version != meta.version:
            raise NotFound(f"{meta.name!r} has no version {version} ({self._kept()})",
                           names=[meta.name])
        value, secrets = self._secrets(meta)
        return SecretEntry(meta, value, secrets, "")

    def trash(self) -> list[EntryMeta]:
        return []

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        return self.describe(name).version, []

    def _kept(self) -> str:
        return f"mount {self.name!r} ({self.backend}) keeps only the current value"

    # -- writing

    def _denied(self, name: str) -> Denied:
        return Denied(f"cannot change {name!r}: {self.name} is a read-only mount "
                      f"(backend {self.backend})", names=[name])

    def put(self, request: Set) -> EntryMeta:
        raise self._denied(request.name)

    def delete(self, name: str) -> EntryMeta:
        raise self._denied(name)

    def undelete(self, name: str) -> EntryMeta:
        raise self._denied(name)

    def purge(self, name: str) -> None:
        raise self._denied(name)

    def move(self, old: str, new: str) -> EntryMeta:
        raise self._denied(old)

    def restore(self, name: str, version: int) -> EntryMeta:
        raise self._denied(name)


def not_found(name: str, mount: str) -> NotFound:
    return NotFound(f"no entry named {name!r} in mount {mount!r}", names=[name])
