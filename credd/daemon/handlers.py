"""One function per request: take the state and the decoded request, return a response.

Handlers that wait for the writer thread are coroutine functions; the rest are
plain functions, answered within the callback that received the request.

Handlers raise exceptions from credd.errors; only dispatch.py turns them into
`error` responses. Secret values pass through here on their way to the wire
and nowhere else: they are not cached, logged, or put into exception text.
"""

from __future__ import annotations

import asyncio
import bisect
import operator
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import msgspec

from credd import __version__, rules
from credd import protocol as p
from credd.errors import (
    AuditUnavailable,
    BadPassphrase,
    BadRequest,
    CreddError,
    Exists,
    NotFound,
    VersionMismatch,
)
from credd.refs import SCHEME, locate, path_of
from credd.store import EntryStore, SecretEntry

from . import suggest
from .audit import name_hmac
from .audit_trail import Query, Trail
from .binding import Binding
from .events import Subscription
from .peer import Peer
from .scope import Scoped
from .state import AgentState, check_duration

if TYPE_CHECKING:  # the vault (cryptography, sqlite3) is imported when a vault is opened
    from credd.vault import Vault

T = TypeVar("T")


class Caller(Protocol):
    """What a handler may know of the connection that asked: who, as what, and its
    session flags."""

    peer: Peer
    binding: Binding
    greeted: bool
    subscription: Subscription | None


def store_for(state: AgentState, conn: Caller) -> EntryStore:
    """The entries `conn` may see: the whole store for the owner, only what its grants cover
    for a bound connection (scope.py), so no handler can reach past a grant."""
    store = state.store()
    return store if conn.binding.grant is None else Scoped(store, conn.binding.policy)

CAPABILITIES = ["get_many", "list_paging", "subscribe", "audit", "key_slots", "rekey",
                "unlock_wait", "audit_query", "audit_verify", "last_used", "slot_proof",
                "migrate", "backup", "grants", "sessions", "run", "inject"]
#: The longest reference that can name anything: scheme, a 256-character name, "/", a field name.
MAX_REF = len(SCHEME) + 256 + 1 + 128
#: How much of the missing references an error echoes back, so the reply always fits a frame.
MAX_ECHO = 256 * 1024
MAX_AUDIT = 10_000
_RESERVE = 16 * 1024  # envelope + cursor; names are far shorter
_encoder = msgspec.msgpack.Encoder()


# ---------------------------------------------------------------- session

def hello(state: AgentState, conn: Caller, req: p.Hello) -> p.Welcome:
    if req.protocol != p.PROTOCOL_VERSION:
        raise VersionMismatch(
            f"this client speaks protocol {req.protocol} but the agent (pid {os.getpid()}, "
            f"credd {__version__}) speaks {p.PROTOCOL_VERSION}: restart the agent "
            "(`credd stop`, then start it again) or use a matching client")
    conn.greeted = True
    conn.peer.client = req.client[:64]  # a label for the audit trail, never trusted
    binding = conn.binding
    return p.Welcome(protocol=p.PROTOCOL_VERSION, version=__version__, pid=os.getpid(),
                     capabilities=CAPABILITIES, grant=binding.grant_id,
                     mode="" if binding.owner else binding.policy.mode)


def status(state: AgentState, conn: Caller, req: p.Status) -> p.StatusReply:
    reply = _status(state)
    if reply.entries is not None and conn.binding.grant is not None:
        reply.entries = store_for(state, conn).entry_count  # only what its grants cover
    return reply


def _status(state: AgentState) -> p.StatusReply:
    """The agent's status, with what is wrong with an unlocked vault's file (a rollback): the
    unlock that finds it says so at once, not the next read."""
    reply = state.status()
    if reply.state == "unlocked" and state.vault is not None:
        reply.damage = state.vault.damage
    return reply


async def init(state: AgentState, conn: Caller, req: p.Init) -> p.RecoveryKey:
    from credd.vault import KdfParams, Vault
    if state.open_vault() is not None:
        raise Exists(f"a vault already exists at {state.config.vault}: `credd unlock` opens it")
    rules.check_passphrase(req.passphrase, allow_short=req.allow_short)
    given = {"memory_kib": req.kdf_memory_kib, "iterations": req.kdf_iterations,
             "lanes": req.kdf_lanes}
    kdf = KdfParams(**{k: v for k, v in given.items() if v is not None})
    kdf.validate()
    epoch = state.epoch
    vault, recovery = await state.write(Vault.create, state.config.vault, req.passphrase,
                                        kdf=kdf, state_dir=state.config.state_dir)
    state.vault = vault
    if epoch != state.epoch:  # a lock acknowledged while the vault was made wins
        await state.write(vault.lock)
    else:
        state.opened(new_key=True)
    state.audit.try_record("init", "ok", origin=conn)
    return p.RecoveryKey(recovery_key=recovery)  # shown once, whatever the lock state


async def unlock(state: AgentState, conn: Caller, req: p.Unlock) -> p.StatusReply:
    given = {"passphrase": req.passphrase, "key": req.key, "recovery_key": req.recovery_key}
    secret = {k: v for k, v in given.items() if v is not None}
    if len(secret) != 1:
        raise BadRequest("unlock takes exactly one of passphrase, key or recovery_key")
    idle = check_duration(req.idle_timeout, "idle_timeout")
    lifetime = check_duration(req.max_lifetime, "max_lifetime")
    vault = state.require_vault()
    try:
        await state.unlock(vault, idle, lifetime, wait=req.wait, **secret)
    except CreddError as exc:
        state.audit.try_record("unlock", exc.code, origin=conn)
        raise
    state.audit.try_record("unlock", "ok", origin=conn)
    return _status(state)


async def lock(state: AgentState, conn: Caller, req: p.Lock) -> p.Ok:
    """Answered once the vault's own lock has run (after any write in flight): the WAL is
    then in the vault file, so a plain copy of it taken after `credd lock` is complete."""
    state.lock("request")
    await state.write(_nothing)
    return p.Ok()


def _nothing() -> None:
    pass


async def change_passphrase(state: AgentState, conn: Caller, req: p.ChangePassphrase) -> p.Ok:
    state.unlocked_vault()  # a locked vault says so before any rule on the new passphrase
    rules.check_passphrase(req.new, allow_short=req.allow_short)
    await _proven(state, conn, "change_passphrase",
                  lambda vault: vault.change_passphrase(req.old, req.new))
    return p.Ok()


def subscribe(state: AgentState, conn: Caller, req: p.Subscribe) -> p.Ok:
    conn.subscription = state.events.subscribe()
    return p.Ok()


def stop(state: AgentState, conn: Caller, req: p.Stop) -> p.Ok:
    state.stopping.set()
    return p.Ok()


# ---------------------------------------------------------------- secrets

def _audited(state: AgentState, conn: Caller, store: EntryStore, op: str,
             names: list[str]) -> None:
    """Write the reveal's audit lines before the secret leaves; raises AuditUnavailable."""
    state.audit.record(op, "ok", names=names, key=store.audit_key, origin=conn)
    state.last_used.touch(names)


def _audit_failure(state: AgentState, conn: Caller, store: EntryStore, op: str,
                   names: list[str], exc: CreddError) -> None:
    key: bytes | None
    try:
        key = store.audit_key
    except CreddError:  # a damaged vault has no usable key: record the failure without names
        key, names = None, []
    state.audit.try_record(op, exc.code, names=names, key=key, origin=conn)


def _revealing(state: AgentState, conn: Caller, store: EntryStore, op: str, names: list[str],
               read: Callable[[], T]) -> T:
    """Run `read()` for a reply that carries secrets: a failure is audited, and a success
    is audited (fail closed) before the secret can leave the agent."""
    try:
        result = read()
    except CreddError as exc:
        _audit_failure(state, conn, store, op, names, exc)
        raise
    _audited(state, conn, store, op, names)
    return result


def get(state: AgentState, conn: Caller, req: p.Get) -> p.Secret:
    store = store_for(state, conn)
    try:
        name, field, value = _read_path(store, req.name, req.field)
    except CreddError as exc:
        _audit_failure(state, conn, store, "get", [req.name], exc)
        raise
    _audited(state, conn, store, "get", [name])  # before the secret leaves (fail closed)
    return p.Secret(name=name, value=value, field=field)


def _read_path(store: EntryStore, name: str, field: str | None) -> tuple[str, str | None, str]:
    """(entry, field, value) for `get`. Without a field, `name` is a path read by
    credd.refs' rule; it is tried as a whole name first, so the usual get costs one read."""
    if field is not None:
        return name, field, store.get(name, field)
    path = path_of(name)
    try:
        return path, None, store.get(path)
    except NotFound as exc:
        missed = exc
    entry, field = _target(store, path)
    if field is None:  # the whole name is an entry after all (one without a value)
        raise missed
    return entry, field, store.get(entry, field)


def _target(store: EntryStore, ref: str) -> tuple[str, str | None]:
    """(entry, field) that `NAME[/FIELD]` names (credd.refs' rule); NotFound says what is
    missing, with what the caller probably meant."""
    seen: dict[str, p.EntryMeta | None] = {}
    found = _resolve(store, ref, seen)
    if found is None:
        path = path_of(ref)
        try:
            store.describe(path)  # a name no entry can have is bad_request, not not_found
        except NotFound:
            pass
        raise _missing(store, path, seen)
    return found[0], found[1]


def _resolve(store: EntryStore, ref: str, seen: dict[str, p.EntryMeta | None]
             ) -> tuple[str, str | None, p.EntryMeta] | None:
    """`credd://NAME[/FIELD]` → (name, field, its metadata), by credd.refs' rule. `seen`
    remembers lookups across the refs of one request."""
    return locate(ref, lambda name: _lookup(store, name, seen))


def _missing(store: EntryStore, path: str, seen: dict[str, p.EntryMeta | None]) -> NotFound:
    """One sentence for a path that reaches nothing: what is missing, the fields of the entry
    it may have meant, or a close name ("did you mean").

    Every name suggested comes from `store`, the store this request was answered from: once
    a connection may see only some names (grants), that store must already be narrowed to
    them, so that a name the caller may not see is never suggested."""
    head, _, tail = path.rpartition("/")
    entry = seen.get(head) if head and tail else None
    if entry is None:
        missing = NotFound(f"no entry named {path!r}", names=[path])
        return _guessed(store, path, missing, lambda name: _lookup(store, name, seen))
    fields = sorted([*entry.fields, *entry.secret_fields])
    near = suggest.closest(tail, fields)
    listed = f"its fields: {', '.join(fields)}" if fields else "it has no fields"
    guess = f"; did you mean {head + '/' + near!r}?" if near else ""
    return NotFound(f"no entry named {path!r}, and {head!r} has no field {tail!r} "
                    f"({listed}){guess}", names=[path])


def _guessed(store: EntryStore, name: str, exc: NotFound,
             lookup: Callable[[str], p.EntryMeta | None] | None = None) -> NotFound:
    """`exc` ("no entry named ...") with the closest name the store has, if one is close;
    any other NotFound (in the trash, no such version) as it is. Given `lookup`, `name` may
    be NAME/FIELD with the typo in NAME: an entry close to NAME that has FIELD is a guess
    too. See `_missing` for where the names come from."""
    if not exc.message.startswith("no entry named "):
        return exc
    try:
        entries = store.entries()
        near = suggest.closest(name, suggest.near_names(entries, name))
        head, _, tail = name.rpartition("/")
        if near is None and lookup is not None and head and tail:
            entry = suggest.closest(head, suggest.near_names(entries, head))
            meta = lookup(entry) if entry else None
            if meta is not None and (tail in meta.fields or tail in meta.secret_fields):
                near = f"{entry}/{tail}"
    except CreddError:  # a damaged vault lists nothing: no suggestion then
        return exc
    return NotFound(f"{exc.message}; did you mean {near!r}?", names=exc.names) if near else exc


def _named(store: EntryStore, name: str, read: Callable[[], T]) -> T:
    """`read()`, whose NotFound for `name` comes back with a close name if there is one."""
    try:
        return read()
    except NotFound as exc:
        raise _guessed(store, name, exc) from None


def _lookup(store: EntryStore, name: str, seen: dict[str, p.EntryMeta | None]
            ) -> p.EntryMeta | None:
    if name not in seen:
        try:
            seen[name] = store.describe(name)
        except (NotFound, BadRequest):
            seen[name] = None
    return seen[name]


def get_many(state: AgentState, conn: Caller, req: p.GetMany) -> p.Secrets:
    values, _ = secret_values(state, conn, store_for(state, conn), req.refs, "get_many")
    return p.Secrets(values=values)


def secret_values(state: AgentState, conn: Caller, store: EntryStore, refs: list[str],
                  op: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each reference's value (every one, or NotFound naming each missing one), each entry
    decrypted once, and the entry each reference named; audited as `op` (fail closed)
    before any value can leave."""
    too_long = next((ref for ref in refs if len(ref) > MAX_REF), None)
    if too_long is not None:
        raise BadRequest(f"a reference of {len(too_long)} characters cannot name an entry "
                         f"(at most {MAX_REF})")
    seen: dict[str, p.EntryMeta | None] = {}
    targets = {ref: _resolve(store, ref, seen) for ref in refs}
    missing = [ref for ref, target in targets.items() if target is None]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        error = NotFound(f"{len(missing)} of {len(targets)} references not found: {shown}",
                         names=_bounded(missing, MAX_ECHO))
        _audit_failure(state, conn, store, op, [], error)
        raise error
    resolved = {ref: target for ref, target in targets.items() if target is not None}
    values: dict[str, str] = {}
    secret: dict[str, list[tuple[str, str | None]]] = {}  # name → refs that need decrypting
    for ref, (name, field, meta) in resolved.items():
        if field is not None and field in meta.fields:
            values[ref] = meta.fields[field]  # a plain field: nothing to decrypt
        else:
            secret.setdefault(name, []).append((ref, field))
    for name, wanted in secret.items():
        values.update(_decrypted(store, name, wanted))
    _audited(state, conn, store, op, sorted({name for name, _, _ in resolved.values()}))
    return ({ref: values[ref] for ref in resolved},
            {ref: name for ref, (name, _, _) in resolved.items()})


def _bounded(items: list[str], budget: int) -> list[str]:
    """The first of `items` whose lengths add up to at most `budget`."""
    kept: list[str] = []
    for item in items:
        budget -= len(item)
        if budget < 0:
            break
        kept.append(item)
    return kept


def _decrypted(store: EntryStore, name: str, wanted: list[tuple[str, str | None]]
               ) -> dict[str, str]:
    """The values `wanted` of one entry, decrypting it once."""
    if len(wanted) == 1:
        ref, field = wanted[0]
        return {ref: store.get(name, field)}
    entry = store.reveal(name)
    values: dict[str, str] = {}
    for ref, field in wanted:
        value: str | None
        if field is None:
            value = entry.value if entry.meta.has_value else None
        else:
            value = entry.secret_fields.get(field)
        # Missing (no value, or no such secret field): the vault raises its own NotFound.
        values[ref] = store.get(name, field) if value is None else value
    return values


def reveal(state: AgentState, conn: Caller, req: p.Reveal) -> p.Revealed:
    store = store_for(state, conn)
    entry: SecretEntry = _revealing(state, conn, store, "reveal", [req.name], lambda: _named(
        store, req.name, lambda: store.reveal(req.name, req.version)))
    return p.Revealed(entry=state.last_used.stamp(entry.meta), value=entry.value or "",
                      secret_fields=dict(entry.secret_fields or {}), notes=entry.notes or "")


# ---------------------------------------------------------------- metadata

def describe(state: AgentState, conn: Caller, req: p.Describe) -> p.EntryReply:
    store = store_for(state, conn)
    return p.EntryReply(entry=state.last_used.stamp(
        _named(store, req.name, lambda: store.describe(req.name))))


def _matcher(req: p.List, periods: Callable[[], rules.Periods]
             ) -> Callable[[p.EntryMeta], bool] | None:
    """The filter of a list request, or None when it has none (everything matches);
    `periods` gives the rotation periods in force, asked only for `due`."""
    if not (req.prefix or req.service is not None or req.kind is not None
            or req.tag is not None or req.contains or req.due):
        return None
    contains = (req.contains or "").casefold()
    now, due = time.time(), periods() if req.due else {}

    def match(m: p.EntryMeta) -> bool:
        return ((not req.prefix or m.name.startswith(req.prefix))
                and (req.service is None or m.service == req.service)
                and (req.kind is None or m.kind == req.kind)
                and (req.tag is None or req.tag in m.tags)
                and (not contains or contains in m.name.casefold()
                     or contains in m.service.casefold())
                and (not req.due or rules.entry_state(m, now, due) in rules.DUE))
    return match


def _fit(items: Sequence[Any], start: int = 0, limit: int = 0) -> tuple[msgspec.Raw, int]:
    """The longest run `items[start:start + n]` (n ≤ `limit` if given) that fits in a frame,
    already encoded as a MessagePack array, and n (at least 1: an oversized single item
    is left for the server to refuse).

    The run goes into the reply as msgspec.Raw: the same bytes as encoding the list in
    place, but measured. It is encoded in slices (encoding many items at once is several
    times faster than one by one), each stripped of its array header; the slice that
    would overflow the frame is halved until it fits, so every item is encoded about once.
    """
    budget = p.MAX_FRAME - _RESERVE
    stop = len(items) if not limit else min(len(items), start + limit)
    parts: list[memoryview] = []
    size, i, step = 0, start, _SLICE
    while i < stop:
        j = min(stop, i + step)
        raw = memoryview(_encoder.encode(items[i:j]))[len(_array_header(j - i)):]
        if size + len(raw) <= budget or i == start == j - 1:
            parts.append(raw)
            size, i = size + len(raw), j
            if size > budget:
                break
        elif j - i > 1:
            step = (j - i) // 2
        else:
            break
    n = i - start
    return msgspec.Raw(b"".join([_array_header(n), *parts])), n


_SLICE = 512
_PAGES = 32  # unfiltered list pages kept encoded: at most 32 MiB, 300,000 typical entries


def _fit_again(pages: dict[Any, Any], items: Sequence[Any], start: int, limit: int
               ) -> tuple[msgspec.Raw, int]:
    """`_fit`, reusing the page encoded for the same (start, limit) while it holds the very
    same entry objects: the vault replaces an entry's metadata object when it changes and
    never mutates one, so identity means unchanged. (A page that is shorter than it could
    now be is still a valid page: `next` and `total` are computed afresh.)"""
    held, page = pages.get((start, limit), ((), None))
    n = len(held)
    if n and len(items) >= start + n and all(map(operator.is_, items[start:start + n], held)):
        return page, n
    page, n = _fit(items, start, limit)
    if len(pages) >= _PAGES:
        pages.clear()
    pages[(start, limit)] = (items[start:start + n], page)
    return page, n


def _as_stored(view: Sequence[Any]) -> Sequence[Any]:
    """The entries as the store already holds them encoded, when it offers that (the
    vault's view gives each entry's msgpack bytes straight from its sealed chunks): an
    unfiltered page is then the same bytes, with nothing decoded or encoded."""
    raw = getattr(view, "raw", None)
    return raw() if callable(raw) else view


def _as_entries(page: msgspec.Raw) -> list[p.EntryMeta]:
    """An encoded page standing in for the list it encodes: msgspec writes Raw as is."""
    return cast("list[p.EntryMeta]", page)


def _array_header(n: int) -> bytes:
    """MessagePack's shortest array header for n items (the one msgspec writes)."""
    if n <= 15:
        return bytes([0x90 | n])
    if n <= 0xFFFF:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def list_(state: AgentState, conn: Caller, req: p.List) -> p.Entries:
    if req.limit < 0:
        raise BadRequest("limit must be 0 (as many as fit) or positive")
    visible = store_for(state, conn).entries()
    matches, match = visible, _matcher(req, state.lifecycle.periods)
    if req.prefix:  # names are sorted: the matches of a prefix are one run, found by bisection
        cut = len(req.prefix)
        lo = bisect.bisect_left(matches, req.prefix, key=lambda m: m.name[:cut])
        hi = bisect.bisect_right(matches, req.prefix, lo=lo, key=lambda m: m.name[:cut])
        matches = matches[lo:hi]
    if match is not None:
        matches = [m for m in matches if match(m)]
    start = bisect.bisect_right(matches, req.cursor, key=lambda m: m.name) if req.cursor else 0
    # saved last-used times are matched with every name of the store, whatever `conn` sees
    everything = _as_stored(state.store().entries())
    stored = everything if conn.binding.owner else _as_stored(visible)
    if req.prefix or match is not None:
        page, n = _fit(state.last_used.stamped(matches, stored), start, req.limit)
    else:
        page, n = _fit_again(state.pages, state.last_used.stamped(stored, stored), start,
                             req.limit)
    end = start + n
    nxt = matches[end - 1].name if end < len(matches) else None
    return p.Entries(entries=_as_entries(page), next=nxt, total=len(matches))


def trash(state: AgentState, conn: Caller, req: p.Trash) -> p.Entries:
    entries = store_for(state, conn).trash()
    page, n = _fit(entries)
    nxt = entries[n - 1].name if n < len(entries) else None
    return p.Entries(entries=_as_entries(page), next=nxt, total=len(entries))


def history(state: AgentState, conn: Caller, req: p.History) -> p.HistoryReply:
    store = store_for(state, conn)
    current, versions = _named(store, req.name, lambda: store.history(req.name))
    return p.HistoryReply(name=req.name, current=current, versions=versions)


async def audit(state: AgentState, conn: Caller, req: p.Audit) -> p.AuditLog:
    if not 1 <= req.limit <= MAX_AUDIT:
        raise BadRequest(f"limit must be between 1 and {MAX_AUDIT}")
    key = state.store().audit_key
    query = Query(name_hmac=None if req.name is None else name_hmac(key, req.name),
                  grant=req.grant, program=req.program, since=req.since, op=req.op,
                  outcome=req.outcome)
    records = await _asking(state, lambda trail: trail.search(query, req.limit))
    _, n = _fit(records)  # newest first: the newest ones that fit
    return p.AuditLog(records=records[n - 1::-1] if n else [])


async def audit_who(state: AgentState, conn: Caller, req: p.AuditWho) -> p.AuditReaders:
    digest, readers = await readers_of(state, req.name, req.since)
    return p.AuditReaders(name_hmac=digest, readers=readers)


async def readers_of(state: AgentState, name: str, since: float | None
                     ) -> tuple[str, list[p.Reader]]:
    """(name HMAC, every program and grant the trail says received `name`'s value since
    `since`, most recent first, as many as fit a reply): `audit_who` and `incident`."""
    digest = name_hmac(state.store().audit_key, name)
    readers = await _asking(state, lambda trail: trail.readers(digest, since))
    _, n = _fit(readers)
    return digest, readers[:n]


async def audit_verify(state: AgentState, conn: Caller, req: p.AuditVerify) -> p.AuditReport:
    state.store()  # unlocked: the anchor is checked under the audit key
    expected = state.audit.expected()
    return await _asking(state, lambda trail: trail.verify(expected))


async def _asking(state: AgentState, question: Callable[[Trail], T]) -> T:
    """Ask the trail as written so far, on a thread: the answer may read every file."""
    try:
        trail = state.audit.trail()
    except OSError as exc:
        raise AuditUnavailable(f"the audit trail cannot be read ({exc.strerror})") from None
    try:
        return await asyncio.to_thread(question, trail)
    finally:
        trail.close()


async def check(state: AgentState, conn: Caller, req: p.Check) -> p.CheckReport:
    vault = state.unlocked_vault()
    checked = vault.entry_count  # before the await: a lock may land meanwhile
    problems = await state.write(vault.check)
    return p.CheckReport(checked=checked, problems=problems)


# ---------------------------------------------------------------- writes

async def _write(state: AgentState, conn: Caller, op: str, names: list[str],
                 write: Callable[[], T], event: p.EntryChanged | None = None,
                 key: bytes | None = None) -> T:
    """Run a write on the writer thread, then audit it and tell subscribers. The audit key
    is taken before: a lock may land while the write runs, and the write still happened."""
    key = state.store().audit_key if key is None else key
    result = await state.write(write)
    state.wrote()
    state.audit.try_record(op, "ok", names=names, key=key, origin=conn)
    if event is not None:
        state.last_used.changed(event)
        state.events.publish(event)
    return result


def _changed(name: str, action: p.ChangeAction, new_name: str | None = None) -> p.EntryChanged:
    return p.EntryChanged(name=name, action=action, new_name=new_name)


async def set_(state: AgentState, conn: Caller, req: p.Set) -> p.EntryReply:
    store = store_for(state, conn)
    meta = await _write(state, conn, "set", [req.name], lambda: store.put(req),
                        _changed(req.name, "set"))
    return p.EntryReply(entry=meta)


async def delete(state: AgentState, conn: Caller, req: p.Delete) -> p.EntryReply:
    store = store_for(state, conn)
    return p.EntryReply(entry=await _write(state, conn, "delete", [req.name],
                                           lambda: store.delete(req.name),
                                           _changed(req.name, "delete")))


async def undelete(state: AgentState, conn: Caller, req: p.Undelete) -> p.EntryReply:
    store = store_for(state, conn)
    return p.EntryReply(entry=await _write(state, conn, "undelete", [req.name],
                                           lambda: store.undelete(req.name),
                                           _changed(req.name, "undelete")))


async def purge(state: AgentState, conn: Caller, req: p.Purge) -> p.Ok:
    store = store_for(state, conn)
    await _write(state, conn, "purge", [req.name], lambda: store.purge(req.name),
                 _changed(req.name, "purge"))
    return p.Ok()


async def move(state: AgentState, conn: Caller, req: p.Move) -> p.EntryReply:
    store = store_for(state, conn)
    return p.EntryReply(entry=await _write(state, conn, "move", [req.old, req.new],
                                           lambda: store.move(req.old, req.new),
                                           _changed(req.old, "move", req.new)))


async def restore(state: AgentState, conn: Caller, req: p.Restore) -> p.EntryReply:
    store = store_for(state, conn)
    return p.EntryReply(entry=await _write(state, conn, "restore", [req.name],
                                           lambda: store.restore(req.name, req.version),
                                           _changed(req.name, "restore")))


# ---------------------------------------------------------------- the vault's own keys

async def _proven(state: AgentState, conn: Caller, op: str, change: Callable[[Vault], T]) -> T:
    """A change to what unlocks the vault. An unlocked vault is not enough: the request
    carries a proof (the passphrase or the recovery key), which the vault checks with an
    unlock's cost; a wrong one is throttled like a wrong unlock, and audited."""
    vault = state.unlocked_vault()
    state.throttle.check()
    key = vault.audit_key  # before: a rekey changes it
    try:
        result = await state.write(change, vault)
    except BadPassphrase:
        state.throttle.failed()
        state.audit.try_record(op, "bad_passphrase", origin=conn)
        raise
    state.wrote()
    state.audit.try_record(op, "ok", key=key, origin=conn)
    return result


async def add_key_slot(state: AgentState, conn: Caller, req: p.AddKeySlot) -> p.Ok:
    await _proven(state, conn, "add_key_slot",
                  lambda vault: vault.add_key_slot(req.key, label=req.label, proof=req.proof))
    return p.Ok()


async def remove_key_slot(state: AgentState, conn: Caller, req: p.RemoveKeySlot) -> p.Ok:
    await _proven(state, conn, "remove_key_slot",
                  lambda vault: vault.remove_key_slot(label=req.label, proof=req.proof))
    return p.Ok()


def slots(state: AgentState, conn: Caller, req: p.Slots) -> p.SlotList:
    infos, problems = state.unlocked_vault().slots()
    return p.SlotList(slots=infos, problems=problems)


async def rekey(state: AgentState, conn: Caller, req: p.Rekey) -> p.RecoveryKey:
    """The old recovery key no longer opens the vault: the new one goes back to the user."""
    recovery = await _proven(state, conn, "rekey", lambda vault: vault.rekey(proof=req.proof))
    state.rekeyed()
    return p.RecoveryKey(recovery_key=recovery)
