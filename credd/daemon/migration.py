"""`credd migrate`'s copy: the entries under one prefix of a store, copied under another
prefix of a store (the same or another), inside the agent, one batch at a time.

Values never leave the agent for the client: the request names prefixes, the reply
names entries and outcomes, and the comparisons that make a re-run safe happen here.
A batch runs on the agent's writer thread (it writes, and writes to a mount wait on its
server there) in three steps:

1. read: each source entry and what the destination holds under its new name (a store
   that caches reads is told to ask its server again first), compared in memory: an
   identical entry is already there, a different one a conflict (unless `overwrite`);
2. write: what is to be copied, in one transaction where the destination offers one
   (the local vault: one fsync per batch instead of one per entry), else one by one
   (OpenBao: each with check-and-set, so a change made meanwhile is a conflict);
3. confirm: each copy is read back and compared with its source; only then, and only
   with `delete_source`, does the source go to its trash (an entry found already there
   counts as confirmed, so a re-run after a crash finishes the deletes).

A batch reads at most `limit` entries or for `budget` seconds, whichever ends first: a
10,000-entry migration holds the writer thread a fraction of a second at a time and its
progress bar moves. A store that cannot answer (a server down, the vault locked) stops
the batch: what was done stays done, and the reply says why (`stopped`).
"""

from __future__ import annotations

import bisect
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from credd.errors import (
    BadRequest,
    Conflict,
    CreddError,
    Exists,
    LockedError,
    NotFound,
    Unavailable,
)
from credd.protocol import EntryMeta, Field, MigrateItem, MigrateOutcome, Set, SetMode
from credd.store import BatchWriting, EntryStore, Revalidating, SecretEntry
from credd.vault.model import canonical_name

from .router import under

_NAME = operator.attrgetter("name")
#: What stops a whole batch rather than one entry: nothing after it can succeed now.
_FATAL = (Unavailable, LockedError)
MAX_REASON = 500  # characters of a reason: a reply of 100 items always fits a frame


@dataclass(frozen=True)
class Prefix:
    """`SRC` or `DST` of a migration: `team/db/` is the entries under team/db/; `team/db`
    is the entry team/db and the entries under it."""

    base: str
    folder: bool  # given with a trailing "/": only what is under it

    @classmethod
    def parse(cls, text: str, what: str) -> Prefix:
        if not text.strip("/"):
            raise BadRequest(f"{what} must name a folder or an entry, not {text!r}")
        return cls(canonical_name(text.rstrip("/")), text.endswith("/"))

    def covers(self, name: str) -> bool:
        return name.startswith(self.base + "/") or (not self.folder and name == self.base)

    def within(self, other: Prefix) -> bool:
        """Whether one of the two prefixes lies inside the other (or they are the same)."""
        a, b = self.base + "/", other.base + "/"
        return a.startswith(b) or b.startswith(a)

    def rename(self, name: str, to: Prefix) -> str:
        return to.base + name[len(self.base):]


def pair(src: str, dst: str) -> tuple[Prefix, Prefix]:
    """The two prefixes of a request; `BadRequest` for a pair that cannot mean a copy."""
    source, target = Prefix.parse(src, "SRC"), Prefix.parse(dst, "DST")
    if source.within(target):
        raise BadRequest(f"{src!r} and {dst!r} overlap: a migration copies one folder to "
                         "another, never into itself")
    if target.folder and not source.folder:
        raise BadRequest(f"SRC {src!r} (no trailing /) is the entry {source.base!r} and its "
                         f"folder, which become DST itself: write DST {target.base!r}, or SRC "
                         f"'{source.base}/' to copy only what is under it")
    return source, target


@dataclass
class _Step:
    """One source entry on its way: its copy to write, then what happened."""

    name: str
    to: str
    outcome: MigrateOutcome = "skipped"
    reason: str = ""
    entry: SecretEntry | None = None   # the source's secrets, while the batch runs
    write: Set | None = None
    written: bool = False
    confirmed: bool = False            # the destination holds exactly the source
    deleted: bool = False

    def item(self) -> MigrateItem:
        return MigrateItem(name=self.name, to=self.to, outcome=self.outcome,
                           reason=self.reason[:MAX_REASON], deleted=self.deleted)


@dataclass
class Batch:
    items: list[MigrateItem]
    next: str | None
    remaining: int
    stopped: str = ""
    written: list[str] = field(default_factory=list)  # destination names written


class Migration:
    """Copies from `source` (names under `src`) to `target` (under `dst`)."""

    def __init__(self, source: EntryStore, target: EntryStore, src: Prefix, dst: Prefix, *,
                 dry_run: bool = False, overwrite: bool = False,
                 delete_source: bool = False) -> None:
        self.source, self.target, self.src, self.dst = source, target, src, dst
        self.dry_run, self.overwrite, self.delete_source = dry_run, overwrite, delete_source

    def batch(self, cursor: str | None, limit: int, budget: float,
              stop: Callable[[], bool] = lambda: False) -> Batch:
        """Copy the next source entries after `cursor` (see the module docstring); `stop()`
        true (the vault locked meanwhile) ends the batch like a store that cannot answer."""
        names, left = self._names(cursor, limit)
        steps: list[_Step] = []
        stopped = ""
        try:
            started = time.monotonic()
            for name in names:
                _check(stop)
                steps.append(self._read(name))
                if time.monotonic() - started > budget:
                    break
            if not self.dry_run:
                self._write(steps, stop)
        except _FATAL as exc:
            stopped = exc.message
            steps = steps if self.dry_run else _made(steps)
        try:
            self._confirm(steps)
            if self.delete_source:
                self._delete([s for s in steps if s.confirmed or (self.dry_run and s.write)],
                             stop)
        except _FATAL as exc:
            stopped = stopped or exc.message
        remaining = left - len(steps)
        return Batch(items=[s.item() for s in steps], remaining=remaining, stopped=stopped,
                     next=(steps[-1].name if steps else cursor) if remaining else None,
                     written=[s.to for s in steps if s.written])

    # -- the source's names

    def _names(self, cursor: str | None, limit: int) -> tuple[list[str], int]:
        """At most `limit` source names after `cursor`, and how many there are in all."""
        entries: Sequence[EntryMeta] = self.source.entries()
        exact, lo, hi = under(entries, self.src.base)
        start = lo if cursor is None else bisect.bisect_right(entries, cursor, lo=lo, hi=hi,
                                                              key=_NAME)
        first = [self.src.base] if (exact is not None and not self.src.folder
                                    and (cursor is None or self.src.base > cursor)) else []
        names = first + [m.name for m in entries[start:min(hi, start + limit - len(first))]]
        return names, len(first) + hi - start

    # -- 1. read and compare

    def _read(self, name: str) -> _Step:
        step = _Step(name, self.src.rename(name, self.dst))
        try:
            step.entry = _current(self.source, name)
            held = _held(self.target, step.to)
        except NotFound:
            step.reason = "it is no longer in the source"
            return step
        except _FATAL:
            raise
        except CreddError as exc:
            step.reason = exc.message
            return step
        differ = [] if held is None else differences(step.entry, held)
        if held is not None and not differ:
            step.outcome, step.confirmed = "same", True
        elif held is not None and not self.overwrite:
            step.outcome = "conflict"
            step.reason = (f"the destination holds a different {', '.join(differ)} "
                           "(--overwrite replaces it)")
        else:
            step.outcome = "copied" if held is None else "overwritten"
            step.write = copy_of(step.entry, step.to, "create" if held is None else "upsert")
        return step

    # -- 2. write

    def _write(self, steps: list[_Step], stop: Callable[[], bool]) -> None:
        writes = [s for s in steps if s.write is not None]
        target = self.target
        if len(writes) > 1 and isinstance(target, BatchWriting) and _at_once(
                lambda: target.put_many([s.write for s in writes if s.write is not None]), stop):
            for step in writes:
                step.written = True
            return
        for step in writes:
            _check(stop)
            assert step.write is not None
            try:
                self.target.put(step.write)
                step.written = True
            except (Conflict, Exists) as exc:
                step.outcome, step.reason, step.write = "conflict", exc.message, None
            except _FATAL:
                raise
            except CreddError as exc:
                step.outcome, step.reason, step.write = "skipped", exc.message, None

    # -- 3. confirm, then delete

    def _confirm(self, steps: list[_Step]) -> None:
        """Read back each copy written; then forget the source's secrets."""
        written = [s for s in steps if s.written]
        try:
            for done, step in enumerate(written):
                try:
                    step.confirmed, step.reason = self._read_back(step)
                except _FATAL as exc:
                    for left in written[done:]:
                        left.reason = f"written, but not read back: {exc.message}"
                    raise
        finally:
            for step in steps:
                step.entry = None

    def _read_back(self, step: _Step) -> tuple[bool, str]:
        assert step.entry is not None
        try:
            held = _held(self.target, step.to, again=False)
        except _FATAL:
            raise
        except CreddError as exc:
            return False, f"written, but not read back: {exc.message}"
        if held is None:
            return False, "written, but not found when read back"
        differ = differences(step.entry, held)
        return not differ, (f"written, but its {', '.join(differ)} read back different"
                            if differ else "")

    def _delete(self, steps: list[_Step], stop: Callable[[], bool]) -> None:
        """Send the confirmed sources to their trash (in a dry run: say they would go)."""
        if self.dry_run or not steps:
            for step in steps:
                step.deleted = True
            return
        source = self.source
        if len(steps) > 1 and isinstance(source, BatchWriting) and _at_once(
                lambda: source.delete_many([s.name for s in steps]), stop):
            for step in steps:
                step.deleted = True
            return
        for step in steps:
            try:
                _check(stop)
                self.source.delete(step.name)
                step.deleted = True
            except CreddError as exc:
                step.reason = f"the source was not deleted: {exc.message}"
                if isinstance(exc, _FATAL):
                    raise


def _at_once(run: Callable[[], object], stop: Callable[[], bool]) -> bool:
    """Run a batch write of a store (one transaction, all or none); False when one of its
    entries failed, so none was written: the caller then goes one by one to say which."""
    _check(stop)
    try:
        run()
    except _FATAL:
        raise
    except CreddError:
        return False
    return True


def _made(steps: list[_Step]) -> list[_Step]:
    """The steps before the first write that was not made: a stopped batch ends there."""
    for i, step in enumerate(steps):
        if step.write is not None and not step.written:
            return steps[:i]
    return steps


def _check(stop: Callable[[], bool]) -> None:
    if stop():
        raise LockedError("the vault was locked during the migration; what was done is kept: "
                          "unlock and run it again")


def _current(store: EntryStore, name: str, again: bool = True) -> SecretEntry:
    """The entry as its store holds it now: a store that caches reads asks its server
    again, unless `again` is False (a copy just written: the store holds what its server
    acknowledged)."""
    if again and isinstance(store, Revalidating):
        store.revalidate(name)
    return store.reveal(name)


def _held(store: EntryStore, name: str, again: bool = True) -> SecretEntry | None:
    """What the destination holds under `name`, or None (absent or in the trash)."""
    try:
        return _current(store, name, again)
    except NotFound:
        return None


def _form(entry: SecretEntry) -> dict[str, object]:
    """What a migration copies of an entry, by the name a difference is reported under."""
    meta = entry.meta
    form: dict[str, object] = {
        "value": entry.value if meta.has_value else None,
        "notes": entry.notes if meta.has_notes else None,
        "kind": meta.kind, "service": meta.service, "tags": tuple(meta.tags),
        "rotation": meta.rotate_after, "expiry": meta.expires,
    }
    for key, text in meta.fields.items():
        form[f"field {key!r}"] = (text, False)
    for key, text in entry.secret_fields.items():
        form[f"field {key!r}"] = (text, True)
    return form


def differences(wanted: SecretEntry, held: SecretEntry) -> list[str]:
    """What of `held` differs from `wanted`, by name (values are compared, never shown)."""
    a, b = _form(wanted), _form(held)
    return [aspect for aspect in dict.fromkeys([*a, *b]) if a.get(aspect) != b.get(aspect)]


def copy_of(entry: SecretEntry, name: str, mode: SetMode) -> Set:
    """The write that makes `name` hold what `entry` holds, whole (not merged)."""
    meta = entry.meta
    fields = [Field(name=k, value=v, secret=False) for k, v in meta.fields.items()]
    fields += [Field(name=k, value=v, secret=True) for k, v in entry.secret_fields.items()]
    return Set(name=name, kind=meta.kind, service=meta.service, tags=list(meta.tags),
               value=entry.value if meta.has_value else None, fields=fields,
               notes=entry.notes if meta.has_notes else None,
               rotate_after=meta.rotate_after, expires=meta.expires, mode=mode)
