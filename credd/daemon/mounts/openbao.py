"""An OpenBao / HashiCorp Vault KV v2 engine, mounted as a store of credd entries.

The entry `team/prod/db` of the mount `team` (engine `secret`, prefix `apps/`)
is the KV secret `secret/data/apps/prod/db`; openbao_records.py says how an
entry's values and metadata are laid out in it.

Caching. A read goes to the server once, and its answer (secrets included) is
kept in the agent's memory, never on disk, until the vault locks. For
`revalidate` seconds a cached entry is served with no request; after that the
next read asks the KV metadata for the current version (one request) and
re-reads the data only when it changed. A listing is cached the same way.

Writes are write-through with check-and-set: the version credd last saw (0 for
a new entry) must still be current on the server, or the write fails with
`Conflict` naming the mount and writes nothing. History and restore are KV
versions; `delete` soft-deletes the latest version (the trash), `undelete`
undeletes it, `purge` destroys every version and the metadata. KV has no
rename: `move` writes the current version under the new name and soft-deletes
the old one (its versions stay on the server, restorable with `undelete`).

When the server cannot be reached or is sealed, the error names the mount;
with `offline_cache` a cached entry is still served (until the vault locks).
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from credd.errors import (
    BadRequest,
    Conflict,
    CreddError,
    Exists,
    LockedError,
    NotFound,
    Unavailable,
)
from credd.protocol import EntryMeta, MountInfo, Set, VersionInfo
from credd.store import SecretEntry
from credd.vault.changes import Change
from credd.vault.model import MetaRecord, SecretRecord, canonical_name, to_entry_meta

from .config import MountConfig
from .openbao_records import custom_of, field_value, from_kv, merged_custom, timestamp, to_kv
from .openbao_session import Session

FRESH_MARGIN = 1.0  # seconds a fresh() answer stays true: the inline read after it is cached


class _Seen:
    """One entry as last read from the server (secrets included: repr hides them)."""

    __slots__ = ("checked", "custom", "meta", "secret")

    def __init__(self, meta: MetaRecord, secret: SecretRecord, custom: dict[str, str],
                 checked: float) -> None:
        self.meta, self.secret, self.custom, self.checked = meta, secret, custom, checked

    @property
    def version(self) -> int:
        return self.meta.version

    @property
    def live(self) -> bool:
        return self.meta.deleted is None

    def __repr__(self) -> str:
        return f"_Seen({self.meta.name!r}, version={self.meta.version}, <redacted>)"


class OpenBaoStore:
    """The `Mount` for one KV v2 engine and path prefix (see the module docstring)."""

    backend = "openbao"
    read_only = False
    remote = True

    def __init__(self, config: MountConfig, resolve: Callable[[str], str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not config.url:
            raise BadRequest(f"mount {config.name!r}: an openbao mount needs --url")
        if importlib.util.find_spec("hvac") is None:  # looked up, not imported: that waits
            raise Unavailable(f"mount {config.name!r}: the openbao backend needs hvac: "
                              "pip install 'credd[openbao]'")
        self.name = config.name
        self.config = config
        self.session = Session(config, resolve)
        self.engine = config.engine or "secret"
        self.kv_prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self._fresh_for = config.revalidate
        self._clock = clock
        self._lock = threading.Lock()           # the cache and the listing
        self._seen: dict[str, _Seen] = {}       # by entry name
        self._absent: dict[str, float] = {}     # names the server had no secret for, and when
        self._listing: list[str] | None = None  # sorted entry names, as of _listed
        self._listed = 0.0
        self._epoch = 0                         # bumped by close(): late answers are dropped

    # ------------------------------------------------------------ names

    def _path(self, name: str) -> tuple[str, str]:
        """(canonical entry name, its KV path below the engine)."""
        name = canonical_name(name)
        head, _sep, rest = name.partition("/")
        if head != self.name or not rest:
            raise BadRequest(f"{name!r} is not an entry of the mount {self.name!r}")
        return name, self.kv_prefix + rest

    def _entry_name(self, path: str) -> str:
        return f"{self.name}/{path[len(self.kv_prefix):]}"

    def _wire(self, meta: MetaRecord) -> EntryMeta:
        """The protocol's record of an entry, marked as this mount's."""
        entry = to_entry_meta(meta)
        entry.mount = self.name
        return entry

    def _where(self) -> str:
        return f"{self.engine}/{self.kv_prefix}"

    # ------------------------------------------------------------ reading

    @property
    def entry_count(self) -> int:
        """Entries of the last listing (0 before one): counting must not go to the network."""
        with self._lock:
            return len(self._listing or ())

    @property
    def audit_key(self) -> bytes:
        raise LockedError("a mount has no audit key of its own: the router uses the vault's")

    def describe(self, name: str) -> EntryMeta:
        return self._wire(self._live(name).meta)

    def get(self, name: str, field: str | None = None) -> str:
        seen = self._live(name)
        return field_value(seen.meta, seen.secret, field)

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        seen = self._live(name)
        if version is not None and version != seen.version:
            seen = self._read(name, version)
            if not seen.live:
                raise NotFound(f"{name!r} has no readable version {version}", names=[name])
        return SecretEntry(self._wire(seen.meta), seen.secret.value or "",
                           dict(seen.secret.fields), seen.secret.notes or "")

    def entries(self) -> Sequence[EntryMeta]:
        """Every listed entry; one not read in this session is shown by name only."""
        names = self._names()
        with self._lock:
            known = {n: s for n in names if (s := self._seen.get(n)) is not None}
        return [self._wire(known[n].meta) if n in known
                else EntryMeta(name=n, version=0, mount=self.name)
                for n in names if n not in known or known[n].live]

    def trash(self) -> list[EntryMeta]:
        """Entries whose latest version is soft-deleted: one request per listed entry."""
        found = []
        for name in self._names():
            try:
                seen = self._current(name, force=True)
            except NotFound:  # purged elsewhere since the listing
                continue
            if not seen.live:
                found.append(self._wire(seen.meta))
        return found

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        name, path = self._path(name)
        meta = self._call(f"the history of {name!r}", name,
                          lambda c: c.secrets.kv.v2.read_secret_metadata(
                              path, mount_point=self.engine))["data"]
        versions = {int(v): info for v, info in meta["versions"].items()}
        current = int(meta["current_version"])
        older = sorted((v for v in versions if v < current), reverse=True)
        made = {v: timestamp(info["created_time"]) or 0.0 for v, info in versions.items()}
        return current, [VersionInfo(version=v, updated=made[v], replaced=made.get(v + 1))
                         for v in older
                         if not versions[v]["destroyed"] and not versions[v]["deletion_time"]]

    # ------------------------------------------------------------ the cache

    def fresh(self, name: str) -> bool:
        """Whether a read of `name` is answered from memory, with no request, for at least
        the next second: the agent then answers it on its event loop instead of a reader
        thread (a cached get costs ~3 us here, a thread hop ~100 us). Never raises."""
        try:
            seen = self._seen.get(canonical_name(name))
        except BadRequest:
            return False
        left = self._fresh_for - (self._clock() - seen.checked) if seen is not None else 0.0
        return left > FRESH_MARGIN

    def revalidate(self, name: str) -> None:
        """Make the next read of `name` ask the server (one metadata request when nothing
        changed): for a caller about to act on what the server holds now, such as a
        migration deciding that a copy is already there (`credd.store.Revalidating`)."""
        name, _ = self._path(name)
        with self._lock:
            self._absent.pop(name, None)
            seen = self._seen.get(name)
            if seen is not None:
                seen.checked = -math.inf

    def _live(self, name: str) -> _Seen:
        seen = self._current(name)
        if not seen.live:
            raise NotFound(f"no entry named {seen.meta.name!r} (it is in the trash)",
                           names=[seen.meta.name])
        return seen

    def _current(self, name: str, force: bool = False) -> _Seen:
        """The current version: cached while fresh, else revalidated (or read)."""
        name, path = self._path(name)
        with self._lock:
            seen = self._seen.get(name)
        now = self._clock()
        if seen is not None and not force and now - seen.checked < self._fresh_for:
            return seen
        try:
            if seen is not None and self._unchanged(name, path, seen):
                seen.checked = now
                return seen
            return self._read(name)
        except Unavailable:
            if seen is not None and self.config.offline_cache:
                return seen
            raise

    def _unchanged(self, name: str, path: str, seen: _Seen) -> bool:
        """Whether the server's metadata still says what `seen` says (one request)."""
        try:
            meta = self._call(f"the metadata of {name!r}", name,
                              lambda c: c.secrets.kv.v2.read_secret_metadata(
                                  path, mount_point=self.engine))["data"]
        except NotFound:
            self._forget(name)
            raise
        latest = meta["versions"].get(str(meta["current_version"]), {})
        deleted = bool(latest.get("deletion_time")) or bool(latest.get("destroyed"))
        return (meta["current_version"] == seen.version and deleted == (not seen.live)
                and (meta.get("custom_metadata") or {}) == seen.custom)

    def _read(self, name: str, version: int | None = None) -> _Seen:
        """Read the data of the current version (cached) or of one older version (not)."""
        key, path = self._path(name)
        epoch = self._epoch
        try:
            answer = self._call(f"{name!r}", name, lambda c: c.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=self.engine,
                raise_on_deleted_version=False))["data"]
        except NotFound:
            if version is None:
                with self._lock:
                    if epoch == self._epoch:
                        self._absent[key] = self._clock()
            raise
        meta = answer["metadata"]
        deleted = timestamp(meta.get("deletion_time")) or (time.time() if meta.get("destroyed")
                                                          else None)
        custom = meta.get("custom_metadata") or {}
        record, secret = from_kv(name, answer.get("data"), custom, int(meta["version"]),
                                 timestamp(meta["created_time"]) or 0.0, deleted)
        seen = _Seen(record, secret, custom, self._clock())
        if version is None:
            self._remember(seen, epoch)
        return seen

    def _remember(self, seen: _Seen, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is None or epoch == self._epoch:
                self._seen[seen.meta.name] = seen
                self._absent.pop(seen.meta.name, None)
                if self._listing is not None and seen.meta.name not in self._listing:
                    self._listing = sorted([*self._listing, seen.meta.name])

    def _forget(self, name: str) -> None:
        with self._lock:
            self._seen.pop(name, None)
            if self._listing is not None and name in self._listing:
                self._listing = [n for n in self._listing if n != name]

    def _names(self) -> list[str]:
        """Every entry name under the prefix: LIST each folder, cached like an entry."""
        with self._lock:
            if self._listing is not None and self._clock() - self._listed < self._fresh_for:
                return self._listing
        epoch = self._epoch
        try:
            names = sorted(self._entry_name(p) for p in self._list_tree(self.kv_prefix))
        except Unavailable:
            if self._listing is not None and self.config.offline_cache:
                return self._listing
            raise
        with self._lock:
            if epoch == self._epoch:
                self._listing, self._listed = names, self._clock()
        return names

    def _list_tree(self, folder: str) -> list[str]:
        try:
            keys = self._call(f"the list of {self.engine}/{folder}", self.name,
                              lambda c: c.secrets.kv.v2.list_secrets(
                                  folder, mount_point=self.engine))["data"]["keys"]
        except NotFound:
            return []
        paths: list[str] = []
        for key in keys:
            if key.endswith("/"):
                paths.extend(self._list_tree(folder + key))
            else:
                paths.append(folder + key)
        return paths

    def _call(self, what: str, name: str, request: Callable[[Any], Any]) -> Any:
        """One request; a missing secret is `NotFound` naming the entry."""
        try:
            return self.session.call(what, request)
        except NotFound:
            raise NotFound(f"no entry named {name!r}", names=[name]) from None

    # ------------------------------------------------------------ writing

    def put(self, request: Set) -> EntryMeta:
        """Write through with check-and-set against the version last seen."""
        name, _ = self._path(request.name)
        change = Change.validate(request)
        seen = self._last_seen(name)
        live = seen is not None and seen.live
        if request.mode == "create" and live:
            raise Exists(f"an entry named {name!r} already exists", names=[name])
        if request.mode == "update" and not live:
            raise NotFound(f"no entry named {name!r}", names=[name])
        base = (seen.meta, seen.secret) if (seen is not None and live and request.merge) else None
        meta, secret = change.apply(name, base, time.time())
        if seen is not None:
            meta.created = seen.meta.created or meta.created
        return self._write(name, meta, secret, seen)

    def _last_seen(self, name: str) -> _Seen | None:
        """The version credd last saw (any age: check-and-set catches a newer one), or
        a fresh read; None when the server has no such secret (also when a read found
        none within `revalidate` seconds: the write's cas=0 still refuses one made since)."""
        with self._lock:
            seen, absent = self._seen.get(name), self._absent.get(name)
        if seen is not None:
            return seen
        if absent is not None and self._clock() - absent < self._fresh_for:
            return None
        try:
            return self._read(name)
        except NotFound:
            return None

    def _write(self, name: str, meta: MetaRecord, secret: SecretRecord,
               seen: _Seen | None) -> EntryMeta:
        """Write a new version of `name` (cas: the version seen, 0 for none), then credd's
        custom metadata when it changed; cache what was written."""
        _, path = self._path(name)
        data = to_kv(meta, secret)
        ours = custom_of(meta)
        theirs = seen.custom if seen is not None else {}
        custom = merged_custom(ours, theirs)
        cas = seen.version if seen is not None else 0
        epoch = self._epoch
        try:
            written = self._call(f"the write of {name!r}", name,
                                 lambda c: c.secrets.kv.v2.create_or_update_secret(
                                     path, data, cas=cas, mount_point=self.engine))["data"]
        except Conflict:
            self._forget(name)
            raise Conflict(self._conflict(name, cas), names=[name]) from None
        meta.version = int(written["version"])
        if custom != theirs:
            self._write_custom(name, path, custom, meta.version)
        meta.updated = timestamp(written["created_time"]) or meta.updated
        meta.deleted = None
        self._remember(_Seen(meta, secret, custom, self._clock()), epoch)
        return self._wire(meta)

    def _write_custom(self, name: str, path: str, custom: dict[str, str], version: int) -> None:
        """credd's metadata, after the data (KV has no one request for both)."""
        try:
            self._call(f"the metadata of {name!r}", name,
                       lambda c: c.secrets.kv.v2.update_metadata(
                           path, custom_metadata=custom, mount_point=self.engine))
        except CreddError as exc:
            self._forget(name)
            raise type(exc)(f"{exc.message} (its value was written as version {version}; "
                            "its kind, tags or plain fields were not: set them again)",
                            names=[name]) from None

    def _conflict(self, name: str, cas: int) -> str:
        if cas == 0:
            return (f"{name!r} was created on the server of mount {self.name!r} by someone "
                    "else meanwhile; nothing was written: read it, then retry")
        return (f"{name!r} changed on the server of mount {self.name!r} since credd read "
                f"version {cas}; nothing was written: read it again, then retry")

    def delete(self, name: str) -> EntryMeta:
        seen = self._live_now(name)
        _, path = self._path(name)
        self._call(f"the delete of {name!r}", name,
                   lambda c: c.secrets.kv.v2.delete_latest_version_of_secret(
                       path, mount_point=self.engine))
        return self._refreshed(seen.meta.name)

    def undelete(self, name: str) -> EntryMeta:
        seen = self._current(name, force=True)
        if seen.live:
            raise NotFound(f"{seen.meta.name!r} is not in the trash", names=[seen.meta.name])
        _, path = self._path(name)
        self._call(f"the undelete of {name!r}", name,
                   lambda c: c.secrets.kv.v2.undelete_secret_versions(
                       path, versions=[seen.version], mount_point=self.engine))
        return self._refreshed(seen.meta.name)

    def purge(self, name: str) -> None:
        """Destroy every version and the metadata; only from the trash, as locally."""
        seen = self._current(name, force=True)
        if seen.live:
            raise NotFound(f"{seen.meta.name!r} is not in the trash: delete it first",
                           names=[seen.meta.name])
        _, path = self._path(name)
        self._call(f"the purge of {name!r}", name,
                   lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(
                       path, mount_point=self.engine))
        self._forget(seen.meta.name)

    def move(self, old: str, new: str) -> EntryMeta:
        """KV has no rename: copy the current version to `new` (which must not exist),
        then soft-delete `old`, whose versions stay on the server."""
        seen = self._live_now(old)
        new, _ = self._path(new)
        if new == seen.meta.name:
            return self._wire(seen.meta)
        meta = msgspec.structs.replace(seen.meta, name=new, updated=time.time())
        try:
            moved = self._write(new, meta, seen.secret, None)
        except Conflict:
            raise Exists(f"an entry named {new!r} already exists on mount {self.name!r} "
                         "(perhaps in the trash)", names=[new]) from None
        self.delete(seen.meta.name)
        return moved

    def restore(self, name: str, version: int) -> EntryMeta:
        """Write an older KV version's data as a new version (check-and-set)."""
        seen = self._live_now(name)
        if version == seen.version:
            raise BadRequest(f"version {version} of {seen.meta.name!r} is already current")
        older = self._read(seen.meta.name, version)
        if not older.live:
            raise NotFound(f"{seen.meta.name!r} has no readable version {version}",
                           names=[seen.meta.name])
        meta = msgspec.structs.replace(older.meta, created=seen.meta.created,
                                       updated=time.time())
        return self._write(seen.meta.name, meta, older.secret, seen)

    def _live_now(self, name: str) -> _Seen:
        seen = self._current(name, force=True)
        if not seen.live:
            raise NotFound(f"no entry named {seen.meta.name!r} (it is in the trash)",
                           names=[seen.meta.name])
        return seen

    def _refreshed(self, name: str) -> EntryMeta:
        return self._wire(self._read(name).meta)

    # ------------------------------------------------------------ the mount

    def info(self) -> MountInfo:
        warnings = []
        expires = self.session.expires
        if expires is not None and expires - time.time() < 3600:
            warnings.append(f"the token expires in {max(0, int(expires - time.time()))} s")
        return MountInfo(name=self.name, backend=self.backend,
                         location=f"{self.config.url} {self._where()}",
                         state=self.session.state, message=self.session.message,
                         warnings=warnings, read_only=self.read_only)

    def close(self) -> None:
        """At lock: drop every cached secret and listing, and the client's token."""
        with self._lock:
            self._epoch += 1
            self._seen.clear()
            self._absent.clear()
            self._listing = None
        self.session.close()
