"""Reading the audit trail: its files, its chain, and the questions asked of it.

The trail is `audit.jsonl` and the files rotation renamed (`audit.jsonl.1` the
newest of those, up to `--audit-keep`). A `Trail` is a snapshot of them taken
on the event loop: every file opened (never through a symlink) and its size
noted, so that it can be read on another thread while the agent appends and
rotates: a renamed or deleted file is still read through its descriptor, and
lines written after the snapshot are not read. Nothing is loaded whole:
queries read backwards from the newest line and stop as soon as they can,
verification reads forwards once.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import BinaryIO, NamedTuple

import msgspec

from credd.protocol import AuditRecord, AuditReport, Reader

_decoder = msgspec.json.Decoder(AuditRecord)
_BLOCK = 1 << 16

#: Operations that hand an entry's value to the caller: what `who` counts.
REVEALS = frozenset({"get", "get_many", "reveal", "export", "run", "inject_file"})
#: Records the agent writes when it finds the trail broken; verify reports them as breaks.
BREAKS = {
    "anchor_missing": "at this unlock audit.head was missing although the trail had been "
                      "anchored before: the trail up to here may have been rewritten",
    "anchor_invalid": "at this unlock audit.head did not verify under the vault's key: "
                      "the trail up to here may have been rewritten",
    "anchor_mismatch": "at this unlock the trail did not lead back to its anchor: records "
                       "up to here were removed or rewritten while the agent was stopped",
}


class Link(NamedTuple):
    """A record's place in the chain: its number and the SHA-256 of its line."""

    seq: int
    hash: str


GENESIS = Link(0, "")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def trail_paths(path: str) -> list[str]:
    """The trail's files that exist, newest first: the live file, then .1, .2, ..."""
    directory, base = os.path.split(path)
    pattern = re.compile(re.escape(base) + r"\.([0-9]{1,6})")
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    numbers = sorted(int(m.group(1)) for n in names if (m := pattern.fullmatch(n)))
    rotated = [f"{path}.{n}" for n in numbers]
    return ([path] if base in names else []) + rotated


def rotated_numbers(path: str) -> list[int]:
    """The numbers of the rotated files, highest first (the order to shift them in)."""
    return sorted((int(p.rsplit(".", 1)[1]) for p in trail_paths(path) if p != path),
                  reverse=True)


@dataclass
class Query:
    """What `audit` asks for; None matches anything."""

    name_hmac: str | None = None
    grant: str | None = None
    program: str | None = None
    since: float | None = None
    op: str | None = None
    outcome: str | None = None

    def needle(self) -> bytes | None:
        """Bytes every matching line contains, to skip the others without decoding them."""
        if self.name_hmac is not None:
            return self.name_hmac.encode()
        if self.grant:
            return msgspec.json.encode(self.grant)
        return None

    def matches(self, r: AuditRecord) -> bool:
        return ((self.name_hmac is None or r.name_hmac == self.name_hmac)
                and (self.grant is None or self.grant in (r.grant, r.subject))
                and (self.program is None or program_matches(self.program, r.program))
                and (self.op is None or r.op == self.op)
                and (self.outcome is None or r.outcome == self.outcome))


def program_matches(pattern: str, program: str) -> bool:
    """`credd` matches `credd get`; `credd get` only itself; `*credd*` as a glob."""
    if any(ch in pattern for ch in "*?["):
        return fnmatchcase(program, pattern)
    return program == pattern or program.startswith(pattern + " ")


class _File(NamedTuple):
    name: str        # the file's name when the snapshot was taken
    file: BinaryIO
    size: int        # bytes to read: the lines written before the snapshot


class Trail:
    """The trail's files at one moment (see the module docstring); close it after use."""

    def __init__(self, path: str) -> None:
        self._files: list[_File] = []  # oldest first
        try:
            for name in reversed(trail_paths(path)):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                f = os.fdopen(fd, "rb")
                self._files.append(_File(os.path.basename(name), f, os.fstat(fd).st_size))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Trail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files:
            f.file.close()
        self._files = []

    @property
    def names(self) -> list[str]:
        return [f.name for f in self._files]

    # ------------------------------------------------------------ lines

    def forward(self) -> Iterator[tuple[str, int, bytes]]:
        """(file, line number, line) from the oldest line on; a torn last line included."""
        for name, f, size in self._files:
            f.seek(0)
            left = size
            for number, read in enumerate(f, 1):
                left -= len(read)
                line = (read[:left] if left < 0 else read).removesuffix(b"\n")
                if line:
                    yield name, number, line
                if left <= 0:
                    break

    def backward(self) -> Iterator[bytes]:
        """Whole lines from the newest on (a torn last line is skipped)."""
        for _name, f, size in reversed(self._files):
            yield from _lines_backward(f, size)

    def first_line(self) -> bytes | None:
        for _name, f, size in self._files:
            if size:
                f.seek(0)
                return f.readline(size).rstrip(b"\n") or None
        return None

    def ends_torn(self) -> bool:
        """Whether the newest file ends inside a line (a write that failed halfway)."""
        for _name, f, size in reversed(self._files):
            if size:
                f.seek(size - 1)
                return f.read(1) != b"\n"
        return False

    # ------------------------------------------------------------ questions

    def records(self) -> Iterator[AuditRecord]:
        """Decoded records, newest first; lines that are not records are skipped."""
        for line in self.backward():
            record = _decode(line)
            if record is not None:
                yield record

    def last(self) -> tuple[Link, Link] | None:
        """(head, first) as the files say: the last whole line and the first line."""
        for line in self.backward():
            record = _decode(line)
            first = self.first_line() or line
            return (Link(record.seq if record else 0, line_hash(line)),
                    Link(_seq(first), line_hash(first)))
        return None

    def search(self, query: Query, limit: int) -> list[AuditRecord]:
        """The newest `limit` records matching `query`, newest first.

        Lines are in the order they were written: reading stops at the first
        record older than `since` (a clock set back by more than that can hide
        a few records)."""
        needle = query.needle()
        found: list[AuditRecord] = []
        for line in self.backward():
            if needle is not None and needle not in line and query.since is None:
                continue  # cannot match: not worth decoding
            record = _decode(line)
            if record is None:
                continue
            if query.since is not None and record.time < query.since:
                break
            if query.matches(record):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def readers(self, name_hmac: str, since: float | None) -> list[Reader]:
        """Every (program, grant) that received the value, most recent reader first."""
        seen: dict[tuple[str, str], Reader] = {}
        needle = name_hmac.encode()
        for line in self.backward():
            if needle not in line and since is None:
                continue
            r = _decode(line)
            if r is None:
                continue
            if since is not None and r.time < since:
                break
            if r.name_hmac != name_hmac or r.op not in REVEALS or r.outcome != "ok":
                continue
            reader = seen.get((r.program, r.grant))
            if reader is None:
                seen[(r.program, r.grant)] = Reader(program=r.program, grant=r.grant, count=1,
                                                    first=r.time, last=r.time)
            else:
                reader.count += 1
                reader.first = r.time
        return sorted(seen.values(), key=lambda reader: -reader.last)

    def descends(self, head: Link, anchor: Link, first_hash: str) -> str | None:
        """Why the trail does not lead back from `head` to `anchor` and start at
        `first_hash`, or None when it does (reads only the records after the anchor)."""
        first = self.first_line()
        if first_hash and (first is None or line_hash(first) != first_hash):
            return "its oldest records are gone"
        expected = head
        for line in self.backward():
            digest = line_hash(line)
            if digest != expected.hash:
                return f"the record at seq {expected.seq} is not the one the agent wrote"
            record = _decode(line)
            if record is None:
                return "a record after the anchor is unreadable"
            if record.seq <= anchor.seq:
                return None if digest == anchor.hash else "the anchored record was changed"
            if not record.prev:  # the first chained record: the anchor was of an empty trail
                return None if anchor == GENESIS else "the anchored record is gone"
            expected = Link(record.seq - 1, record.prev)
        return None if expected == anchor else "the anchored record is gone"

    def verify(self, expect: Expected) -> AuditReport:
        return _Verification(self, expect).run()


@dataclass
class Expected:
    """What the chain must show besides each line linking to the one before: the
    agent's memory of its first and last record, and the record it last anchored."""

    head: Link
    first: Link | None
    anchor: Link | None
    anchored_at: float | None = None
    anchor_problem: str = ""  # audit.head unreadable, or not verifying under the key


class _Line(NamedTuple):
    file: str
    number: int
    record: AuditRecord
    link: Link


class _Verification:
    """One pass over the chain, oldest line first, stopping at the first break."""

    def __init__(self, trail: Trail, expect: Expected) -> None:
        self.expect = expect
        self.lines = trail.forward()
        self.report = AuditReport(
            ok=True, files=trail.names, head_seq=expect.head.seq,
            anchored_seq=expect.anchor.seq if expect.anchor else None,
            anchored_at=expect.anchored_at)

    def run(self) -> AuditReport:
        if self.expect.anchor_problem:
            return self._broken("audit.head", 0, self.expect.anchor_problem)
        prev: _Line | None = None
        anchored = self.expect.anchor is None or self.expect.anchor == GENESIS
        for file, number, line in self.lines:
            record = _decode(line)
            if record is None:
                return self._broken(file, number, "this line is not an audit record (an edit, "
                                                  "or a write cut short)")
            this = _Line(file, number, record, Link(record.seq, line_hash(line)))
            broken = self._first(this) if prev is None else self._follows(prev, this)
            if broken is not None:
                return broken
            if record.op == "audit_log" and record.outcome in BREAKS:
                return self._broken(file, number, BREAKS[record.outcome])
            anchor = self.expect.anchor
            if anchor is not None and not anchored:
                if record.seq and record.seq == anchor.seq and this.link != anchor:
                    return self._broken(file, number, "this record differs from the one the "
                                        "agent anchored: the trail up to here was rewritten")
                anchored = this.link == anchor
            if record.seq == 0:
                self.report.unchained += 1
            else:
                self.report.first_seq = self.report.first_seq or record.seq
                self.report.records += 1
            prev = this
            if this.link == self.expect.head:
                break  # what was written after the question is for the next one
        return self._end(prev, anchored)

    def _first(self, this: _Line) -> AuditReport | None:
        first = self.expect.first
        if first is None or this.link.hash == first.hash:
            return None
        if this.record.seq > first.seq:
            return self._at(this, f"the oldest records are missing: the trail starts at seq "
                                  f"{this.record.seq}, it started at seq {first.seq}")
        return self._at(this, "this is not the first record the agent kept: the trail was "
                              "rewritten")

    def _follows(self, prev: _Line, this: _Line) -> AuditReport | None:
        """None when `this` links to `prev`; else the break, placed on the line at fault."""
        r = this.record
        if r.seq == 0:
            if prev.record.seq == 0:
                return None
            return self._at(this, "an unchained record inside the chain (inserted)")
        if r.prev == prev.link.hash and (not prev.record.seq or r.seq == prev.record.seq + 1):
            return None
        following = next(self.lines, None)
        after = _decode(following[2]) if following else None
        if after is not None and after.prev == prev.link.hash:
            return self._at(this, "this record was inserted: the next one chains to the "
                                  "record before it")
        if r.seq > prev.record.seq + 1:
            return self._at(this, f"records seq {prev.record.seq + 1}..{r.seq - 1} are missing "
                                  "before this line (removed)")
        if r.seq <= prev.record.seq:
            return self._at(prev, f"seq {prev.record.seq} is followed by seq {r.seq}: a record "
                                  "was inserted or edited here")
        intact = (after.prev == this.link.hash if after is not None
                  else this.link == self.expect.head)
        if intact:
            return self._at(prev, "this record was edited: the next one chains to another "
                                  "version of it")
        return self._at(this, "this record was edited: it does not chain to the record "
                              "before it")

    def _end(self, prev: _Line | None, anchored: bool) -> AuditReport:
        head = self.expect.head
        last = prev.link if prev is not None else GENESIS
        where = (prev.file, prev.number) if prev is not None else ("", 0)
        if last != head and head != GENESIS:
            what = (f"records seq {last.seq + 1}..{head.seq} are missing at the end"
                    if last.seq < head.seq else "the last record is not the one the agent wrote")
            return self._broken(*where, what)
        if not anchored and self.expect.anchor is not None:
            return self._broken(*where, f"the anchored record seq {self.expect.anchor.seq} "
                                        "is missing")
        return self.report

    def _at(self, line: _Line, problem: str) -> AuditReport:
        return self._broken(line.file, line.number, problem)

    def _broken(self, file: str, line: int, problem: str) -> AuditReport:
        self.report.ok = False
        self.report.file, self.report.line, self.report.problem = file, line, problem
        return self.report


def _decode(line: bytes) -> AuditRecord | None:
    try:
        return _decoder.decode(line)
    except msgspec.DecodeError:
        return None


def _seq(line: bytes) -> int:
    record = _decode(line)
    return record.seq if record else 0


def _lines_backward(f: BinaryIO, size: int) -> Iterator[bytes]:
    """Whole lines of f[:size], last first, reading 64 KiB blocks from the end."""
    pos, rest = size, b""
    torn = True  # the bytes after the last newline are not a whole line
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + rest
        lines = data.split(b"\n")
        rest = lines[0]
        for line in reversed(lines[1:]):
            if torn:
                torn = False
                continue
            if line:
                yield line
    if rest and not torn:
        yield rest
