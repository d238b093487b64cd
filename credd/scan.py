"""Finding stored secrets where they leaked: files, git history, staged changes, git objects.

`Needles` compiles every form (credd.forms) of every stored value into one
search (credd.mask: Hyperscan when installed) and remembers which entry,
field and form each pattern stands for; the matcher reports the pattern's
id, so a hit names all three and never needs the value again. A `Scanner`
then reads:

- files (`files`): small files are searched together in batches of about
  CHUNK bytes (a hit must lie within one file), large ones chunk by chunk
  with the last longest-form − 1 bytes carried over, so a value across a
  chunk boundary is found once. `.git/` is skipped, symlinks are not
  followed, a file with a NUL byte in its first 8 KiB is binary (as git and
  ripgrep decide) and skipped unless asked;
- git history (`history`): `git log -p -U0` streamed, cut into pieces at
  commit headers; a piece with a hit is read line by line from the commit
  before the hit to attribute it to commit, file and line of the new
  version (`DiffPosition`). Hits on removed lines are not reported: the
  commit that added the line reports it. Commit messages are searched too;
- staged changes (`staged`): `git diff --cached -U0`, read the same way;
- the object store (`objects`): every object `git cat-file
  --batch-all-objects` holds, as blobs; when something is found, one `git
  rev-list --objects --all` names a path for each blob found.

Hits are reported once per (entry, field, form, place). Nothing here ever
returns, logs or raises with a value or a piece of one.
"""

from __future__ import annotations

import codecs
import os
import queue
import re
import stat
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec

from credd.errors import BadRequest, NotFound
from credd.forms import HEX, forms
from credd.mask import Patterns

if TYPE_CHECKING:
    import subprocess

CHUNK = 4 << 20          # bytes per read and per batch of small files
PROBE = 8192             # a NUL byte in this many first bytes: binary (git, ripgrep)
PIECE_MAX = 4 * CHUNK    # a commit longer than this is cut between lines, not only at its end

Advance = Callable[[int], None]
Buffer = bytes | bytearray


class Owner(NamedTuple):
    """What a pattern stands for: an entry, its field (None: the primary value), a form."""

    name: str
    field: str | None
    form: str


class Place(NamedTuple):
    """Where a blob or a diff line comes from."""

    file: str | None = None
    commit: str | None = None
    object: str | None = None


class Hit(msgspec.Struct, frozen=True):
    """One place a stored value was found in (never the value itself)."""

    name: str
    field: str | None
    form: str
    file: str | None = None
    line: int | None = None
    commit: str | None = None
    object: str | None = None


class Counts(msgspec.Struct):
    """What a scan covered, for its summary and `--json`."""

    values: int = 0          # stored values searched for
    too_short: int = 0       # stored values under MIN_LENGTH bytes: not searched for
    patterns: int = 0        # distinct forms compiled
    files: int = 0
    bytes: int = 0
    binary_skipped: int = 0
    unreadable: int = 0
    commits: int = 0
    objects: int = 0


class Needles:
    """Every form of every stored value, compiled into one search, and each pattern's owners.

    `secrets` are (entry name, field or None, value) triples, such as
    credd.redact.stored_secrets gives. `background=True` compiles on a
    thread; the first search waits for it.
    """

    def __init__(self, secrets: Iterable[tuple[str, str | None, str]], *,
                 background: bool = False) -> None:
        literal: dict[bytes, list[Owner]] = {}
        caseless: dict[bytes, list[Owner]] = {}  # hex, one pattern for both cases
        self.values = self.too_short = 0
        for name, field, value in secrets:
            found = forms(value)
            self.values += bool(found)
            self.too_short += not found
            for form, form_name in found.items():
                if form_name in HEX:
                    owners = caseless.setdefault(form.lower(), [])
                    if not owners or owners[-1] != (name, field, "hex"):
                        owners.append(Owner(name, field, "hex"))
                else:
                    literal.setdefault(form, []).append(Owner(name, field, form_name))
        self.patterns = Patterns(literal, caseless=caseless, background=background)
        values, first = self.patterns.values, self.patterns.caseless
        self._owners = [literal[p] for p in values[:first]]
        self._owners += [caseless[p] + literal.get(p, []) for p in values[first:]]
        self.longest = max(map(len, values), default=1)

    def __repr__(self) -> str:
        return f"Needles(<{len(self._owners)} patterns>)"

    def search(self) -> Callable[[Buffer], list[tuple[int, int, list[Owner]]]]:
        """A search returning (start, end, owners) of every occurrence, by start."""
        locate, owners = self.patterns.locator(), self._owners
        values, first = self.patterns.values, self.patterns.caseless

        def search(buf: Buffer) -> list[tuple[int, int, list[Owner]]]:
            found = []
            for start, end, i in locate(buf):
                who = owners[i]
                if i >= first:  # found in any case: name it by the case it is in
                    who = _as_found(who, bytes(buf[start:end]), values[i])
                found.append((start, end, who))
            return sorted(found)

        return search


def _as_found(owners: list[Owner], text: bytes, pattern: bytes) -> list[Owner]:
    """The owners of a caseless (hex) pattern found as `text`: `HEX` when upper case; a
    literal form that happens to equal it only when found exactly."""
    name = "HEX" if text.isupper() else "hex"
    return [o._replace(form=name) if o.form == "hex" else o for o in owners
            if o.form == "hex" or text == pattern]


def _hits(owners: list[Owner], place: Place, line: int | None) -> Iterator[Hit]:
    file = place.file and os.path.normpath(place.file)  # here: a few hits, many files
    for owner in owners:
        yield Hit(owner.name, owner.field, owner.form, file, line, place.commit, place.object)


def _unique(hits: Iterable[Hit]) -> Iterator[Hit]:
    seen: set[Hit] = set()
    for hit in hits:
        if hit not in seen:
            seen.add(hit)
            yield hit


class _Lines:
    """Line numbers of ascending positions in `buf`, counted incrementally."""

    def __init__(self, buf: Buffer, start: int = 0, first: int = 1) -> None:
        self.buf, self.pos, self.line = buf, start, first

    def at(self, pos: int) -> int:
        self.line += self.buf.count(b"\n", self.pos, pos)
        self.pos = pos
        return self.line


# ---------------------------------------------------------------- blobs (files, objects)

class _Blob(NamedTuple):
    """A named run of bytes to search: `readinto(view)` fills up to len(view) bytes of
    the view with what comes next and says how many (0 at its end)."""

    place: Place
    readinto: Callable[[memoryview], int]
    skip: Callable[[], None]


class _Batch(NamedTuple):
    """Whole small blobs read into one buffer for one search: each one's place and start."""

    places: list[Place]
    starts: list[int]
    data: bytearray


class _Chunk(NamedTuple):
    """A piece of one large blob (`first`: its beginning)."""

    place: Place
    data: bytes | bytearray
    first: bool


class Scanner:
    """Searches files, git history, staged changes or git objects for the needles.

    Reading runs on a thread of its own, up to PREFETCH pieces ahead of the
    search (reads, Hyperscan and git release the GIL, so the two overlap on
    two CPUs, and reading starts while the needles still compile).
    """

    PREFETCH = 4

    def __init__(self, needles: Needles, *, binary: bool = False) -> None:
        self.needles, self.binary = needles, binary
        self.counts = Counts(values=needles.values, too_short=needles.too_short,
                             patterns=len(needles.patterns.values))
        self._search: Callable[[Buffer], list[tuple[int, int, list[Owner]]]] | None = None

    def search(self, buf: Buffer) -> list[tuple[int, int, list[Owner]]]:
        if self._search is None:  # waits for a background compile
            self._search = self.needles.search()
        return self._search(buf)

    # ------------------------------------------------------------ files and objects

    def walk(self, paths: list[str]) -> list[File]:
        """The files under `paths` (see `walk`), directories it cannot list counted."""
        def unreadable(_error: OSError) -> None:
            self.counts.unreadable += 1

        return walk(paths, unreadable)

    def files(self, files: list[File], advance: Advance | None = None) -> Iterator[Hit]:
        """Hits in the files `walk` found."""
        units = _prefetch(self._units(self._open_files(files)), self.PREFETCH)
        return _unique(self._search_units(units, advance))

    def _open_files(self, files: Iterable[File]) -> Iterator[_Blob]:
        for path, _size, named in files:
            # never through a symlink swapped in since the walk; never block on a FIFO
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if named else os.O_NOFOLLOW)
            try:
                fd = os.open(path, flags)
            except OSError:
                self.counts.unreadable += 1
                continue
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    self.counts.files += 1
                    yield _Blob(Place(file=path), self._reader(fd), _nothing)
            finally:
                os.close(fd)

    def _reader(self, fd: int) -> Callable[[memoryview], int]:
        def readinto(view: memoryview) -> int:
            try:
                return os.readv(fd, [view])
            except OSError:  # EIO, a file gone bad: counted, and its end for us
                self.counts.unreadable += 1
                return 0

        return readinto

    def _units(self, blobs: Iterable[_Blob]) -> Iterator[_Batch | _Chunk]:
        """Small blobs read one after the other into a buffer of up to 2 x CHUNK bytes
        (searched once it holds CHUNK), large ones chunk by chunk; binary ones skipped.
        Read straight into the buffer: no copies, and no GIL held while reading."""
        batch = _Batch([], [], bytearray(2 * CHUNK))
        used = 0
        for blob in blobs:
            n = _fill(blob.readinto, memoryview(batch.data)[used:used + CHUNK])
            if not self.binary and batch.data.find(b"\0", used, used + min(n, PROBE)) >= 0:
                self.counts.binary_skipped += 1
                blob.skip()
                continue
            if n == CHUNK:  # a large blob: its own chunks (the first copied out), in order
                head = bytes(batch.data[used:used + n])
                if batch.places:
                    yield _flushed(batch, used)
                    batch, used = _Batch([], [], bytearray(2 * CHUNK)), 0
                yield from self._chunks(blob, head)
                continue
            batch.places.append(blob.place)
            batch.starts.append(used)
            used += n
            if used >= CHUNK:
                yield _flushed(batch, used)
                batch, used = _Batch([], [], bytearray(2 * CHUNK)), 0
        if batch.places:
            yield _flushed(batch, used)

    def _chunks(self, blob: _Blob, head: bytes) -> Iterator[_Chunk]:
        yield _Chunk(blob.place, head, True)
        while True:
            chunk = bytearray(CHUNK)
            n = _fill(blob.readinto, memoryview(chunk))
            if not n:
                return
            del chunk[n:]
            yield _Chunk(blob.place, chunk, False)

    def _search_units(self, units: Iterable[_Batch | _Chunk],
                      advance: Advance | None) -> Iterator[Hit]:
        keep = self.needles.longest - 1
        carry, carry_line = b"", 1
        for unit in units:
            if isinstance(unit, _Batch):
                yield from self._batch(unit)
            else:
                # a large blob: the last longest-form - 1 bytes go into the next search too
                if unit.first:
                    carry, carry_line = b"", 1
                buf = carry + unit.data
                lines = _Lines(buf, 0, carry_line)
                for start, end, owners in self.search(buf):
                    if end > len(carry):  # else found with the piece before
                        yield from _hits(owners, unit.place, lines.at(start))
                cut = max(len(buf) - keep, 0)
                carry_line += buf.count(b"\n", 0, cut)
                carry = buf[cut:]
            self.counts.bytes += len(unit.data)
            if advance is not None:
                advance(len(unit.data))

    def _batch(self, batch: _Batch) -> Iterator[Hit]:
        places, starts, buf = batch
        ends = [*starts[1:], len(buf)]
        lines: _Lines | None = None
        current = -1
        for start, end, owners in self.search(buf):
            i = bisect_right(starts, start) - 1
            if end > ends[i]:
                continue  # runs into the next blob: not a hit in either
            if i != current:
                lines, current = _Lines(buf, starts[i]), i
            assert lines is not None
            yield from _hits(owners, places[i], lines.at(start))

    # ------------------------------------------------------------ git

    def history(self, repo: str, *, all_refs: bool = False,
                advance: Advance | None = None) -> Iterator[Hit]:
        """Hits in every commit of the current branch (or of every ref) and its message."""
        revisions = _revisions(repo, all_refs)
        if not revisions:
            return iter(())
        args = ["log", "-p", "-U0", "--root", "--no-show-signature",
                "--format=commit %H%n%w(0,4,4)%B", *revisions]
        return _unique(self._diff(repo, args, advance))

    def staged(self, repo: str) -> Iterator[Hit]:
        """Hits in what `git commit` would commit now (for a pre-commit hook)."""
        return _unique(self._diff(repo, ["diff", "--cached", "-U0"], None))

    def _diff(self, repo: str, args: list[str], advance: Advance | None) -> Iterator[Hit]:
        diff_args = ["--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/",
                     "--dst-prefix=b/", *(["--text"] if self.binary else [])]
        with _git(repo, [*args[:1], *diff_args, *args[1:]]) as out:
            position = DiffPosition()
            for piece, whole in _prefetch(_pieces(out), self.PREFETCH):
                commits = piece.count(b"\ncommit ") + piece.startswith(b"commit ")
                self.counts.commits += commits
                self.counts.bytes += len(piece)
                yield from self._piece(piece, position, whole)
                if advance is not None and commits:
                    advance(commits)

    def _piece(self, piece: bytes, position: DiffPosition, whole: bool) -> Iterator[Hit]:
        """Attribute the piece's hits, reading lines from the commit header before each.

        A piece that ends inside a commit (`whole` False: a commit longer than
        PIECE_MAX) is read to its end, so the position carries on into the next.
        """
        pos, where = 0, None
        for start, _end, owners in self.search(piece):
            if start >= pos:  # else on the line read for the hit before
                header = piece.rfind(b"\ncommit ", pos, start) + 1
                if header:  # a later commit: its header resets the position
                    pos = header
                pos, where = position.advance(piece, pos, start)
            if where is not None:
                yield from _hits(owners, Place(where[0], position.commit), where[1])
        if not whole:
            position.skip(piece, pos, len(piece))

    def objects(self, repo: str, advance: Advance | None = None) -> Iterator[Hit]:
        """Hits in every object in the repository's store (blobs, commits, tags), reachable
        or not; paths of the blobs found from one `git rev-list --objects --all`."""
        found = list(_unique(self._objects(repo, advance)))
        paths = _object_paths(repo, {h.object for h in found}) if found else {}
        for hit in found:
            yield Hit(hit.name, hit.field, hit.form, paths.get(hit.object or ""), hit.line,
                      hit.commit, hit.object)

    def _objects(self, repo: str, advance: Advance | None) -> Iterator[Hit]:
        with _git(repo, ["cat-file", "--batch-all-objects", "--batch", "--unordered"]) as out:
            units = _prefetch(self._units(self._each_object(out, advance)), self.PREFETCH)
            yield from self._search_units(units, None)

    def _each_object(self, out: IO[bytes], advance: Advance | None) -> Iterator[_Blob]:
        while header := out.readline():
            oid, kind, size = header.split()
            left = [int(size)]

            def readinto(view: memoryview, left: list[int] = left) -> int:
                n: int = out.readinto(view[:left[0]])  # type: ignore[attr-defined]
                left[0] -= n
                return n

            def skip(left: list[int] = left) -> None:
                while left[0] and (data := out.read(min(left[0], CHUNK))):
                    left[0] -= len(data)

            self.counts.objects += 1
            if advance is not None:
                advance(1)
            if kind == b"tree":  # names and binary ids: nothing a value leaks into
                skip()
            else:
                name = oid.decode()
                yield _Blob(Place(object=name, commit=name if kind == b"commit" else None),
                            readinto, skip)
                skip()
            out.read(1)  # the newline after the contents


class File(NamedTuple):
    path: str
    size: int
    named: bool  # given as a PATH, not found by walking: a symlink to it is followed


def walk(paths: list[str], on_error: Callable[[OSError], None] | None = None) -> list[File]:
    """Regular files under `paths` with their sizes, in sorted order: `.git` skipped,
    symlinks inside not followed (a PATH given as a symlink is read: it was named);
    a directory that cannot be listed goes to `on_error`."""
    found = []
    for top in paths:
        try:
            st = os.stat(top)
        except FileNotFoundError:
            raise NotFound(f"no such file or directory: {top}") from None
        if not stat.S_ISDIR(st.st_mode):
            found.append(File(top, st.st_size, True))
            continue
        for dirpath, dirs, files in os.walk(top, onerror=on_error):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and name != ".git":
                    found.append(File(path, st.st_size, False))
    return found


def _nothing() -> None:
    pass


def _flushed(batch: _Batch, used: int) -> _Batch:
    del batch.data[used:]
    return batch


def _fill(readinto: Callable[[memoryview], int], view: memoryview) -> int:
    """Fill the view as far as the blob goes (a read may give less than asked: network
    and FUSE file systems do; only a read of nothing is the end)."""
    got = 0
    while got < len(view) and (n := readinto(view[got:])):
        got += n
    return got


_T = TypeVar("_T")


def _prefetch(items: Iterable[_T], depth: int) -> Iterator[_T]:
    """`items`, produced on a thread of their own up to `depth` ahead of the consumer.

    What the producer raises is raised here; when the consumer stops early
    the producer stops at its next item (it is a daemon thread: one blocked
    in a read does not keep the process alive).
    """
    ahead: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # raised on the consumer's side
            put((False, exc))

    threading.Thread(target=produce, name="credd-scan-read", daemon=True).start()
    try:
        while True:
            more, item = ahead.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()


# ---------------------------------------------------------------- diffs

_HUNK = re.compile(rb"@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class DiffPosition:
    """Where a line of `git log -p -U0` or `git diff -U0` output belongs.

    `step(line)` moves past one line and says where a hit on it is reported:
    (file, line in the new version) for an added line, (file, None) for a
    file's header (a value in a file name), (None, None) for a line of the
    commit message, None where a hit is not reported: a removed line (the
    commit that added it reports it) or a header naming no file. With -U0 a
    hunk is only its removed and added lines, counted by its header, so a
    content line that looks like a header (`+++ b/x` added) is still read as
    content.

    `advance` and `skip` move over many lines at once: a hunk's lines are
    counted (C speed), not read one by one, so a commit of hundreds of
    megabytes costs little more than searching it. That works because a line
    starting `commit `, `diff ` or `@@ ` is always a header: content lines
    start with `+`, `-` or a backslash, message lines with four spaces.
    """

    def __init__(self) -> None:
        self.commit: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.path: str | None = None
        self.new_line = self.removed = self.added = 0
        self.in_message = False

    def step(self, line: bytes) -> tuple[str | None, int | None] | None:
        if self.removed or self.added:
            first = line[:1]
            if first == b"+" and self.added:
                self.added -= 1
                self.new_line += 1
                return self.path, self.new_line - 1
            if first == b"-" and self.removed:
                self.removed -= 1
                return None
            if first == b"\\":  # "\ No newline at end of file"
                return None
            self.removed = self.added = 0  # not what the hunk header promised: a header
        if line.startswith(b"commit "):
            self._reset()
            self.commit, self.in_message = line[7:].decode("ascii", "replace"), True
            return None
        if self.in_message and (line.startswith(b"    ") or not line):
            return None, None
        if line.startswith(b"\\"):
            return None
        self.in_message = False
        if line.startswith(b"diff "):
            self._reset()
        elif line.startswith((b"--- a/", b"+++ b/", b'--- "a/', b'+++ "b/')):
            self.path = _unquote(line[4:])[2:]  # --- names a deleted file, +++ the others
        elif hunk := _HUNK.match(line):
            removed, start, added = hunk.groups()
            self.removed = 1 if removed is None else int(removed)
            self.added = 1 if added is None else int(added)
            self.new_line = int(start)
        return None if self.path is None else (self.path, None)

    def advance(self, buf: bytes, pos: int,
                to: int) -> tuple[int, tuple[str | None, int | None] | None]:
        """Move from the line starting at `pos` past the line holding offset `to`;
        returns the start of the next line and where that line's hits are reported."""
        start = buf.rfind(b"\n", pos, to) + 1 or pos
        self.skip(buf, pos, start)
        end = buf.find(b"\n", start)
        end = len(buf) if end < 0 else end
        return end + 1, self.step(buf[start:end])

    def skip(self, buf: bytes, pos: int, to: int) -> None:
        """Move past the lines of buf[pos:to] (both line starts) as `step` would."""
        commit = _last_line(buf, b"commit ", pos, to)
        if commit >= 0:  # the last commit: what came before it no longer matters
            pos = self._walk(buf, commit, buf.find(b"\n", commit) + 1)
        diff = _last_line(buf, b"diff ", pos, to)
        if diff >= 0:  # the last file: likewise
            pos, self.removed, self.added = diff, 0, 0
        first, last = _first_line(buf, b"@@ ", pos, to), _last_line(buf, b"@@ ", pos, to)
        self._consume(buf, pos, to if first < 0 else first)  # its headers, or a hunk going on
        if last >= 0:  # its last hunk (the ones before it no longer matter)
            end = buf.find(b"\n", last)
            self.step(buf[last:end])
            self._consume(buf, end + 1, to)

    def _consume(self, buf: bytes, pos: int, to: int) -> None:
        """Lines of the current hunk counted; outside a hunk (a message, headers) read."""
        if not (self.removed or self.added):
            self._walk(buf, pos, to)
            return
        added = _lines_starting(buf, b"+", pos, to)
        self.added = max(self.added - added, 0)
        self.removed = max(self.removed - _lines_starting(buf, b"-", pos, to), 0)
        self.new_line += added

    def _walk(self, buf: bytes, pos: int, to: int) -> int:
        """Read the lines of buf[pos:to] one by one; returns `to`."""
        while pos < to:
            end = buf.find(b"\n", pos, to)
            end = to if end < 0 else end
            self.step(buf[pos:end])
            pos = end + 1
        return to


def _last_line(buf: bytes, prefix: bytes, pos: int, to: int) -> int:
    """Where the last line in buf[pos:to] starting with `prefix` starts, else -1."""
    at = buf.rfind(b"\n" + prefix, pos, to - 1 + len(prefix))  # a line starting before `to`
    if at >= 0:
        return at + 1
    return pos if pos < to and buf.startswith(prefix, pos) else -1


def _first_line(buf: bytes, prefix: bytes, pos: int, to: int) -> int:
    """Where the first line in buf[pos:to] starting with `prefix` starts, else -1."""
    if pos < to and buf.startswith(prefix, pos):
        return pos
    at = buf.find(b"\n" + prefix, pos, to - 1 + len(prefix))
    return at + 1 if at >= 0 else -1


def _lines_starting(buf: bytes, first: bytes, pos: int, to: int) -> int:
    """How many lines in buf[pos:to] (pos a line start) start with the byte `first`."""
    return buf.count(b"\n" + first, pos, to) + (pos < to and buf.startswith(first, pos))


def _unquote(name: bytes) -> str:
    """A path as git prints it in a diff header (C-quoted when unusual; a tab may end it)."""
    name = name.rstrip(b"\t")
    if name.startswith(b'"') and name.endswith(b'"'):
        name = codecs.escape_decode(name[1:-1])[0]
    return name.decode("utf-8", "surrogateescape")


def _pieces(out: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Diff output in pieces of whole commits (and whether a piece ends with its commit)."""
    rest = b""
    while chunk := out.read(CHUNK):
        buf = rest + chunk if rest else chunk
        cut, whole = _piece_end(buf)
        if cut:
            yield buf[:cut], whole
        rest = buf[cut:]
    if rest:
        yield rest, True


def _piece_end(buf: bytes) -> tuple[int, bool]:
    """Where the next piece of diff output to search ends, and whether that is a commit's
    end: before the last commit header, else (a very long commit) after the last whole
    line, else nowhere yet (0: read more first)."""
    header = buf.rfind(b"\ncommit ")
    if header >= 0:
        return header + 1, True
    if len(buf) > PIECE_MAX:
        return buf.rfind(b"\n") + 1, False
    return 0, True


# ---------------------------------------------------------------- running git

class _git:
    """`git -C repo ARGS` with its stdout to read; an exit code not in `ok` raises with
    git's message (`code` holds it afterwards)."""

    proc: subprocess.Popen[bytes]

    def __init__(self, repo: str, args: list[str], ok: tuple[int, ...] = (0,)) -> None:
        self.argv = ["git", "-C", repo, *args]
        self.repo, self.ok, self.code = repo, ok, 0

    def __enter__(self) -> IO[bytes]:
        import subprocess  # here: scanning files needs neither
        import tempfile
        self.err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.err,
                                         stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            self.err.close()
            raise NotFound("git is not installed (needed for --git and --staged)") from None
        assert self.proc.stdout is not None
        return self.proc.stdout

    def __exit__(self, exc_type: object, *_: object) -> None:
        assert self.proc.stdout is not None
        if exc_type is not None:  # stopped early (an error, or the caller left): stop git
            self.proc.kill()
        self.proc.stdout.close()
        self.code = self.proc.wait()
        self.err.seek(0)
        message = self.err.read().decode(errors="replace").strip().splitlines()
        self.err.close()
        if self.code not in self.ok and exc_type is None:
            raise BadRequest(f"git {self.argv[3]} failed in {self.repo}: "
                             f"{message[0] if message else f'exit {self.code}'}")


def _object_paths(repo: str, wanted: set[str | None]) -> dict[str, str]:
    """A path for each wanted blob id, from the trees of every ref."""
    paths: dict[str, str] = {}
    with _git(repo, ["rev-list", "--objects", "--all"]) as out:
        for line in out:
            oid, _, path = line.rstrip(b"\n").partition(b" ")
            key = oid.decode()
            if path and key in wanted and key not in paths:
                paths[key] = path.decode("utf-8", "surrogateescape")
    return paths


def _revisions(repo: str, all_refs: bool) -> list[str]:
    """What `git log` should walk: every ref, or HEAD (nothing before the first commit)."""
    if all_refs:
        return ["--all"]
    head = _git(repo, ["rev-parse", "--verify", "--quiet", "HEAD"], ok=(0, 1))
    with head as out:
        out.read()
    return [] if head.code else ["HEAD"]


def count_commits(repo: str, all_refs: bool) -> int:
    """How many commits `history` will read (the progress bar's total)."""
    revisions = _revisions(repo, all_refs)
    if not revisions:
        return 0
    with _git(repo, ["rev-list", "--count", *revisions]) as out:
        text = out.read()
    return int(text or 0)


def count_objects(repo: str) -> int:
    """How many objects the store holds, loose and packed (the progress bar's total)."""
    with _git(repo, ["count-objects", "-v"]) as out:
        fields = dict(line.split(b": ", 1) for line in out.read().splitlines() if b": " in line)
    return int(fields.get(b"count", 0)) + int(fields.get(b"in-pack", 0))
