"""The typed client methods, written once for the sync and the asyncio client.

A method builds its request and says what it keeps of the reply:

    def get(self, name, field=None):
        return self._ask(p.Get(name=name, field=field), _value)

`_ask` is the transport's: `Client._ask` sends, reads and returns what is
kept; `AsyncClient._ask` returns a coroutine of it. So the same body is a
blocking method on one client and a coroutine method on the other (on both,
a request that cannot be built fails at the call). Methods of several
requests are plans (see `credd.client_core`), run by `_drive`.

For mypy, `@method` is a descriptor whose `__get__` gives a method its type on
each client: `Client.get(...) -> str`, `AsyncClient.get(...) ->
Coroutine[..., str]`. The bodies are checked against the blocking view (the
`_ask`/`_drive` declared below). At run time `@method` does nothing, so a
method costs what any method costs: a `get` takes ~35 us, and a wrapper or
a generator per call showed up in it. What is kept of a reply is a module
function, not a lambda, for the same reason (a lambda is made anew per call).

What only one transport can do (connecting, `hello`, `close`, the events
iterator) stays in `credd.client` and `credd.async_client`.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import msgspec

from credd import protocol as p
from credd.client_core import entries_of
from credd.errors import BadRequest

if TYPE_CHECKING:  # mypy's alone: Protocol and Generic classes cost import time
    from collections.abc import Callable, Coroutine, Iterable
    from typing import Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

    from credd.client_core import Plan

    P = ParamSpec("P")
    R = TypeVar("R")
    T = TypeVar("T")
    M = TypeVar("M", bound=p.Asks[Any])

    class Blocking(Protocol):
        """A client whose methods return their result (`credd.client`)."""

        def _ask(self, request: p.Asks[R], keep: Callable[[R], T]) -> T: ...

    class Awaiting(Protocol):
        """A client whose methods return a coroutine of it (`credd.async_client`)."""

        def _ask(self, request: p.Asks[R],
                 keep: Callable[[R], T]) -> Coroutine[Any, Any, T]: ...

    class method(Generic[P, T]):
        """How mypy sees a `@method`."""

        def __init__(self, body: Callable[Concatenate[Any, P], T]) -> None: ...
        @overload
        def __get__(self, client: None, owner: type) -> Self: ...
        @overload
        def __get__(self, client: Blocking, owner: type) -> Callable[P, T]: ...
        @overload
        def __get__(self, client: Awaiting,
                    owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
        def __get__(self, client: Any, owner: type) -> Any: ...
else:
    def method(body):
        return body


def build(cls: type[M], **fields: Any) -> M:
    """A request from keyword arguments; an unknown one is BadRequest, raised before sending."""
    try:
        return cls(**fields)
    except TypeError as exc:
        raise BadRequest(str(exc)) from None


class Calls:
    """One typed method per request. (`builtins.list` in annotations: `list` is a method;
    `self, /` where keyword arguments pass through: a field could not be named `self`.)"""

    if TYPE_CHECKING:  # the blocking view the bodies are checked against
        def _ask(self, request: p.Asks[R], keep: Callable[[R], T]) -> T: ...
        def _drive(self, plan: Plan[T]) -> T: ...

    # -- agent and vault

    @method
    def status(self) -> p.StatusReply:
        return self._ask(p.Status(), whole)

    @method
    def init(self, passphrase: str, *, kdf_memory_kib: int | None = None,
             kdf_iterations: int | None = None, kdf_lanes: int | None = None,
             allow_short: bool = False) -> str:
        """Create the vault; returns the recovery key (shown to the user once).
        `allow_short`: a passphrase under 8 characters, asked for by name."""
        request = p.Init(passphrase=passphrase, kdf_memory_kib=kdf_memory_kib,
                         kdf_iterations=kdf_iterations, kdf_lanes=kdf_lanes,
                         allow_short=allow_short)
        return self._ask(request, _recovery_key)

    @method
    def unlock(self, passphrase: str | None = None, *, key: bytes | None = None,
               recovery_key: str | None = None, idle_timeout: float | None = None,
               max_lifetime: float | None = None, wait: bool = False) -> p.StatusReply:
        """`wait`: wait out the unlock throttle instead of being refused (typed at a
        terminal; an agent with the `unlock_wait` capability)."""
        return self._ask(p.Unlock(passphrase=passphrase, key=key, recovery_key=recovery_key,
                                  idle_timeout=idle_timeout, max_lifetime=max_lifetime,
                                  wait=wait), whole)

    @method
    def lock(self) -> None:
        return self._ask(p.Lock(), _nothing)

    @method
    def change_passphrase(self, old: str, new: str, *, allow_short: bool = False) -> None:
        return self._ask(p.ChangePassphrase(old=old, new=new, allow_short=allow_short),
                         _nothing)

    @method
    def add_key_slot(self, key: bytes, label: str = "keyring", *, proof: str) -> None:
        """Add (or replace) a key slot; `proof`: the vault's passphrase or recovery key."""
        return self._ask(p.AddKeySlot(key=key, label=label, proof=proof), _nothing)

    @method
    def remove_key_slot(self, label: str = "keyring", *, proof: str) -> None:
        """Remove a key slot or the recovery slot; `proof` as for add_key_slot."""
        return self._ask(p.RemoveKeySlot(label=label, proof=proof), _nothing)

    @method
    def slots(self) -> p.SlotList:
        """Every key slot (never key material), and what failed authentication."""
        return self._ask(p.Slots(), whole)

    @method
    def audit(self, limit: int = 100) -> builtins.list[p.AuditRecord]:
        return self._ask(p.Audit(limit=limit), _records)

    @method
    def check(self) -> p.CheckReport:
        return self._ask(p.Check(), whole)

    @method
    def rekey(self, *, proof: str) -> str:
        """Re-encrypt every entry under a new data key; returns the NEW recovery key
        (the old one stops working, and keyring slots must be added again). `proof`: the
        passphrase (or the recovery key, while unlocked with the passphrase)."""
        return self._ask(p.Rekey(proof=proof), _recovery_key)

    @method
    def stop(self) -> None:
        """Stop the agent; the connection ends with it (the next call reconnects)."""
        return self._ask(p.Stop(), _nothing)

    # -- mounts' servers

    @method
    def token_create(self, /, mount: str, **options: Any) -> p.TokenCreated:
        """Mint a scoped token on a mount's server (options: those of `protocol.TokenCreate`)."""
        return self._ask(build(p.TokenCreate, mount=mount, **options), whole)

    @method
    def tokens(self, mount: str | None = None) -> builtins.list[p.TokenInfo]:
        return self._ask(p.TokenList(mount=mount), _tokens)

    @method
    def token_revoke(self, accessor: str, mount: str | None = None) -> None:
        return self._ask(p.TokenRevoke(accessor=accessor, mount=mount), _nothing)

    @method
    def migrate(self, /, src: str, dst: str, **options: Any) -> p.Migrated:
        """One batch of a migration inside the agent (options: those of `protocol.Migrate`);
        ask again with `cursor=reply.next` until it is None."""
        return self._ask(build(p.Migrate, src=src, dst=dst, **options), whole)

    # -- entries

    @method
    def get(self, name: str, field: str | None = None) -> str:
        """The entry's value, or one field's. Without `field`, `name` may be `NAME/FIELD` or a
        `credd://` reference, read by the one rule of `credd.refs` (the agent resolves it)."""
        return self._ask(p.Get(name=name, field=field), _value)

    @method
    def get_many(self, refs: Iterable[str]) -> dict[str, str]:
        """Values of many `credd://NAME/FIELD` refs; NotFound.names lists every missing one."""
        return self._ask(p.GetMany(refs=builtins.list(refs)), _values)

    @method
    def reveal(self, name: str, version: int | None = None) -> p.Revealed:
        return self._ask(p.Reveal(name=name, version=version), whole)

    @method
    def describe(self, name: str) -> p.EntryMeta:
        return self._ask(p.Describe(name=name), _entry)

    @method
    def set(self, /, name: str, **fields: Any) -> p.EntryMeta:
        """Write an entry; keyword arguments are those of `protocol.Set`."""
        return self._ask(build(p.Set, name=name, **fields), _entry)

    @method
    def delete(self, name: str) -> p.EntryMeta:
        return self._ask(p.Delete(name=name), _entry)

    @method
    def undelete(self, name: str) -> p.EntryMeta:
        return self._ask(p.Undelete(name=name), _entry)

    @method
    def purge(self, name: str) -> None:
        return self._ask(p.Purge(name=name), _nothing)

    @method
    def move(self, old: str, new: str) -> p.EntryMeta:
        return self._ask(p.Move(old=old, new=new), _entry)

    @method
    def restore(self, name: str, version: int) -> p.EntryMeta:
        return self._ask(p.Restore(name=name, version=version), _entry)

    @method
    def history(self, name: str) -> p.HistoryReply:
        return self._ask(p.History(name=name), whole)

    @method
    def trash(self) -> builtins.list[p.EntryMeta]:
        return self._ask(p.Trash(), _entries)

    @method
    def list(self, /, **filters: Any) -> builtins.list[p.EntryMeta]:
        """Every entry matching the filters of `protocol.List`, following `next` pages."""
        return self._drive(_pages(build(p.List, **filters)))

    # -- grants and sessions (docs/grants.md)

    @method
    def grant_create(self, names: Iterable[str], mode: p.GrantMode, *, ttl: float | None = None,
                     label: str = "", uses: int | None = None, commands: Iterable[str] = (),
                     confirm: bool = False, inject: bool = False,
                     uid: int | None = None) -> p.Grant:
        """A new grant (from a bound connection, only one that narrows its own)."""
        request = p.GrantCreate(names=builtins.list(names), mode=mode, ttl=ttl, label=label,
                                uses=uses, commands=builtins.list(commands), confirm=confirm,
                                inject=inject, uid=uid)
        return self._ask(request, _grant)

    @method
    def grants(self, all: bool = False) -> p.GrantsReply:
        """The grants in force (`all`: revoked and expired ones too) and, for the owner,
        the access requests waiting for an answer."""
        return self._ask(p.GrantList(all=all), whole)

    @method
    def grant_revoke(self, grant: str) -> p.Grant:
        """Revoke a grant and every grant made inside it."""
        return self._ask(p.GrantRevoke(id=grant), _grant)

    @method
    def grant_answer(self, request: str, approve: bool) -> None:
        return self._ask(p.GrantAnswer(request=request, approve=approve), _nothing)

    @method
    def session_open(self, grant: str) -> p.SessionReply:
        """Make this process a session root bound to `grant`; the session ends with
        `session_close` or with this connection (then the agent locks: see docs/grants.md)."""
        return self._ask(p.SessionOpen(grant=grant), whole)

    @method
    def session_close(self, session: str) -> None:
        return self._ask(p.SessionClose(session=session), _nothing)

    # -- lifecycle (docs/lifecycle.md)

    @method
    def fingerprint(self, name: str, field: str | None = None) -> str:
        """`fp:xxxx-xxxx`, a keyed fingerprint of the value (or a field): the safe way to
        name a secret in a log line. Stable for a value in this vault; says nothing of it."""
        return self._ask(p.Fingerprint(name=name, field=field), _fingerprint)

    @method
    def inspect(self, name: str) -> p.Inspection:
        """The entry with its fingerprints, rotation period, last check and due reasons."""
        return self._ask(p.Inspect(name=name), whole)

    @method
    def due(self, /, **options: Any) -> p.DueReport:
        """The entries that need attention; options are those of `protocol.Due`."""
        return self._ask(build(p.Due, **options), whole)

    @method
    def incident(self, name: str, since: float | None = None) -> p.IncidentReport:
        """Who received the value since it changed (or `since`), which entries hold it too;
        marks the entry compromised until its value changes (docs/lifecycle.md)."""
        return self._ask(p.Incident(name=name, since=since), whole)

    @method
    def policy(self) -> p.PolicyReply:
        """The rotation periods by kind in force (for `rules.entry_state`)."""
        return self._ask(p.Policy(), whole)

    @method
    def rotate(self, name: str, value: str) -> p.EntryMeta:
        """Stage `value` as the entry's pending value; the current value stays current."""
        return self._ask(p.Rotate(name=name, value=value), _entry)

    @method
    def finish_rotation(self, name: str) -> p.EntryMeta:
        """Make the pending value current; the previous version stays restorable."""
        return self._ask(p.RotateFinish(name=name), _entry)

    @method
    def abandon_rotation(self, name: str) -> p.EntryMeta:
        return self._ask(p.RotateAbandon(name=name), _entry)

    @method
    def get_pending(self, name: str) -> str:
        return self._ask(p.GetPending(name=name), _value)

    @method
    def record_verification(self, name: str, outcome: p.VerifyOutcome, *,
                            exit_status: int | None = None, seconds: float = 0.0) -> None:
        return self._ask(p.RecordVerification(name=name, outcome=outcome,
                                              exit_status=exit_status, seconds=seconds),
                         _nothing)


# What methods keep of a reply.

def whole(reply: R) -> R:
    return reply


def _nothing(reply: object) -> None:
    return None


def _tokens(reply: p.Tokens) -> list[p.TokenInfo]:
    return reply.tokens


def _entry(reply: p.EntryReply) -> p.EntryMeta:
    return reply.entry


def _value(reply: p.Secret) -> str:
    return reply.value


def _values(reply: p.Secrets) -> dict[str, str]:
    return reply.values


def _recovery_key(reply: p.RecoveryKey) -> str:
    return reply.recovery_key


def _grant(reply: p.GrantReply) -> p.Grant:
    return reply.grant


def _records(reply: p.AuditLog) -> list[p.AuditRecord]:
    return reply.records


def _entries(reply: p.Entries) -> list[p.EntryMeta]:
    return reply.entries


def _fingerprint(reply: p.FingerprintReply) -> str:
    return reply.fingerprint


def _pages(request: p.List) -> Plan[list[p.EntryMeta]]:
    """Pipelined: a page's cursor is read first (its entries left encoded), the next
    page is asked for, and only then are this page's entries decoded, so the agent
    encodes one page while the client decodes the one before."""
    entries: list[p.EntryMeta] = []
    yield request
    while True:
        page = yield "page"
        if page.next:
            yield msgspec.structs.replace(request, cursor=page.next)
        entries.extend(entries_of(page))
        if not page.next:
            return entries
