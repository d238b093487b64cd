"""The agent's mount table: the file as last loaded, and the mounts open while unlocked.

The file is re-read when it changes, noticed by one stat at each request that
routes a name (no inotify, no timer): `credd mount add` needs no signal to the
agent. A file that does not load keeps the last good table in force and says
why (`error`, in `status`). Mounts open when the router is first needed after
an unlock, with the local vault's values for their `credd://` references; they
close at lock, and when their table entry changes or goes. A mount that cannot
open stays in the table as a `Broken` stand-in, so its names still go to it
(an error naming it) and never fall through to the local vault; it is tried
again after `RETRY` seconds.

All changes happen on the event loop (the thread that made the table);
reader threads get the router in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from credd import refs
from credd.config import Watched
from credd.errors import BadRequest, CreddError, LockedError, NotFound, Unavailable
from credd.protocol import EntryMeta, MountInfo, Set, VersionInfo
from credd.store import EntryStore, SecretEntry

from ..router import Router, first_segment
from . import BACKENDS, Mount, Resolve
from .config import READ_ONLY, MountConfig, table

log = logging.getLogger("credd.agent")

RETRY = 5.0  # seconds before a mount that failed to open is tried again

#: Records that a mount read one of its credentials from the local vault.
Audit = Callable[[str, bytes], None]


class MountTable:
    def __init__(self, path: str, audit: Audit) -> None:
        self.path = path
        self.error = ""  # why the file was not loaded ("" when the table in force is the file's)
        self._audit = audit
        self._file: Watched[dict[str, MountConfig]] = Watched(path, table, {}, "mount table")
        self._configs: dict[str, MountConfig] = {}
        self._open: dict[str, tuple[MountConfig, Mount]] = {}
        self._router: Router | None = None
        self._local: EntryStore | None = None
        self._retry_at = 0.0
        self._owner = threading.get_ident()

    # ------------------------------------------------------------ the file

    def reload(self) -> bool:
        """Re-read the file if it changed since last time; True when the table changed."""
        configs = self._file.current()
        self.error = self._file.error
        if configs == self._configs:
            return False
        log.info("mount table %s: %s", self.path, ", ".join(configs) or "no mounts")
        self._configs = configs
        return True

    def mount_of(self, name: str) -> str:
        """The mount in the table that serves `name` ("" for the local vault)."""
        segment = first_segment(name)
        return segment if segment in self._configs else ""

    # ------------------------------------------------------------ open mounts

    def router(self, local: EntryStore) -> Router:
        """The router in force. On the event loop, a changed file is loaded first and the
        mounts it adds are opened; reader threads take the router as it is."""
        if threading.get_ident() == self._owner:
            changed = self.reload()
            if (changed or self._router is None or local is not self._local
                    or (self._retry_at and time.monotonic() >= self._retry_at)):
                self._rebuild(local)
        router = self._router
        if router is None:
            raise LockedError("the vault is locked: run `credd unlock`")
        return router

    def _rebuild(self, local: EntryStore) -> None:
        for name, (config, mount) in list(self._open.items()):
            if self._configs.get(name) != config or local is not self._local:
                del self._open[name]
                _close(mount)
        self._local, self._retry_at = local, 0.0
        mounts: dict[str, Mount] = {}
        for name, config in self._configs.items():
            if name not in self._open:
                opened = self._try_open(config, local)
                if isinstance(opened, Broken):
                    mounts[name], self._retry_at = opened, time.monotonic() + RETRY
                    continue
                self._open[name] = config, opened
            mounts[name] = self._open[name][1]
        self._router = Router(local, mounts)

    def _try_open(self, config: MountConfig, local: EntryStore) -> Mount:
        try:
            return BACKENDS[config.backend](config, self._resolver(local))
        except Exception as exc:  # a backend's bug or missing extra must not stop the agent
            why = (exc.message if isinstance(exc, CreddError)
                   else f"{exc.name} is not installed (pip install 'credd[{config.backend}]')"
                   if isinstance(exc, ModuleNotFoundError) else _describe(exc))
            log.warning("mount %s (%s) did not open: %s", config.name, config.backend, why)
            return Broken(config, why)

    def _resolver(self, local: EntryStore) -> Resolve:
        """`credd://NAME[/FIELD]` → the local vault's value (the references' own rule)."""
        def lookup(name: str) -> EntryMeta | None:
            try:
                return local.describe(name)
            except (NotFound, BadRequest):
                return None

        def resolve(ref: str) -> str:
            path = refs.parse(ref)
            if first_segment(path) in self._configs:
                raise BadRequest(f"{ref}: a mount's credentials are entries of the local vault, "
                                 "not of a mount")
            found = refs.locate(path, lookup)
            name, field = (path, None) if found is None else found[:2]
            value = local.get(name, field)  # a missing one: the vault's own NotFound
            self._audit(name, local.audit_key)
            return value

        return resolve

    def close(self) -> None:
        """Close every mount (at lock): their caches, tokens and credentials go."""
        opened, self._open, self._router, self._local = self._open, {}, None, None
        for _, mount in opened.values():
            _close(mount)

    # ------------------------------------------------------------ status

    def infos(self) -> list[MountInfo]:
        """Each mount's state, with the local entries it hides (while unlocked)."""
        router = self._router
        if router is None:
            return [MountInfo(name=c.name, backend=c.backend, location=location(c), state="locked",
                              read_only=c.backend in READ_ONLY) for c in self._configs.values()]
        infos = []
        for name, mount in router.mounts.items():
            info = _info(mount)
            hidden = router.hidden(name)
            if hidden:
                info.warnings.append(f"{hidden} local entr{'y' if hidden == 1 else 'ies'} under "
                                     f"{name}/ {'is' if hidden == 1 else 'are'} hidden while "
                                     "this mount is in the table")
            infos.append(info)
        return infos


def location(config: MountConfig) -> str:
    """Where a mount's entries come from, without any credential."""
    if config.backend == "openbao":
        return f"{config.url.rstrip('/')}/v1/{config.engine}/{config.prefix}"
    return config.dir if config.backend == "files" else f"${config.env_prefix}*"


def _info(mount: Mount) -> MountInfo:
    try:
        info = mount.info()
    except Exception as exc:
        return MountInfo(name=mount.name, backend=mount.backend, state="error",
                         message=f"its state cannot be read: {_describe(exc)}")
    return MountInfo(name=info.name, backend=info.backend, location=info.location,
                     state=info.state, message=info.message, warnings=list(info.warnings),
                     read_only=mount.read_only)


def _close(mount: Mount) -> None:
    try:
        mount.close()
    except Exception as exc:
        log.warning("mount %s did not close cleanly: %s", mount.name, _describe(exc))


def _describe(exc: BaseException) -> str:
    """An unexpected exception by type only: its text could quote a credential."""
    return f"{type(exc).__name__} (a bug in the backend; see the agent's log)"


class Broken:
    """A mount that did not open: its names stay its own and fail with the reason."""

    remote = False

    def __init__(self, config: MountConfig, why: str) -> None:
        self.name, self.backend, self.why = config.name, config.backend, why
        self.read_only = config.backend in READ_ONLY
        self._location = location(config)

    def _error(self) -> Unavailable:
        return Unavailable(f"mount {self.name!r} ({self.backend}) is not available: {self.why}")

    @property
    def entry_count(self) -> int:
        return 0

    @property
    def audit_key(self) -> bytes:
        return b""  # never asked: the router answers with the local vault's

    def info(self) -> MountInfo:
        return MountInfo(name=self.name, backend=self.backend, location=self._location,
                         state="error", message=self.why, read_only=self.read_only)

    def close(self) -> None:
        pass

    def entries(self) -> Sequence[EntryMeta]:
        raise self._error()

    def trash(self) -> list[EntryMeta]:
        raise self._error()

    def describe(self, name: str) -> EntryMeta:
        raise self._error()

    def get(self, name: str, field: str | None = None) -> str:
        raise self._error()

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        raise self._error()

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        raise self._error()

    def put(self, request: Set) -> EntryMeta:
        raise self._error()

    def delete(self, name: str) -> EntryMeta:
        raise self._error()

    def undelete(self, name: str) -> EntryMeta:
        raise self._error()

    def purge(self, name: str) -> None:
        raise self._error()

    def move(self, old: str, new: str) -> EntryMeta:
        raise self._error()

    def restore(self, name: str, version: int) -> EntryMeta:
        raise self._error()

