"""Handler of `migrate`: one batch of `credd migrate SRC DST`, store to store in the agent
(credd/daemon/migration.py does the copying).

What cannot work is refused before anything is copied, at every batch: a destination on
a read-only mount, and `delete_source` from one. The batch runs on the writer thread; the
audit records each entry on both sides (`migrate` for the source name, `migrate_to` for
the destination name, with the outcome; `migrate_delete` for a source sent to the trash;
names as HMACs, each record with its mount), and subscribers hear of every write.
"""

from __future__ import annotations

from collections.abc import Iterable

from credd import protocol as p
from credd.errors import BadRequest, Denied, LockedError
from credd.store import EntryStore

from .handlers import Caller
from .migration import Batch, Migration, pair
from .mounts import Mount
from .router import Router
from .state import AgentState

MAX_BATCH = 100    # entries: with a delete each, 200 events, within a subscriber's queue
BUDGET = 0.25      # seconds of reading per batch: the writer thread is shared


async def migrate(state: AgentState, conn: Caller, req: p.Migrate) -> p.Migrated:
    if req.limit < 0:
        raise BadRequest("limit must be 0 (the agent's batch) or positive")
    src, dst = pair(req.src, req.dst)
    router = state.store()
    source, source_mount = _end(router, src.base)
    target, target_mount = _end(router, dst.base)
    _refuse(req, source_mount, target_mount)
    job = Migration(source, target, src, dst, dry_run=req.dry_run, overwrite=req.overwrite,
                    delete_source=req.delete_source)
    key, epoch = router.audit_key, state.epoch
    batch = await state.write(job.batch, req.cursor, min(req.limit or MAX_BATCH, MAX_BATCH),
                              BUDGET, lambda: state.epoch != epoch)
    _record(state, conn, key, req.dry_run, batch)
    if state.epoch != epoch:  # audited, but no name is shown once the vault is locked
        raise LockedError("the vault was locked during the migration; what was done is "
                          "kept: unlock and run it again")
    return p.Migrated(items=batch.items, next=batch.next, remaining=batch.remaining,
                      stopped=batch.stopped,
                      versions_left=source_mount is None or not source_mount.read_only)


def _end(store: EntryStore, name: str) -> tuple[EntryStore, Mount | None]:
    """The store that serves `name`, and its mount (None: the local vault)."""
    if not isinstance(store, Router):
        return store, None
    return store.store_for(name), store.mounts.get(store.mount_of(name))


def _refuse(req: p.Migrate, source: Mount | None, target: Mount | None) -> None:
    """What a migration cannot do, said before it copies anything."""
    if target is not None and target.read_only:
        raise Denied(f"cannot migrate into {req.dst!r}: {target.name} is a read-only mount "
                     f"(backend {target.backend}); nothing was copied")
    if req.delete_source and source is not None and source.read_only:
        raise Denied(f"cannot delete from {req.src!r}: {source.name} is a read-only mount "
                     f"(backend {source.backend}); nothing was copied. Migrate without "
                     "--delete-source, then remove the originals where they are defined")


def _record(state: AgentState, conn: Caller, key: bytes, dry_run: bool, batch: Batch) -> None:
    """Audit the batch (one record per name and side) and tell subscribers what changed."""
    deleted = [] if dry_run else [i.name for i in batch.items if i.deleted]
    if batch.written or deleted:
        state.wrote()
    op = "migrate_dry_run" if dry_run else "migrate"
    for outcome in dict.fromkeys(i.outcome for i in batch.items):
        items = [i for i in batch.items if i.outcome == outcome]
        _audit(state, conn, key, op, outcome, (i.name for i in items))
        if not dry_run:
            _audit(state, conn, key, "migrate_to", outcome, (i.to for i in items))
    _audit(state, conn, key, "migrate_delete", "ok", deleted)
    for name in batch.written:
        state.events.publish(p.EntryChanged(name=name, action="set"))
    for name in deleted:
        state.events.publish(p.EntryChanged(name=name, action="delete"))


def _audit(state: AgentState, conn: Caller, key: bytes, op: str, outcome: str,
           names: Iterable[str]) -> None:
    listed = list(names)
    if listed:
        state.audit.try_record(op, outcome, names=listed, key=key, origin=conn)
