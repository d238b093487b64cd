"""When each entry's value was last handed out, kept in memory and written back in batches.

A reveal (`get`, `get_many`, `reveal`; `run` and `inject` go through
`get_many`) stamps the entry's name with the time. The times are written to
`last-used.json` in the state directory (0600, replaced atomically, off the
event loop) at most every `every` seconds while they change, and at lock, so
a busy agent does one small write a minute rather than one per read. The file
is keyed by the names' audit HMACs (`hmac-sha256:` under the vault's audit
key, as in the audit trail), so it reveals no names; loaded at unlock, each
HMAC is matched to its name when a reply needs it: `describe` computes one
HMAC, the first `list` of an unlock one per entry. Names and times are
dropped at lock, like every other decrypted thing.

Replies carry the time as `EntryMeta.last_used`. An entry's metadata is the
store's and is never changed: the stamped copy is made once per (entry, time)
and reused, so the list handler's page cache, which reuses an encoded page
while it holds the very same objects, stays valid until an entry on that page
is used again. A page of the vault's own encodings (msgspec.Raw) keeps them,
but for its used entries, which are decoded and stamped.

Reveals of a remote mount are answered on reader threads, so the state is
behind a lock, and the write-back timer is armed on the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import cast, overload

import msgspec

from credd.files import read_state, save_state
from credd.protocol import EntryChanged, EntryMeta

from .audit import Background, name_hmac

log = logging.getLogger("credd.agent")

FILE_NAME = "last-used.json"
_PREFIX = "hmac-sha256:"  # as audit.name_hmac writes a name
DEFAULT_EVERY = 60.0

#: A listed entry: its metadata, or its msgpack encoding as the vault keeps it.
Item = EntryMeta | msgspec.Raw


class _File(msgspec.Struct, forbid_unknown_fields=True):
    used: dict[str, float]  # name HMAC → unix time


class _Named(msgspec.Struct, gc=False):
    name: str  # only the name of an encoded entry is decoded; the rest is skipped


_names = msgspec.msgpack.Decoder(_Named)
_entries = msgspec.msgpack.Decoder(EntryMeta)


def _name_of(item: Item) -> str:
    return item.name if isinstance(item, EntryMeta) else _names.decode(item).name


class LastUsed:
    def __init__(self, path: str, background: Background, every: float = DEFAULT_EVERY,
                 clock: Callable[[], float] = time.time) -> None:
        self.path, self.every, self.clock = path, every, clock
        self._background = background
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._key: bytes | None = None
        self._times: dict[str, float] = {}         # name → time, for names matched or used
        self._hmacs: dict[str, str] = {}           # name → its HMAC, for the names above
        self._unmatched: dict[str, float] = {}     # HMAC → time, loaded, name not yet known
        self._matched_all = False                  # every entry's HMAC was tried this unlock
        self._names: list[str] = []                # the keys of _times, sorted when _sorted
        self._sorted = True
        self._stamped: dict[str, tuple[Item, float, EntryMeta]] = {}
        self._dirty = False                        # times changed since the last write
        self._timer: asyncio.TimerHandle | None = None  # the write-back, once armed
        self._arming = False                       # a reader thread asked the loop to arm it

    # ------------------------------------------------------------ unlock and lock

    def unlocked(self, key: bytes) -> None:
        """Load the saved times (still by HMAC) to match with names as replies need them."""
        try:
            data = read_state(self.path)
            saved = {} if data is None else msgspec.json.decode(data, type=_File).used
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("%s is unreadable (%s): last-used times start afresh", self.path,
                        getattr(exc, "strerror", None) or exc)
            saved = {}
        with self._lock:
            self._key, self._unmatched = key, saved
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # an agent built before its loop runs (tests): armed later
                pass

    def locked(self) -> None:
        """Write what changed, then forget every name and time."""
        with self._lock:
            self.flush()
            self._key = None
            self._times, self._hmacs, self._unmatched, self._stamped = {}, {}, {}, {}
            self._names, self._sorted, self._matched_all = [], True, False

    def rekeyed(self, key: bytes, everything: Iterable[Item]) -> None:
        """A new audit key changes every HMAC: match the saved times with names under the
        old key first (those of entries no longer live are lost), then save under the new."""
        with self._lock:
            self._match(everything)
            self._key, self._hmacs, self._unmatched = key, {}, {}
            self._dirty = True
            self._save_due()

    # ------------------------------------------------------------ stamping

    def touch(self, names: Iterable[str]) -> None:
        """The values of `names` were handed out now (on every reveal: kept lean)."""
        now = self.clock()
        with self._lock:
            times = self._times
            for name in names:
                if name not in times:
                    self._sorted = False
                times[name] = now
            self._dirty = True
            if self._timer is None and not self._arming:
                self._save_due()

    def changed(self, event: EntryChanged) -> None:
        """Follow a rename; forget a purged entry."""
        if event.action not in ("move", "purge"):
            return
        with self._lock:
            when = self._time_of(event.name)
            self._times.pop(event.name, None)
            self._sorted = False
            if event.action == "move" and event.new_name and when is not None:
                self._times[event.new_name] = when
            self._dirty = True
            self._save_due()

    def stamp(self, meta: EntryMeta) -> EntryMeta:
        """`meta` with its last-used time (a copy, made once per time), or `meta` itself."""
        return cast(EntryMeta, self.stamp_item(meta))

    def stamped(self, entries: Sequence[Item], everything: Iterable[Item]) -> Sequence[Item]:
        """`entries` (sorted by name) as a sequence whose items carry their last-used time;
        `everything` is the store's entries, to match the saved times with names once."""
        with self._lock:
            if self._unmatched and not self._matched_all:
                self._match(everything)
            if not self._times:
                return entries
            if not self._sorted:
                self._names, self._sorted = sorted(self._times), True
        return _Stamped(entries, self)

    def used_between(self, low: str, high: str) -> list[str]:
        """The names with a time that sort between `low` and `high` (inclusive)."""
        with self._lock:
            names = self._names
            return names[bisect.bisect_left(names, low):bisect.bisect_right(names, high)]

    def stamp_item(self, item: Item) -> Item:
        """`stamp` for an item of a list page, which may be an entry's encoding."""
        name = _name_of(item)
        with self._lock:
            when = self._time_of(name)
            if when is None:
                return item
            held = self._stamped.get(name)
            if held is not None and held[0] is item and held[1] == when:
                return held[2]
            meta = item if isinstance(item, EntryMeta) else _entries.decode(item)
            copy = msgspec.structs.replace(meta, last_used=when)
            self._stamped[name] = (item, when, copy)
            return copy

    def _time_of(self, name: str) -> float | None:
        when = self._times.get(name)
        if when is None and self._unmatched and self._key:
            when = self._unmatched.pop(self._hmac(name), None)
            if when is not None:
                self._times[name], self._sorted = when, False
        return when

    def _match(self, everything: Iterable[Item]) -> None:
        """Give the saved times their names: one HMAC per entry, once per unlock, in a loop
        kept tight (it is most of the first `list` after an unlock of a large vault)."""
        if self._unmatched and self._key:
            wanted = {bytes.fromhex(h.removeprefix(_PREFIX)): (h, when)
                      for h, when in self._unmatched.items()}
            key, digest = self._key, hmac.digest
            for item in everything:
                name = _name_of(item)
                found = wanted.pop(digest(key, name.encode(), "sha256"), None)
                if found is not None:
                    self._hmacs[name], self._times[name] = found
                    if not wanted:
                        break
            self._unmatched = dict(wanted.values())  # trashed or gone: kept for the file
            self._sorted = False
        self._matched_all = True

    def _hmac(self, name: str) -> str:
        digest = self._hmacs.get(name)
        if digest is None:
            digest = self._hmacs[name] = name_hmac(self._key, name)
        return digest

    # ------------------------------------------------------------ writing back

    def _save_due(self) -> None:
        """Write within `every` seconds: one timer for however many changes come meanwhile.
        It is armed on the event loop; a reveal answered on a reader thread asks the loop."""
        if self._timer is not None or self._arming:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # a reader thread
            if self._loop is not None:
                self._arming = True
                self._loop.call_soon_threadsafe(self._arm)
            return  # else armed by the next change on the loop; lock writes it anyway
        self._arm()

    def _arm(self) -> None:
        with self._lock:
            self._arming = False
            if self._timer is None and self._dirty and self._loop is not None:
                self._timer = self._loop.call_later(self.every, self.flush)

    def flush(self) -> None:
        """Write the times now, off the event loop (nothing to do if none changed)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._dirty or self._key is None:
                return
            self._dirty = False
            used = dict(self._unmatched)
            used.update((self._hmac(name), when) for name, when in self._times.items())
        data = msgspec.json.encode(_File(used=used))
        self._background(lambda: save_state(self.path, data, "last-used times"))


class _Stamped(Sequence[Item]):
    """A sorted run of entries whose items carry their last-used time: a slice is the
    store's, with only the used entries in it replaced (found by bisection, so a page
    costs the same whether 5 or 50,000 entries were ever used)."""

    def __init__(self, entries: Sequence[Item], used: LastUsed) -> None:
        self._entries, self._used = entries, used

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, int):
            return self._used.stamp_item(self._entries[index])
        run = cast("list[Item]", self._entries[index])  # a list, as a store's slice is
        used = self._used.used_between(_name_of(run[0]), _name_of(run[-1])) if run else []
        if used:
            run = list(run)
            for name in used:
                i = bisect.bisect_left(run, name, key=_name_of)
                if i < len(run) and _name_of(run[i]) == name:
                    run[i] = self._used.stamp_item(run[i])
        return run
