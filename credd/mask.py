"""Streaming masking: every secret value in a byte stream becomes `<concealed by credd>`.

A `Masker` is fed the output of a program in whatever pieces the pipe
delivers and returns what is safe to show. A secret split across pieces is
still caught: the masker holds back the longest tail of what it has seen
that could still begin a secret (at most longest-secret − 1 bytes, and
nothing at all when the tail cannot start one, so prompts show at once).

Every occurrence of every secret is found, overlapping ones included; each
maximal run of concealed bytes (overlapping or touching occurrences) is
replaced by one marker. The result is the same however the stream is cut.

Values shorter than MIN_LENGTH bytes are not masked: a 1-3 byte value would
shred ordinary output and concealing it protects nothing.

The search itself is Hyperscan (Intel's multi-literal matcher, ~1 GB/s per
database here) when installed, else a `bytes.find` loop per secret, which is
also what a handful of values (up to FEW) get: for them importing and
compiling Hyperscan costs more than it saves. With many secrets, compiling
is the expensive part (~40 µs per pattern), so the patterns are split by
length into one database per CPU (each of at least PER_DB patterns),
compiled side by side on threads (Hyperscan releases the GIL), and a large
buffer is scanned by the databases side by side too.
`Patterns(..., background=True)` compiles behind the caller's back: the
first `Masker.feed` of a non-empty piece waits for it, so a program can
start (or input be opened) meanwhile.

`Patterns.locator()` is the same search saying which pattern matched (an
index into `Patterns.values`): `credd scan` maps it to an entry and a form.
Masking uses `finder()`, whose callbacks record no ids and so cost nothing
more for them.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from functools import cached_property, partial
from typing import Any

REPLACEMENT = b"<concealed by credd>"
MIN_LENGTH = 4
FEW = 8    # up to this many values, `bytes.find` per value beats setting up Hyperscan

Finder = Callable[[bytes | bytearray], list[tuple[int, int]]]
#: Like a Finder, with the index of the pattern that matched: (start, end, pattern id).
Locator = Callable[[bytes | bytearray], list[tuple[int, int, int]]]


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _FindLoop:
    """`bytes.find` per pattern: no set-up cost, fine for a handful of values.

    Patterns from index `caseless` on are lower-case and found in any case
    (searched for in the buffer lower-cased: ASCII only, offsets unchanged).
    """

    def __init__(self, patterns: list[bytes], ids: list[int] | None = None,
                 caseless: int | None = None) -> None:
        self.patterns = patterns
        self.ids = list(range(len(patterns))) if ids is None else ids
        self.caseless = len(patterns) if caseless is None else caseless

    def locator(self) -> Locator:
        numbered = list(zip(self.ids, self.patterns))
        exact, folded = numbered[:self.caseless], numbered[self.caseless:]

        def locate(buf: bytes | bytearray) -> list[tuple[int, int, int]]:
            hits: list[tuple[int, int, int]] = []
            _find_all(buf, exact, hits)
            if folded:
                _find_all(buf.lower(), folded, hits)
            return hits

        return locate

    def finder(self) -> Finder:
        locate = self.locator()
        return lambda buf: [(start, end) for start, end, _ in locate(buf)]


def _find_all(buf: bytes | bytearray, numbered: list[tuple[int, bytes]],
              hits: list[tuple[int, int, int]]) -> None:
    for i, pattern in numbered:
        at = buf.find(pattern)
        while at >= 0:
            hits.append((at, at + len(pattern), i))
            at = buf.find(pattern, at + 1)


class _Hyperscan:
    """The patterns in `databases` Hyperscan databases, compiled side by side.

    Compiling grows faster than linearly with the number of patterns (20,000
    at once: ~0.85 s of CPU here, as two halves by length ~0.55 s; 40,000
    at once ~1.5 s, as four quarters ~0.95 s) and releases the GIL, so one
    database per CPU, each compiled on its own thread, cuts the wall time
    about by the number of CPUs, and databases of at most MAX_PER_DB
    patterns cut the CPU time too. Each database is one more pass over the
    data (~1-1.5 GB/s), so a buffer of at least PARALLEL_SCAN bytes is
    scanned by all of them at once. Each finder has its own scratch spaces.
    """

    PER_DB = 4000               # patterns per database at least: below, one more pass costs more
    MAX_PER_DB = 10_000         # patterns per database at most: above, compiling costs more
    PARALLEL_SCAN = 1 << 18     # smaller buffers are scanned one database after the other

    def __init__(self, patterns: list[bytes], *, caseless: int | None = None,
                 databases: int | None = None) -> None:
        import hyperscan
        self.hs = hyperscan
        caseless = len(patterns) if caseless is None else caseless
        # the binding hands literals over as C strings: a NUL byte would cut one short
        loose = [i for i, p in enumerate(patterns) if b"\0" in p]
        self.loose = _FindLoop([patterns[i] for i in loose], loose,
                               sum(i < caseless for i in loose))
        lengths = list(map(len, patterns))
        # by length: literals of like lengths compile with ~20 % less CPU and scan faster
        # than a mix (20,000 secrets and their base64 forms as two halves: 0.54 s against
        # 0.68 s here, and 1.0 against 1.5 ms per MiB)
        by_length = sorted((i for i, p in enumerate(patterns) if b"\0" not in p),
                           key=lengths.__getitem__)
        k = databases or max(1, min(cpus(), len(by_length) // self.PER_DB),
                             -(-len(by_length) // self.MAX_PER_DB))
        k = min(k, len(by_length))
        # each part: the pattern ids (indexes into `patterns`) its database matches
        parts = [by_length[i * len(by_length) // k:(i + 1) * len(by_length) // k]
                 for i in range(k)]
        self.parts: list[tuple[Any, list[int], list[int]]] = []
        built: list[Any] = [None] * k
        errors: list[BaseException] = []

        def build(i: int) -> None:
            try:
                part = [patterns[j] for j in parts[i]]
                flags = [hyperscan.HS_FLAG_CASELESS if j >= caseless else 0 for j in parts[i]]
                db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                db.compile(expressions=part, ids=list(range(len(part))), elements=len(part),
                           flags=flags, literal=True)
                built[i] = db
            except BaseException as exc:  # re-raised on the calling thread
                errors.append(exc)

        helpers = [threading.Thread(target=build, args=(i,), name="credd-mask-compile",
                                    daemon=True) for i in range(1, k)]
        for t in helpers:
            t.start()
        if k:
            build(0)
        for t in helpers:
            t.join()
        if errors:
            raise errors[0]
        self.parts = [(db, [lengths[j] for j in ids], ids) for db, ids in zip(built, parts)]
        self._pool: Any = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _executor(self) -> Any:
        """Threads for scanning side by side (made anew in a forked child, whose copy has none)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(len(self.parts) - 1,
                                                thread_name_prefix="credd-mask-scan")
                self._pool_pid = os.getpid()
            return self._pool

    def finder(self) -> Finder:
        # literals: a match starts at its end minus the pattern's length (no SOM flag needed)
        def on_match(hits: list[Any], lengths: list[int], _ids: list[int]) -> Callable[..., None]:
            return lambda i, _start, end, _flags, _ctx: hits.append((end - lengths[i], end))

        return self._search(on_match, self.loose.finder() if self.loose.patterns else None)

    def locator(self) -> Locator:
        def on_match(hits: list[Any], lengths: list[int], ids: list[int]) -> Callable[..., None]:
            return lambda i, _start, end, _flags, _ctx: hits.append((end - lengths[i], end,
                                                                     ids[i]))

        return self._search(on_match, self.loose.locator() if self.loose.patterns else None)

    def _search(self, on_match: Callable[..., Callable[..., None]],
                loose: Callable[[bytes | bytearray], list[Any]] | None
                ) -> Callable[[bytes | bytearray], list[Any]]:
        """A search of every database (side by side on a large buffer), hits recorded by
        the callbacks `on_match(hits, lengths, ids)` makes, plus the NUL-byte patterns'."""
        scans = [(db, self.hs.Scratch(db), lengths, ids) for db, lengths, ids in self.parts]
        parallel = len(scans) > 1

        def scan(db: Any, scratch: Any, lengths: list[int], ids: list[int],
                 buf: bytes | bytearray) -> list[Any]:
            hits: list[Any] = []
            db.scan(buf, match_event_handler=on_match(hits, lengths, ids), scratch=scratch)
            return hits

        def find(buf: bytes | bytearray) -> list[Any]:
            hits: list[Any] = []
            pending = []
            if parallel and len(buf) >= self.PARALLEL_SCAN:
                try:
                    pool = self._executor()
                    pending = [pool.submit(scan, *s, buf) for s in scans[1:]]
                except RuntimeError:  # interpreter shutting down: no new threads
                    pending = []
            for s in scans[:1] if pending else scans:
                hits += scan(*s, buf)
            for future in pending:
                hits += future.result()
            if loose is not None:
                hits += loose(buf)
            return hits

        return find


_Engine = _FindLoop | _Hyperscan


def _auto(patterns: list[bytes], *, caseless: int | None = None) -> _Engine:
    """Hyperscan when this machine has it (and a CPU it supports), else the find loop;
    the find loop also for a few values, where importing and compiling cost more."""
    if len(patterns) <= FEW:
        return _FindLoop(patterns, caseless=caseless)
    try:
        import hyperscan
    except ImportError:
        return _FindLoop(patterns, caseless=caseless)
    try:
        return _Hyperscan(patterns, caseless=caseless)
    except hyperscan.error:  # an unsupported CPU, or a pattern it refuses: slower, still exact
        return _FindLoop(patterns, caseless=caseless)


#: engine name -> build(patterns, caseless=index of the first pattern matched in any case)
ENGINES: dict[str, Callable[..., _Engine]] = {
    "auto": _auto, "hyperscan": _Hyperscan, "find": _FindLoop}


def merged(hits: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping or touching intervals joined."""
    runs: list[tuple[int, int]] = []
    for start, end in sorted(hits):
        if runs and start <= runs[-1][1]:
            if end > runs[-1][1]:
                runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def as_bytes(values: Iterable[str | bytes], *, sort: bool = True) -> list[bytes]:
    """Distinct maskable values as UTF-8 bytes, shorter ones dropped, sorted."""
    if not isinstance(values, (list, tuple, set, frozenset)):
        values = list(values)
    out: set[Any]
    try:
        out = set(values)
        convert = not all(type(v) is bytes for v in out)
    except TypeError:  # unhashable: bytearray, memoryview
        convert = True
    if convert:
        out = {v if type(v) is bytes else v.encode() if isinstance(v, str) else bytes(v)
               for v in values}
    out.difference_update([v for v in out if len(v) < MIN_LENGTH])
    return sorted(out) if sort else list(out)


_SINGLE = [bytes((b,)) for b in range(256)]


class Patterns:
    """The secrets, compiled once; any number of Maskers (one per stream) can share them.

    With `background=True` the compiling runs on a thread and `finder()`
    (the first `Masker.feed`) waits for it. What decides how much a masker
    holds back (the sorted values, a tail that could begin one found by
    bisection, and the set of bytes occurring in any of them) is worked out
    by the first Masker that needs it, while the compiling goes on, and never
    for a search that only locates (credd scan).

    `caseless` patterns match in any ASCII case (hex: `xxd -p` writes it lower
    case, `%X` upper): one pattern instead of two, compiled and searched for
    in ~25 % less time. They are held lower-cased, after the others in
    `values`; for holding back, their all-lower and all-upper spellings count.
    """

    def __init__(self, secrets: Iterable[str | bytes], *, caseless: Iterable[bytes] = (),
                 engine: str = "auto", background: bool = False) -> None:
        patterns = as_bytes(secrets, sort=False)
        folded = as_bytes([c.lower() for c in caseless], sort=False) if caseless else []
        if folded:  # a literal that is also caseless: caseless only
            patterns = list(set(patterns).difference(folded))
        #: a Locator's pattern id is an index into this list; from `caseless` on, any case
        self.values = patterns + folded
        self.caseless = len(patterns)
        self._engine: _Engine | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if self.values:
            build = partial(ENGINES[engine], caseless=self.caseless)
            if background and engine != "find" and (engine != "auto"
                                                    or len(self.values) > FEW):
                self._thread = threading.Thread(target=self._build, args=(build, self.values),
                                                name="credd-mask-compile", daemon=True)
                self._thread.start()
            else:
                self._engine = build(self.values)
        self.max_hold = max(map(len, self.values), default=1) - 1

    @cached_property
    def _spellings(self) -> list[bytes]:
        """Every pattern as it may appear: caseless ones all lower and all upper case."""
        return self.values + [p.upper() for p in self.values[self.caseless:]]

    @cached_property
    def sorted(self) -> list[bytes]:
        return sorted(self._spellings)

    @cached_property
    def present(self) -> bytes:
        """Every byte that occurs in any secret."""
        joined = b"".join(self._spellings)
        return b"".join(b for b in _SINGLE if b in joined)

    @cached_property
    def firsts(self) -> frozenset[int]:
        """Every byte that begins a secret."""
        return frozenset(b for b in range(256) if self.begins_secret(_SINGLE[b]))

    def _build(self, build: Callable[[list[bytes]], _Engine], patterns: list[bytes]) -> None:
        try:
            self._engine = build(patterns)
        except BaseException as exc:  # raised where the engine is wanted
            self._error = exc

    def __repr__(self) -> str:
        return f"Patterns(<{self.max_hold + 1}-byte longest secret>)"

    def engine(self) -> _Engine | None:
        """The compiled engine (None without patterns), waiting for a background compile."""
        if self._thread is not None:
            self._thread.join()  # at once when done; Maskers on several threads may ask
        if self._error is not None:
            raise self._error
        return self._engine

    def finder(self) -> Finder:
        engine = self.engine()
        return engine.finder() if engine is not None else (lambda buf: [])

    def locator(self) -> Locator:
        """A search that also says which pattern matched (an index into `values`)."""
        engine = self.engine()
        return engine.locator() if engine is not None else (lambda buf: [])

    def begins_secret(self, tail: bytes) -> bool:
        """Is `tail` a proper prefix of some secret?"""
        values = self.sorted
        i = bisect_left(values, tail)
        # the values starting with `tail` follow it in sorted order; one may equal it
        while i < len(values) and values[i].startswith(tail):
            if len(values[i]) > len(tail):
                return True
            i += 1
        return False


class Masker:
    """Feed bytes in, get masked bytes out; `flush()` at end of stream.

    `secrets` is an iterable of values or a compiled `Patterns`. Not
    thread-safe: give each stream its own Masker (they may share Patterns).
    `on_hit`, if given, is called with the bytes of every occurrence concealed,
    once each, as it is decided (the agent audits which secret appeared).
    """

    def __init__(self, secrets: Iterable[str | bytes] | Patterns, *,
                 replacement: bytes = REPLACEMENT, engine: str = "auto",
                 on_hit: Callable[[bytes], None] | None = None) -> None:
        self.patterns = (secrets if isinstance(secrets, Patterns)
                         else Patterns(secrets, engine=engine))
        self.replacement = replacement
        self.on_hit = on_hit
        self.max_hold = self.patterns.max_hold
        self._find: Finder | None = None  # on first use: Patterns may still be compiling
        self._buf = b""           # unsettled bytes; the stream offset of buf[0] is _base
        self._base = 0
        self._emitted = 0         # stream offset up to which output is decided
        self._run_end = -1        # stream offset where the last concealed run ends

    def __repr__(self) -> str:
        return f"Masker(<{self.max_hold + 1}-byte longest secret>)"

    def _held(self, buf: bytes) -> int:
        """Length of the longest tail of `buf` that is a proper prefix of some secret."""
        if not self.max_hold:
            return 0
        tail = buf[-self.max_hold:]
        # only a tail made of bytes that occur in secrets can begin one ("\n" usually cannot)
        longest = len(tail) - len(tail.rstrip(self.patterns.present))
        firsts, begins = self.patterns.firsts, self.patterns.begins_secret
        for k in range(longest, 0, -1):
            if tail[-k] in firsts and begins(tail[-k:]):
                return k
        return 0

    def feed(self, data: bytes) -> bytes:
        """Masked output that is final now; the rest waits for more data or flush()."""
        if not data:
            return b""
        buf = self._buf + data if self._buf else bytes(data)
        return self._settle(buf, len(buf) - self._held(buf))

    def flush(self) -> bytes:
        """The end of the stream: everything still held back, masked."""
        return self._settle(self._buf, len(self._buf))

    def _settle(self, buf: bytes, safe_at: int) -> bytes:
        """Emit buf up to `safe_at` (no later match can touch it), concealing every run."""
        if buf and self._find is None:  # an empty stream never waits for the compiling
            self._find = self.patterns.finder()
        base, out = self._base, []
        safe = base + safe_at
        pos = self._emitted
        hits = self._find(buf) if self._find and buf else []
        if hits and self.on_hit is not None:
            # an occurrence is decided in the one round whose buffer holds its start below
            # `safe`; the next round's buffer begins at `safe`: each is reported once
            for found_at, found_end in hits:
                if found_at < safe_at:
                    self.on_hit(buf[found_at:found_end])
        for found_at, found_end in merged(hits):
            start, end = found_at + base, found_end + base
            if start <= self._run_end:        # continues the run already concealed
                self._run_end = max(self._run_end, end)
                pos = max(pos, end)
                continue
            if start >= safe:                 # may still grow with more data
                break
            out.append(buf[pos - base:start - base])
            out.append(self.replacement)
            self._run_end = pos = end
        if pos < safe:
            out.append(buf[pos - base:safe - base])
            pos = safe
        self._emitted = pos
        keep_from = min(safe, pos) - base
        self._buf, self._base = buf[keep_from:], base + keep_from
        return b"".join(out)

    def mask(self, data: bytes) -> bytes:
        """One whole buffer, masked (the masker is left ready for a new stream)."""
        out = self.feed(data) + self.flush()
        self._buf, self._base, self._emitted, self._run_end = b"", 0, 0, -1
        return out
