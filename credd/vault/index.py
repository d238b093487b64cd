"""The unlocked vault's metadata in name order: segments of about a hundred entries.

Each segment covers a range of names, from its `low` up to the next segment's `low`,
and holds every row in that range, live and trashed, in name order. A segment that is
sealed in the file as one chunk (chunks.py) keeps the chunk's decrypted body and decodes
it the first time it is read: an unlock from the chunks makes no object per entry, and a
`get` decodes only the segment it needs.

A write never changes a segment: it makes new segments for the ranges it touches (and
splits one that grows too large), so a reader on another thread, or an `EntryView` the
agent is paging through, keeps a consistent picture. The new segments are dirty (no
chunk) until the next seal writes them as chunks.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar, overload

import msgspec

from credd.protocol import EntryMeta

#: Entries per sealed chunk: small enough that the write which drops one rewrites a few
#: pages, large enough that unlock opens few of them (docs/vault.md, "The chunks").
TARGET = 128
#: A dirty segment is split past this many rows, so that inserting stays O(segment);
#: one below MERGE rows is merged into a neighbour when sealed.
SPLIT, MERGE = 4 * TARGET, TARGET // 4
_encode = msgspec.msgpack.Encoder().encode


class Row(NamedTuple):
    """One entry row as the cache holds it: its row id, rev and wire record (the cache's
    own: `deleted` set means it is in the trash)."""

    id: bytes
    rev: int
    entry: EntryMeta


class Part(NamedTuple):
    """One kind of a segment's rows (live, or trashed), in name order, column by column.

    The columns are tuples: a tuple of untracked objects (strings, bytes, ints, gc=False
    records) is untracked by the first collection that sees it, so the cycle collector
    never walks 100,000 entries again (lists it would walk at every full collection,
    touching each entry: tens of milliseconds). `Columns` is the editable form.
    """

    names: tuple[str, ...]
    ids: tuple[bytes, ...]
    revs: tuple[int, ...]
    entries: tuple[EntryMeta, ...]

    def find(self, name: str) -> Row | None:
        i = bisect.bisect_left(self.names, name)
        if i < len(self.names) and self.names[i] == name:
            return Row(self.ids[i], self.revs[i], self.entries[i])
        return None

    def rows(self) -> Iterator[tuple[str, Row]]:
        return zip(self.names, map(Row, self.ids, self.revs, self.entries))

    def columns(self) -> Columns[EntryMeta]:
        return Columns(list(self.names), list(self.ids), list(self.revs), list(self.entries))


E = TypeVar("E")
F = TypeVar("F")


class Columns(Generic[E]):
    """Rows being built or edited, column by column, as lists (`part` freezes them). The
    entries are wire records, or file records on their way to becoming them (unlock)."""

    __slots__ = ("entries", "ids", "names", "revs")

    def __init__(self, names: list[str] | None = None, ids: list[bytes] | None = None,
                 revs: list[int] | None = None, entries: list[E] | None = None) -> None:
        self.names: list[str] = names if names is not None else []
        self.ids: list[bytes] = ids if ids is not None else []
        self.revs: list[int] = revs if revs is not None else []
        self.entries: list[E] = entries if entries is not None else []

    def __len__(self) -> int:
        return len(self.names)

    def append(self, name: str, row_id: bytes, rev: int, entry: E) -> None:
        self.names.append(name)
        self.ids.append(row_id)
        self.revs.append(rev)
        self.entries.append(entry)

    def extend(self, other: Columns[E]) -> None:
        self.names += other.names
        self.ids += other.ids
        self.revs += other.revs
        self.entries += other.entries

    def remove(self, name: str) -> bool:
        i = bisect.bisect_left(self.names, name)
        if i == len(self.names) or self.names[i] != name:
            return False
        del self.names[i], self.ids[i], self.revs[i], self.entries[i]
        return True

    def insert(self, name: str, row_id: bytes, rev: int, entry: E) -> None:
        i = bisect.bisect_left(self.names, name)
        self.names.insert(i, name)
        self.ids.insert(i, row_id)
        self.revs.insert(i, rev)
        self.entries.insert(i, entry)

    def sorted(self) -> Columns[E]:
        """The same rows in name order (C-level: one sort of indexes, a gather per column)."""
        order = sorted(range(len(self.names)), key=self.names.__getitem__)
        return Columns(_gather(self.names, order), _gather(self.ids, order),
                       _gather(self.revs, order), _gather(self.entries, order))

    def converted(self, convert: Callable[[E], F]) -> Columns[F]:
        return Columns(self.names, self.ids, self.revs, list(map(convert, self.entries)))

    def cut(self, start: int, stop: int) -> Columns[E]:
        return Columns(self.names[start:stop], self.ids[start:stop], self.revs[start:stop],
                       self.entries[start:stop])

    def select(self, keep: list[bool]) -> Columns[E]:
        return Columns(*(list(itertools.compress(c, keep)) for c in  # type: ignore[arg-type]
                         (self.names, self.ids, self.revs, self.entries)))

    def part(self: Columns[EntryMeta]) -> Part:
        return Part(tuple(self.names), tuple(self.ids), tuple(self.revs), tuple(self.entries))


def _gather(column: list[E], order: list[int]) -> list[E]:
    return list(map(column.__getitem__, order))


class Body(Protocol):
    """A sealed chunk's decrypted body, as far as a segment needs it (chunks.ChunkBody)."""

    nlive: int

    def live_entries(self) -> tuple[EntryMeta, ...]: ...

    def live_raw(self) -> tuple[msgspec.Raw, ...]: ...

    def parts(self, live: tuple[EntryMeta, ...] | None = None) -> tuple[Part, Part]: ...

    def count(self) -> int: ...


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cycle collection while decoding many records at once: they hold no cycles (gc=False
    structs), but the tuples and dicts among them would set off collections that walk the
    whole heap, for nothing (a third of the cost of decoding 100,000 entries)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Segment:
    """The rows whose names fall in [low, next segment's low), and the chunk that holds
    them in the file (None: dirty, to be sealed)."""

    __slots__ = ("_body", "_live", "_parts", "_raw", "chunk", "low", "nlive", "ntrash")

    def __init__(self, low: str, chunk: int | None, nlive: int, ntrash: int,
                 body: Body | None = None, parts: tuple[Part, Part] | None = None) -> None:
        self.low, self.chunk, self.nlive, self.ntrash = low, chunk, nlive, ntrash
        self._body, self._parts = body, parts
        self._live: tuple[EntryMeta, ...] | None = None if parts is None else parts[0].entries
        self._raw: tuple[msgspec.Raw, ...] | None = None

    @classmethod
    def sealed(cls, low: str, chunk: int, body: Body) -> Segment:
        return cls(low, chunk, body.nlive, body.count() - body.nlive, body=body)

    @classmethod
    def dirty(cls, low: str, live: Columns[EntryMeta], trash: Columns[EntryMeta]) -> Segment:
        return cls(low, None, len(live), len(trash), parts=(live.part(), trash.part()))

    def live(self) -> tuple[EntryMeta, ...]:
        """The live entries, decoded from the chunk body on first use (all a list needs)."""
        entries = self._live
        if entries is None:
            with gc_paused():
                entries = self._live = self._body.live_entries()  # type: ignore[union-attr]
        return entries

    def raw(self) -> tuple[msgspec.Raw, ...]:
        """The live entries' msgpack encodings: views into the chunk body, or encoded."""
        raw = self._raw
        if raw is None:
            body = self._body
            raw = self._raw = (body.live_raw() if body is not None
                               else tuple(map(msgspec.Raw, map(_encode, self.live()))))
        return raw

    def parts(self) -> tuple[Part, Part]:
        """(live, trashed) rows, decoded from the chunk body on first use. Two threads may
        both decode it; either result is the same picture."""
        parts = self._parts
        if parts is None:
            body = self._body
            with gc_paused():
                parts = body.parts(self._live)  # type: ignore[union-attr]
            self._parts, self._live = parts, parts[0].entries
        return parts

    def find(self, name: str) -> Row | None:
        live, trash = self.parts()
        return live.find(name) or trash.find(name)

    def __len__(self) -> int:
        return self.nlive + self.ntrash


def _merged(segment: Segment) -> Columns[EntryMeta]:
    """Every row of the segment, live and trashed, in name order."""
    live, trash = segment.parts()
    both = live.columns()
    if trash.names:
        both.extend(trash.columns())
        both = both.sorted()
    return both


def _pieces(low: str, rows: Columns[EntryMeta], size: int) -> list[Segment]:
    """Dirty segments of about `size` rows from rows in name order; the first starts at
    `low`, each other at its first name."""
    n = len(rows)
    pieces = max(1, round(n / size))
    out = []
    for k in range(pieces):
        cut = rows.cut(n * k // pieces, n * (k + 1) // pieces)
        live = [entry.deleted is None for entry in cut.entries]
        if all(live):
            parts = (cut, Columns[EntryMeta]())
        else:
            parts = (cut.select(live), cut.select([not x for x in live]))
        out.append(Segment.dirty(low if k == 0 else cut.names[0], *parts))
    return out


def _changed(segment: Segment, items: list[tuple[str, Row | None]]) -> list[Segment]:
    """The segment with these rows set or removed, split if it grew past SPLIT."""
    if len(items) <= 16:  # a write: a few list inserts
        live, trash = (part.columns() for part in segment.parts())
        for name, row in items:
            live.remove(name) or trash.remove(name)
            if row is not None:
                (live if row.entry.deleted is None else trash).insert(name, *row)
        new = Segment.dirty(segment.low, live, trash)
        return _pieces(new.low, _merged(new), TARGET) if len(new) > SPLIT else [new]
    rows: dict[str, Row | None] = dict(_merged(segment).part().rows())
    rows.update(items)
    kept = Columns[EntryMeta]()
    for name, row in rows.items():
        if row is not None:
            kept.append(name, *row)
    return _pieces(segment.low, kept.sorted(), TARGET)


class Index:
    """Every entry's metadata while unlocked: the segments, in name order."""

    __slots__ = ("_starts", "lows", "segments")

    def __init__(self, segments: list[Segment], lows: list[str] | None = None) -> None:
        if not segments or segments[0].low != "":
            raise ValueError("the first segment must start at the empty name")
        self.segments = segments
        self.lows = [s.low for s in segments] if lows is None else lows
        self._starts: list[int] | None = None

    @classmethod
    def empty(cls) -> Index:
        return cls([Segment.dirty("", Columns(), Columns())])

    @classmethod
    def build(cls, rows: Columns[E], convert: Callable[[E], EntryMeta]) -> Index:
        """Dirty segments of TARGET rows from rows in any order (a row-by-row unlock).
        `convert` makes each entry a wire record, in name order: the first list then
        walks memory front to back, not at random (records made in row-id order are
        scattered, and a cache miss costs ~1 µs on the 2-core VM)."""
        return cls(_pieces("", rows.sorted().converted(convert), TARGET))

    # ---------------------------------------------------------------- reading

    def segment_of(self, name: str) -> int:
        return bisect.bisect_right(self.lows, name) - 1

    def find(self, name: str) -> Row | None:
        return self.segments[self.segment_of(name)].find(name)

    def starts(self) -> list[int]:
        """Where each segment's live entries begin in the list of all live entries."""
        starts = self._starts
        if starts is None:
            starts = self._starts = [0, *itertools.accumulate(s.nlive for s in self.segments)]
        return starts

    @property
    def live(self) -> int:
        return self.starts()[-1]

    def view(self) -> EntryView[EntryMeta]:
        return EntryView(self.segments, self.starts(), Segment.live)

    def trash(self) -> list[EntryMeta]:
        return [e for s in self.segments if s.ntrash for e in s.parts()[1].entries]

    def rows(self) -> Iterator[tuple[str, Row]]:
        """Every row, live and trashed, segment by segment."""
        for segment in self.segments:
            live, trash = segment.parts()
            yield from live.rows()
            yield from trash.rows()

    def chunks(self) -> set[int]:
        return {s.chunk for s in self.segments if s.chunk is not None}

    # ---------------------------------------------------------------- writing

    def with_changes(self, changes: Iterable[tuple[str, Row | None]]) -> Index:
        """A new index with these rows set (None: removed); the segments they fall in
        become dirty, and one that grows past SPLIT rows is split."""
        by_segment: dict[int, list[tuple[str, Row | None]]] = {}
        for name, row in changes:
            by_segment.setdefault(self.segment_of(name), []).append((name, row))
        return self._replace({i: _changed(self.segments[i], items)
                              for i, items in by_segment.items()})

    def _replace(self, replaced: dict[int, list[Segment]]) -> Index:
        segments, lows = self.segments, self.lows
        if all(len(new) == 1 for new in replaced.values()):  # the usual write: copy, assign
            segments, lows = segments.copy(), lows.copy()
            for i, (new,) in replaced.items():
                segments[i], lows[i] = new, new.low
            return Index(segments, lows)
        out: list[Segment] = []
        for i, segment in enumerate(segments):
            out += replaced.get(i, (segment,))
        return Index(out)

    def normalized(self) -> Index:
        """The index as it should be sealed: dirty segments split to about TARGET rows, and
        a small dirty one merged into the one before (which is then resealed too)."""
        segments: list[Segment] = []
        for segment in self.segments:
            if segment.chunk is None and len(segment) > 2 * TARGET:
                segments += _pieces(segment.low, _merged(segment), TARGET)
            elif (segment.chunk is None and len(segment) < MERGE and segments
                  and len(segments[-1]) + len(segment) <= 2 * TARGET):
                previous = segments.pop()
                both = _merged(previous)
                both.extend(_merged(segment))
                segments += _pieces(previous.low, both, 2 * TARGET)
            else:
                segments.append(segment)
        return Index(segments)

    def sealed_as(self, chunks: dict[int, int]) -> Index:
        """This index with each dirty segment (by position) now held by the given chunk."""
        return Index([Segment(s.low, chunks[i], s.nlive, s.ntrash, parts=s.parts())
                      if i in chunks else s for i, s in enumerate(self.segments)])


T = TypeVar("T")


class EntryView(Sequence[T]):
    """Live entries in name order, read through the segments: the agent pages a list of
    100,000 through this, and each segment is decoded only when a page reaches it.

    The segments are the index's at the time of the call; a write makes a new index and
    never changes these. The records are the cache's own, to be encoded, not changed.
    `raw()` is the same view of the entries' msgpack encodings.
    """

    __slots__ = ("_column", "_segments", "_starts")

    def __init__(self, segments: list[Segment], starts: list[int],
                 column: Callable[[Segment], tuple[T, ...]]) -> None:
        self._segments, self._starts, self._column = segments, starts, column

    def raw(self) -> EntryView[msgspec.Raw]:
        """Each entry as msgspec.Raw: the bytes a sealed chunk holds, not decoded (or the
        record encoded, for a segment written since). An unfiltered list page of these
        encodes as the same bytes as the records, without decoding or encoding them."""
        return EntryView(self._segments, self._starts, Segment.raw)

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            return self._run(start, stop)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("entry index out of range")
        k = bisect.bisect_right(self._starts, index) - 1
        return self._column(self._segments[k])[index - self._starts[k]]

    def _run(self, start: int, stop: int) -> list[T]:
        out: list[T] = []
        k = bisect.bisect_right(self._starts, start) - 1
        with gc_paused():  # one pause for the segments a page decodes, not one per segment
            while start < stop:
                base = self._starts[k]
                take = self._column(self._segments[k])[start - base:stop - base]
                out += take
                start += len(take)
                k += 1
        return out

    def __iter__(self) -> Iterator[T]:
        for segment in self._segments:
            if segment.nlive:
                yield from self._column(segment)
