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
import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol, overload

from credd.protocol import EntryMeta

#: Entries per sealed chunk: small enough that the write which drops one rewrites a few
#: pages, large enough that unlock opens few of them (docs/vault.md, "The chunks").
TARGET = 128
#: A dirty segment is split past this many rows, so that inserting stays O(segment);
#: one below MERGE rows is merged into a neighbour when sealed.
SPLIT, MERGE = 4 * TARGET, TARGET // 4


class Row(NamedTuple):
    """One entry row as the cache holds it: its row id, rev and wire record (the cache's
    own: `deleted` set means it is in the trash)."""

    id: bytes
    rev: int
    entry: EntryMeta


class Part(NamedTuple):
    """One kind of a segment's rows (live, or trashed), in name order, column by column."""

    names: list[str]
    ids: list[bytes]
    revs: list[int]
    entries: list[EntryMeta]

    def find(self, name: str) -> Row | None:
        i = bisect.bisect_left(self.names, name)
        if i < len(self.names) and self.names[i] == name:
            return Row(self.ids[i], self.revs[i], self.entries[i])
        return None

    def copy(self) -> "Part":
        return Part(*map(list, self))

    def remove(self, name: str) -> bool:
        i = bisect.bisect_left(self.names, name)
        if i == len(self.names) or self.names[i] != name:
            return False
        for column in self:
            del column[i]
        return True

    def insert(self, name: str, row: Row) -> None:
        i = bisect.bisect_left(self.names, name)
        for column, value in zip(self, (name, row.id, row.rev, row.entry)):
            column.insert(i, value)

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, Row]]:
        sl = slice(start, stop)
        return zip(self.names[sl], map(Row, self.ids[sl], self.revs[sl], self.entries[sl]))


def empty_part() -> Part:
    return Part([], [], [], [])


class Body(Protocol):
    """A sealed chunk's decrypted body, as far as a segment needs it (chunks.ChunkBody)."""

    nlive: int

    def parts(self) -> tuple[Part, Part]: ...

    def count(self) -> int: ...


class Segment:
    """The rows whose names fall in [low, next segment's low), and the chunk that holds
    them in the file (None: dirty, to be sealed)."""

    __slots__ = ("low", "chunk", "nlive", "ntrash", "_body", "_parts")

    def __init__(self, low: str, chunk: int | None, nlive: int, ntrash: int,
                 body: Body | None = None, parts: tuple[Part, Part] | None = None) -> None:
        self.low, self.chunk, self.nlive, self.ntrash = low, chunk, nlive, ntrash
        self._body, self._parts = body, parts

    @classmethod
    def sealed(cls, low: str, chunk: int, body: Body) -> "Segment":
        return cls(low, chunk, body.nlive, body.count() - body.nlive, body=body)

    @classmethod
    def dirty(cls, low: str, live: Part, trash: Part) -> "Segment":
        return cls(low, None, len(live.names), len(trash.names), parts=(live, trash))

    def parts(self) -> tuple[Part, Part]:
        """(live, trashed) rows, decoded from the chunk body on first use. Two threads may
        both decode it; either result is the same picture."""
        parts = self._parts
        if parts is None:
            parts = self._parts = self._body.parts()  # type: ignore[union-attr]
            self._body = None
        return parts

    def find(self, name: str) -> Row | None:
        live, trash = self.parts()
        return live.find(name) or trash.find(name)

    def __len__(self) -> int:
        return self.nlive + self.ntrash


def _sorted_rows(live: Part, trash: Part) -> list[tuple[str, Row]]:
    return sorted(itertools.chain(live.rows(), trash.rows()), key=operator.itemgetter(0))


def _from_rows(low: str, rows: Iterable[tuple[str, Row]]) -> Segment:
    live, trash = empty_part(), empty_part()
    for name, row in rows:
        part = live if row.entry.deleted is None else trash
        for column, value in zip(part, (name, row.id, row.rev, row.entry)):
            column.append(value)
    return Segment.dirty(low, live, trash)


def _split(segment: Segment, size: int) -> list[Segment]:
    """`segment` in pieces of about `size` rows; the first keeps its low."""
    rows = _sorted_rows(*segment.parts())
    pieces = max(1, round(len(rows) / size))
    bounds = [len(rows) * k // pieces for k in range(pieces + 1)]
    return [_from_rows(segment.low if k == 0 else rows[bounds[k]][0],
                       rows[bounds[k]:bounds[k + 1]]) for k in range(pieces)]


class Index:
    """Every entry's metadata while unlocked: the segments, in name order."""

    __slots__ = ("segments", "lows", "_starts")

    def __init__(self, segments: list[Segment]) -> None:
        if not segments or segments[0].low != "":
            raise ValueError("the first segment must start at the empty name")
        self.segments = segments
        self.lows = [s.low for s in segments]
        self._starts: list[int] | None = None

    @classmethod
    def empty(cls) -> "Index":
        return cls([Segment.dirty("", empty_part(), empty_part())])

    @classmethod
    def build(cls, rows: Iterable[tuple[str, Row]]) -> "Index":
        """Dirty segments of TARGET rows from rows in any order (a row-by-row unlock)."""
        whole = _from_rows("", sorted(rows, key=operator.itemgetter(0)))
        return cls(_split(whole, TARGET))

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

    def view(self) -> "EntryView":
        return EntryView(self.segments, self.starts())

    def trash(self) -> list[EntryMeta]:
        return [e for s in self.segments if s.ntrash for e in s.parts()[1].entries]

    def rows(self) -> Iterator[tuple[str, Row]]:
        """Every row, live and trashed, segment by segment."""
        for segment in self.segments:
            live, trash = segment.parts()
            yield from live.rows()
            yield from trash.rows()

    def dirty(self) -> bool:
        return any(s.chunk is None for s in self.segments)

    def chunks(self) -> set[int]:
        return {s.chunk for s in self.segments if s.chunk is not None}

    # ---------------------------------------------------------------- writing

    def with_changes(self, changes: Iterable[tuple[str, Row | None]]) -> "Index":
        """A new index with these rows set (None: removed); the segments they fall in
        become dirty, and one that grows past SPLIT rows is split."""
        by_segment: dict[int, list[tuple[str, Row | None]]] = {}
        for name, row in changes:
            by_segment.setdefault(self.segment_of(name), []).append((name, row))
        replaced: dict[int, list[Segment]] = {}
        for i, items in by_segment.items():
            old = self.segments[i]
            live, trash = (part.copy() for part in old.parts())
            for name, row in items:
                live.remove(name) or trash.remove(name)
                if row is not None:
                    (live if row.entry.deleted is None else trash).insert(name, row)
            new = Segment.dirty(old.low, live, trash)
            replaced[i] = _split(new, TARGET) if len(new) > SPLIT else [new]
        return self._replace(replaced)

    def _replace(self, replaced: dict[int, list[Segment]]) -> "Index":
        segments: list[Segment] = []
        for i, segment in enumerate(self.segments):
            segments += replaced.get(i, (segment,))
        return Index(segments)

    def normalized(self) -> "Index":
        """The index as it should be sealed: dirty segments split to about TARGET rows, and
        a small dirty one merged into a neighbour (which is then resealed too)."""
        segments: list[Segment] = []
        for segment in self.segments:
            if segment.chunk is None and len(segment) > 2 * TARGET:
                segments += _split(segment, TARGET)
            elif (segment.chunk is None and len(segment) < MERGE and segments
                  and len(segments[-1]) + len(segment) <= 2 * TARGET):
                previous = segments.pop()
                rows = [*_sorted_rows(*previous.parts()), *_sorted_rows(*segment.parts())]
                segments.append(_from_rows(previous.low, rows))
            else:
                segments.append(segment)
        return Index(segments)

    def sealed_as(self, chunks: dict[int, int]) -> "Index":
        """This index with each dirty segment (by position) now held by the given chunk."""
        return Index([Segment(s.low, chunks[i], s.nlive, s.ntrash, parts=s.parts())
                      if i in chunks else s for i, s in enumerate(self.segments)])


class EntryView(Sequence[EntryMeta]):
    """Live entries in name order, read through the segments: the agent pages a list of
    100,000 through this, and each segment is decoded only when a page reaches it.

    The segments are the index's at the time of the call; a write makes a new index and
    never changes these. The records are the cache's own, to be encoded, not changed.
    """

    __slots__ = ("_segments", "_starts")

    def __init__(self, segments: list[Segment], starts: list[int]) -> None:
        self._segments, self._starts = segments, starts

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, index: int) -> EntryMeta: ...

    @overload
    def __getitem__(self, index: slice) -> list[EntryMeta]: ...

    def __getitem__(self, index: int | slice) -> EntryMeta | list[EntryMeta]:
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
        return self._segments[k].parts()[0].entries[index - self._starts[k]]

    def _run(self, start: int, stop: int) -> list[EntryMeta]:
        out: list[EntryMeta] = []
        k = bisect.bisect_right(self._starts, start) - 1
        while start < stop:
            base = self._starts[k]
            entries = self._segments[k].parts()[0].entries
            take = entries[start - base:stop - base]
            out += take
            start += len(take)
            k += 1
        return out

    def __iter__(self) -> Iterator[EntryMeta]:
        for segment in self._segments:
            if segment.nlive:
                yield from segment.parts()[0].entries
