"""Mounts: other stores of entries, served by the agent under a name's first segment.

A mount named `team` serves every entry whose name starts `team/` (and the bare
name `team`); the router (`credd/daemon/router.py`) sends it those names in
full (`team/prod/db`) and the local vault everything else. A backend is one
module here with one class implementing `Mount`; `BACKENDS` names them.

The contract every backend keeps, beyond `credd.store.EntryStore`'s rules:

- Its factory, `BACKENDS[backend](config, resolve)`, is cheap and does no
  network I/O: the agent calls it on its event loop when the vault unlocks
  and when the mount table changes while unlocked. Log in, list, fetch later,
  on the first request. `resolve("credd://NAME/FIELD")` returns a value of
  the LOCAL vault (a mount's token, an AppRole secret id): keep what it returns
  in memory only, and forget it in `close()`. It may be called from any
  thread while the vault is unlocked, and raises `LockedError` after the lock.
- Every `EntryMeta` it returns has `mount` set to its name, and full names.
- `remote = True` means reads may wait on the network: the agent then runs
  every read that touches the mount on a reader thread (several at once), so a
  remote mount's reads must be thread-safe; writes come one at a time on the
  agent's writer thread. `remote = False` mounts are read on the event loop
  and must answer from memory or the local disk.
- Errors are `credd.errors` classes whose message names the mount and never a
  secret: `Denied("... is a read-only mount (backend env)")` for a write to a
  read-only mount, `Unavailable` when its server cannot be reached or is sealed,
  `Conflict` when a check-and-set write lost to a change made elsewhere.
- `audit_key` is never asked of a mount (the router answers with the local
  vault's, so one name is one HMAC wherever it lives); it may raise.
- `info()` answers from memory (no I/O beyond a local stat) for `status` and
  `credd mount ls`; `location` never holds a credential.
- `close()` drops caches, tokens and resolved credentials; it must not block
  (no network: a token is not revoked) and may run while a reader thread is
  still inside the mount (that read may then fail; the agent discards its reply).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from credd.protocol import MountInfo
from credd.store import EntryStore

from .config import MountConfig

__all__ = ["BACKENDS", "Factory", "Mount", "MountConfig", "MountInfo", "Resolve"]

#: `credd://NAME[/FIELD]` → that value of the local vault.
Resolve = Callable[[str], str]


@runtime_checkable
class Mount(EntryStore, Protocol):
    """An `EntryStore` for the names under one first segment, with a name and a state."""

    @property
    def name(self) -> str:
        """The mount's name: the first segment of every name it serves."""
        ...

    @property
    def backend(self) -> str:
        """Which backend serves it (a key of `BACKENDS`)."""
        ...

    @property
    def read_only(self) -> bool:
        """Writes are refused with `Denied`."""
        ...

    @property
    def remote(self) -> bool:
        """Reads may wait on the network (the agent reads it on a reader thread)."""
        ...

    def info(self) -> MountInfo:
        """Its state for `status` and `credd mount ls`, from memory."""
        ...

    def close(self) -> None:
        """Forget caches, tokens and credentials; called at lock and when the table changes."""
        ...


Factory = Callable[[MountConfig, Resolve], Mount]


def _lazy(module: str, cls: str) -> Factory:
    """A factory that imports its backend on first use (hvac only when an openbao mount opens)."""

    def factory(config: MountConfig, resolve: Resolve) -> Mount:
        backend: Factory = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
        return backend(config, resolve)

    return factory


BACKENDS: dict[str, Factory] = {
    "openbao": _lazy("openbao", "OpenBaoStore"),
    "env": _lazy("env", "EnvMount"),
    "files": _lazy("files", "FilesMount"),
}
