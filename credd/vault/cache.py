"""The vault's metadata cache: one `Cached` per row while unlocked, and `EntryView`,
the sorted live entries as the agent pages them."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence

import msgspec

from credd.protocol import EntryMeta
from credd.vault.model import MetaRecord, from_entry_meta, to_entry_meta

_ENTRY = operator.attrgetter("entry")


class Cached(msgspec.Struct, gc=False):
    """One row's decrypted metadata while the vault is unlocked.

    `sealed` is the row's secret column exactly as stored (still encrypted),
    kept after it first authenticated under this `rev`, so that later reads
    decrypt from memory without SQLite. Every write makes a new Cached (new
    rev), and lock drops them all, so a sealed blob never outlives its row.

    It holds the metadata as a file record or as a wire record, each made from
    the other on first use: a row-by-row unlock decodes file records, a
    snapshot unlock wire records (so that its first list makes none). Making
    the wire record drops the file record, so 100,000 entries are not held
    twice once listed; writes make it again for the entries they change. Reads
    use `current`, whichever is there: both have the same fields. `name` and
    `deleted` are copied into the struct, because sorting, filtering and
    counting 100,000 entries read them at C speed (a write makes a new one).

    A gc=False struct: unlock makes 100,000 of these, and it can never be part
    of a cycle (an int, a gc=False record, a wire record that does not point back).
    """

    rev: int
    name: str
    deleted: float | None
    record: MetaRecord | None = None
    wire: EntryMeta | None = None
    sealed: bytes | None = None

    # Each form is read once into a local and the wire form is set before the record
    # is dropped, so a reader on another thread always finds one of them.
    @property
    def meta(self) -> MetaRecord:
        record = self.record
        if record is None:
            record = self.record = from_entry_meta(self.wire)  # type: ignore[arg-type]
        return record

    @property
    def entry(self) -> EntryMeta:
        wire = self.wire
        if wire is None:
            wire = self.wire = to_entry_meta(self.record)  # type: ignore[arg-type]
            self.record = None
        return wire

    @property
    def current(self) -> EntryMeta | MetaRecord:
        return self.wire or self.record  # type: ignore[return-value]


class EntryView(Sequence):
    """Live entries in name order, each made a wire record (`EntryMeta`) when first read.

    The agent pages a list of 100,000 through this: the first list after an unlock
    converts one page at a time while the client decodes the page before, instead of
    converting everything before the first page leaves. The rows are the vault's
    sorted list at the time of the call; writes replace that list, never change it.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Cached]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return list(map(_ENTRY, self._rows[index]))
        return self._rows[index].entry

    def __iter__(self) -> Iterator[EntryMeta]:
        return map(_ENTRY, self._rows)
