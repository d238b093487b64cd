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

The search itself is Hyperscan (Intel's multi-literal matcher, 0.5-1.5 GB/s
at 10,000 secrets here) when installed, else a `bytes.find` loop per
secret, which is also what a handful of values (up to FEW) get: for them
importing and compiling Hyperscan costs more than it saves.
"""

from __future__ import annotations

from typing import Callable, Iterable

REPLACEMENT = b"<concealed by credd>"
MIN_LENGTH = 4
FEW = 8    # up to this many values, `bytes.find` per value beats setting up Hyperscan
_HEAD = 8  # prefixes up to this length are kept in sets; longer ones are checked by head

Finder = Callable[[bytes], list[tuple[int, int]]]


class _Hyperscan:
    """Compiled databases of at most CHUNK patterns each; a finder scans them all.

    Compiling grows faster than linearly with the number of patterns (20,000 at
    once: ~0.8 s; as four databases: ~0.3 s here), while each extra database
    costs one more pass at over 1 GB/s. Each finder has its own scratch space.
    """

    CHUNK = 5000

    def __init__(self, patterns: list[bytes]) -> None:
        import hyperscan
        self.hs = hyperscan
        self.parts = []
        for i in range(0, len(patterns), self.CHUNK):
            part = patterns[i:i + self.CHUNK]
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=part, ids=list(range(len(part))), elements=len(part),
                       flags=[0] * len(part), literal=True)
            self.parts.append((db, [len(p) for p in part]))

    def finder(self) -> Finder:
        # literals: a match starts at its end minus the pattern's length (no SOM flag needed)
        scans = [(db, self.hs.Scratch(db), lengths) for db, lengths in self.parts]

        def find(buf: bytes) -> list[tuple[int, int]]:
            hits: list[tuple[int, int]] = []
            for db, scratch, lengths in scans:
                db.scan(buf, match_event_handler=lambda i, _start, end, _flags, _ctx:
                        hits.append((end - lengths[i], end)), scratch=scratch)
            return hits

        return find


class _FindLoop:
    """`bytes.find` per pattern: no set-up cost, fine for a handful of values."""

    def __init__(self, patterns: list[bytes]) -> None:
        self.patterns = patterns

    def finder(self) -> Finder:
        patterns = self.patterns

        def find(buf: bytes) -> list[tuple[int, int]]:
            hits = []
            for pattern in patterns:
                at = buf.find(pattern)
                while at >= 0:
                    hits.append((at, at + len(pattern)))
                    at = buf.find(pattern, at + 1)
            return hits

        return find


def _auto(patterns: list[bytes]):
    """Hyperscan when this machine has it (and a CPU it supports), else the find loop;
    the find loop also for a few values, where importing and compiling cost more."""
    if len(patterns) <= FEW:
        return _FindLoop(patterns)
    try:
        import hyperscan
    except ImportError:
        return _FindLoop(patterns)
    try:
        return _Hyperscan(patterns)
    except hyperscan.ArchitectureError:
        return _FindLoop(patterns)


ENGINES = {"auto": _auto, "hyperscan": _Hyperscan, "find": _FindLoop}


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


def as_bytes(values: Iterable[str | bytes]) -> list[bytes]:
    """Distinct maskable values as UTF-8 bytes, shorter ones dropped."""
    out = {v.encode() if isinstance(v, str) else bytes(v) for v in values}
    return sorted(v for v in out if len(v) >= MIN_LENGTH)


class Patterns:
    """The secrets, compiled once; any number of Maskers (one per stream) can share them."""

    def __init__(self, secrets: Iterable[str | bytes], *, engine: str = "auto") -> None:
        patterns = as_bytes(secrets)
        self.max_hold = max(map(len, patterns), default=1) - 1
        self._engine = ENGINES[engine](patterns) if patterns else None
        self.short: list[set[bytes]] = [set() for _ in range(_HEAD + 1)]
        self.by_head: dict[bytes, list[bytes]] = {}
        for p in patterns:
            for k in range(1, min(len(p), _HEAD + 1)):
                self.short[k].add(p[:k])
            if len(p) > _HEAD + 1:
                self.by_head.setdefault(p[:_HEAD], []).append(p)

    def __repr__(self) -> str:
        return f"Patterns(<{self.max_hold + 1}-byte longest secret>)"

    def finder(self) -> Finder:
        return self._engine.finder() if self._engine else (lambda buf: [])


class Masker:
    """Feed bytes in, get masked bytes out; `flush()` at end of stream.

    `secrets` is an iterable of values or a compiled `Patterns`. Not
    thread-safe: give each stream its own Masker (they may share Patterns).
    """

    def __init__(self, secrets: "Iterable[str | bytes] | Patterns", *,
                 replacement: bytes = REPLACEMENT, engine: str = "auto") -> None:
        self.patterns = (secrets if isinstance(secrets, Patterns)
                         else Patterns(secrets, engine=engine))
        self.replacement = replacement
        self.max_hold = self.patterns.max_hold
        self._find = self.patterns.finder()
        self._short, self._by_head = self.patterns.short, self.patterns.by_head
        self._buf = b""           # unsettled bytes; the stream offset of buf[0] is _base
        self._base = 0
        self._emitted = 0         # stream offset up to which output is decided
        self._run_end = -1        # stream offset where the last concealed run ends

    def __repr__(self) -> str:
        return f"Masker(<{self.max_hold + 1}-byte longest secret>)"

    def _could_start_secret(self, tail: bytes) -> bool:
        k = len(tail)
        if k <= _HEAD:
            return tail in self._short[k]
        return any(len(p) > k and p.startswith(tail) for p in self._by_head.get(tail[:_HEAD], ()))

    def _held(self, buf: bytes) -> int:
        """Length of the longest tail of `buf` that is a proper prefix of some secret."""
        for k in range(min(self.max_hold, len(buf)), 0, -1):
            if self._could_start_secret(buf[-k:]):
                return k
        return 0

    def feed(self, data: bytes) -> bytes:
        """Masked output that is final now; the rest waits for more data or flush()."""
        if not data:
            return b""
        buf = self._buf + data
        return self._settle(buf, len(buf) - self._held(buf))

    def flush(self) -> bytes:
        """The end of the stream: everything still held back, masked."""
        return self._settle(self._buf, len(self._buf))

    def _settle(self, buf: bytes, safe_at: int) -> bytes:
        """Emit buf up to `safe_at` (no later match can touch it), concealing every run."""
        base, out = self._base, []
        safe = base + safe_at
        pos = self._emitted
        for start, end in merged(self._find(buf)):
            start, end = start + base, end + base
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
