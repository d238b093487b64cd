"""Handlers of the lifecycle requests: `due`, `fingerprint`, `inspect`, `policy`, rotation
with a pending value (`rotate`, `rotate_finish`, `rotate_abandon`, `get_pending`),
`record_verification`, `incident`; and `set`, which reads the certificates in what it
writes first.

Writes and reveals go through the entry handlers' own paths (`handlers._write`: the writer
thread, the audit line, the event; `handlers._revealing`: the audit line before the value
leaves, fail closed), so they are audited exactly as `set` and `get` are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from credd import protocol as p
from credd import rules
from credd.errors import BadRequest, LockedError, NotFound

from . import certs, lifecycle
from .fingerprints import shown
from .handlers import Caller, _changed, _revealing, _target, _write, readers_of
from .handlers import set_ as _set
from .router import Router
from .state import AgentState

if TYPE_CHECKING:
    from credd.vault import Vault


async def set_(state: AgentState, conn: Caller, req: p.Set) -> p.EntryReply:
    """`set`, with the expiry, subject and issuer of any certificate it writes (certs.py)."""
    return await _set(state, conn, certs.annotated(req))


def policy(state: AgentState, conn: Caller, req: p.Policy) -> p.PolicyReply:
    state.unlocked_vault()  # like every entry rule: while unlocked
    return p.PolicyReply(rotation=state.lifecycle.periods(),
                         config_error=state.lifecycle.rotation.error)


async def due(state: AgentState, conn: Caller, req: p.Due) -> p.DueReport:
    for what, seconds in (("within", req.within), ("unused", req.unused)):
        _check_time(what, seconds)
    now = time.time() if req.now is None else _check_time("now", req.now)
    store, life = state.store(), state.lifecycle
    key, epoch = store.audit_key, state.epoch
    prints = life.fingerprints(key) if req.values else None
    found = await state.read(lifecycle.report, store, prints,
                             lambda names: life.checks.results(key, names), life.periods(),
                             req, now, lambda metas: _last_used(state, metas))
    if state.epoch != epoch:
        raise LockedError("the vault was locked while the report was made")
    found.config_error = life.rotation.error
    return found


def _last_used(state: AgentState, metas: Sequence[p.EntryMeta]) -> list[p.EntryMeta]:
    """The entries with their last-used times, as `list` replies carry them."""
    return list(cast("Sequence[p.EntryMeta]", state.last_used.stamped(metas, metas)))


def _check_time(what: str, seconds: float) -> float:
    if not (math.isfinite(seconds) and 0 <= seconds <= rules.MAX_TIME):
        raise BadRequest(f"{what} must be a number of seconds from 0 to {rules.MAX_TIME}")
    return seconds


def fingerprint(state: AgentState, conn: Caller, req: p.Fingerprint) -> p.FingerprintReply:
    """Of `NAME[/FIELD]` by the rule of `get` (credd.refs.locate), or of `field` if given."""
    store = state.store()
    name, field = (req.name, req.field) if req.field is not None else _target(store, req.name)
    meta = store.describe(name)
    digest = state.lifecycle.fingerprints(store.audit_key).of_field(store, meta, field)
    if digest is None:
        what = f"field {field!r}" if field is not None else "value"
        raise NotFound(f"{name!r} has no {what}", names=[name])
    return p.FingerprintReply(name=name, field=field, fingerprint=shown(digest))


def inspect(state: AgentState, conn: Caller, req: p.Inspect) -> p.Inspection:
    store, life = state.store(), state.lifecycle
    meta, periods = state.last_used.stamp(store.describe(req.name)), life.periods()
    digests = None
    if meta.has_value or meta.secret_fields:
        digests = life.fingerprints(store.audit_key).of(store, meta)
    check = life.checks.results(store.audit_key, [meta.name]).get(meta.name)
    reasons = lifecycle.entry_reasons(meta, time.time(), rules.DUE_WITHIN, rules.UNUSED_AFTER,
                                      periods, check, digests)
    return p.Inspection(
        entry=meta, rotation=rules.rotation_period(meta, periods), verification=check,
        reasons=reasons,
        fingerprint=shown(digests.value) if digests and digests.value is not None else "",
        field_fingerprints={k: shown(d) for k, d in (digests.fields if digests else {}).items()})


async def record_verification(state: AgentState, conn: Caller,
                              req: p.RecordVerification) -> p.Ok:
    store = state.store()
    store.describe(req.name)  # an entry's result, or NotFound
    if not (math.isfinite(req.seconds) and req.seconds >= 0):
        raise BadRequest("seconds must be a duration of 0 or more")
    result = p.Verification(time=time.time(), outcome=req.outcome,
                            exit_status=req.exit_status, seconds=req.seconds)
    await state.write(state.lifecycle.checks.record, store.audit_key, req.name, result)
    return p.Ok()


# ---------------------------------------------------------------- rotation

def _local(state: AgentState, name: str) -> Vault:
    """The local vault, which holds `name`: a pending value lives beside the current one in
    the vault's own record, which a mount does not have."""
    router = state.store()
    mount = router.mount_of(name) if isinstance(router, Router) else ""
    if mount:
        raise BadRequest(f"{name!r} is on mount {mount!r}: a rotation with a pending value is "
                         "for entries of the local vault (set the new value with `credd set`)")
    return state.unlocked_vault()


async def rotate(state: AgentState, conn: Caller, req: p.Rotate) -> p.EntryReply:
    vault = _local(state, req.name)
    return p.EntryReply(entry=await _write(state, conn, "rotate", [req.name],
                                           lambda: vault.stage(req.name, req.value),
                                           _changed(req.name, "set")))


async def rotate_finish(state: AgentState, conn: Caller, req: p.RotateFinish) -> p.EntryReply:
    """The pending value becomes current (the previous one goes to history), with the facts
    of its certificates, as a `set` would write them."""
    vault = _local(state, req.name)
    change = certs.annotated(p.Set(name=req.name, value=vault.pending(req.name), merge=True,
                                   mode="update"))
    return p.EntryReply(entry=await _write(state, conn, "rotate_finish", [req.name],
                                           lambda: vault.finish(change),
                                           _changed(req.name, "set")))


async def rotate_abandon(state: AgentState, conn: Caller, req: p.RotateAbandon) -> p.EntryReply:
    vault = _local(state, req.name)
    return p.EntryReply(entry=await _write(state, conn, "rotate_abandon", [req.name],
                                           lambda: vault.abandon(req.name),
                                           _changed(req.name, "set")))


def get_pending(state: AgentState, conn: Caller, req: p.GetPending) -> p.Secret:
    """The pending value (to set it on a server, or to verify it), audited as a reveal."""
    vault = _local(state, req.name)
    value = _revealing(state, conn, vault, "get_pending", [req.name],
                       lambda: vault.pending(req.name))
    return p.Secret(name=req.name, value=value)


# ---------------------------------------------------------------- incident

async def incident(state: AgentState, conn: Caller, req: p.Incident) -> p.IncidentReport:
    """Who received the value since it changed (or `since`), from the audit trail as
    `audit_who` reads it; which entries hold it too, as `due` finds duplicates; then the
    mark. One request: the answer and the mark are about the same value, and the asking
    is audited before anything is answered (fail closed)."""
    vault = _local(state, req.name)
    store, epoch = state.store(), state.epoch
    meta = store.describe(req.name)
    since = rules.changed_at(meta) if req.since is None else _check_time("since", req.since)
    _, readers = await readers_of(state, meta.name, since)
    prints = state.lifecycle.fingerprints(store.audit_key)
    shared, unread = await state.read(lifecycle.sharing, store, prints, meta.name)
    if state.epoch != epoch:
        raise LockedError("the vault was locked while the incident was looked into")
    state.audit.record("incident", "ok", names=[meta.name], key=store.audit_key, origin=conn)
    marked = await _write(state, conn, "mark_compromised", [meta.name],
                          lambda: vault.mark_compromised(meta.name), _changed(meta.name, "set"))
    return p.IncidentReport(entry=state.last_used.stamp(marked), since=since, readers=readers,
                            shared=shared, unread=unread)
