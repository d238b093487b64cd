"""The audit trail: one JSON line per access, hash-chained, in 0600 files in the state directory.

Names are never written in clear: a record carries `hmac-sha256:<hex>` of the
name under the vault's audit key, so the owner can recompute it for a name
they know, and a reader of the file learns nothing. Secret values never come
near this module. A record that reveals a secret is written (one write(2) of
whole lines, unbuffered) before the secret leaves the agent; when that write
fails the request fails with audit_unavailable (no_space for a full disk) and
nothing is revealed.

The agent writes through the descriptor it opened, so before each record it
checks (one lstat, ~1 µs) that the path still names that file: renamed, deleted
or replaced (by a symlink to /dev/null, say), the trail would go where nobody
reads it, so the record fails and so does the reveal. When the path is free
again the next record starts a new file (O_CREAT|O_EXCL|O_NOFOLLOW, 0600) whose
first line (`audit_log`, `recreated`) marks the gap; a file or link found in the
old one's place is never adopted while the agent runs. Its own rotation is the
one rename it expects.

Each record carries `seq` and `prev`, the SHA-256 of the previous line's exact
bytes, so a removed, edited or inserted line breaks the chain; the agent finds
the chain's end in the files when it starts. An unkeyed chain can be recomputed
by anyone who can write the files, so its head is anchored where such a writer
cannot forge it: in the agent's memory while it runs, and in `audit.head`, the
head's seq and hash with the first record's, under an HMAC of the audit key,
written at every unlock, every `anchor_every` records, every rotation and at
lock. At unlock the agent checks that the trail still leads back to that anchor
(reading only the records written since) and, if not, records a break in the
chain itself (`audit_log`, `anchor_mismatch`...) before anchoring anew, so the
finding outlives the rewrite. docs/audit.md lists what is and is not detected.

Records come from the event loop and from reader threads (reads of remote
mounts), so writing one, anchoring and taking a snapshot to read are
serialized by one lock.

Past `max_bytes` the file is renamed `audit.jsonl.1` (older ones shifted up to
`keep`, the oldest deleted) and a new file continues the chain. Rotation waits
for the audit key (it re-anchors the trail's first record), so while locked
the file may grow past the limit.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import Any

import msgspec

from credd.errors import AuditUnavailable, NoSpace
from credd.files import read_state
from credd.protocol import AuditRecord

from .audit_trail import GENESIS, Expected, Link, Trail, line_hash, rotated_numbers
from .binding import OWNER, Binding, Origin
from .peer import Peer

log = logging.getLogger("credd.agent")

FILE_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
DEFAULT_MAX_BYTES = 10 << 20
DEFAULT_KEEP = 5
ANCHOR_EVERY = 256
_REMEMBERED = 4096  # names whose HMAC is kept between records
_HEAD_DOMAIN = b"credd audit head v1\0"
_HEAD_SIZE = 512  # audit.head is one block, overwritten in place
_encoder = msgspec.json.Encoder()
_NO_NAME: tuple[None] = (None,)  # the names of a record about no entry
_SHA256 = sha256()

Background = Callable[[Callable[[], None]], Any]


def name_hmac(key: bytes | None, name: str) -> str:
    """How a name appears in the audit trail ("" while locked: no key, no name)."""
    if not key:
        return ""
    return "hmac-sha256:" + hmac.digest(key, name.encode(), "sha256").hex()


class Anchor(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`audit.head`: the chain's last and first records, as the agent last vouched for them."""

    seq: int
    hash: str
    first_seq: int = 0
    first_hash: str = ""
    time: float
    mac: str = ""

    @property
    def link(self) -> Link:
        return Link(self.seq, self.hash)

    def sealed(self, key: bytes) -> Anchor:
        return msgspec.structs.replace(self, mac=self._mac(key))

    def verifies(self, key: bytes) -> bool:
        return hmac.compare_digest(self.mac, self._mac(key))

    def _mac(self, key: bytes) -> str:
        body = _encoder.encode(msgspec.structs.replace(self, mac=""))
        return hmac.new(key, _HEAD_DOMAIN + body, "sha256").hexdigest()


def _open_private(path: str, flags: int) -> int:
    """A read-write descriptor of a private regular file of ours, never through a symlink."""
    fd = os.open(path, flags | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise OSError(0, f"{os.path.basename(path)} is not a private regular file")
    return fd


def _no_mount(name: str) -> str:
    return ""


def _at_once(work: Callable[[], None]) -> None:
    work()


class AuditLog:
    def __init__(self, path: str, *, mount_of: Callable[[str], str] = _no_mount,
                 max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
                 anchor_every: int = ANCHOR_EVERY, background: Background = _at_once) -> None:
        """`mount_of(name)` names the mount serving `name` ("" for the local vault)."""
        self.path = path
        self.head_path = os.path.join(os.path.dirname(path), HEAD_NAME)
        self.max_bytes, self.keep, self.anchor_every = max_bytes, max(1, keep), anchor_every
        self._mount_of = mount_of
        self._lock = threading.RLock()
        self._background = background  # where anchors are written: off the event loop
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._size = 0
        self._torn = False                  # the file ends inside a line
        self._head: Link | None = None      # the chain's last record; read at the first need
        self._first: Link | None = None     # the oldest record kept
        self._key: bytes | None = None      # the key `_hmacs` were computed under
        self._hmacs: dict[str, str] = {}
        self._sealing_key: bytes | None = None  # the audit key while unlocked
        self._anchor: Anchor | None = None  # the last anchor this agent wrote
        self._head_fd: int | None = None    # audit.head, written in place
        self._unanchored = 0
        self._who: tuple[Peer | None, Binding, AuditRecord] = (None, OWNER, AuditRecord(
            time=0.0, op="", outcome=""))  # see _prototype

    # ------------------------------------------------------------ writing

    def record(self, op: str, outcome: str, *, names: Sequence[str] = (),
               key: bytes | None = None, origin: Origin | None = None, form: str = "",
               subject: str = "") -> None:
        """Append one line per name (one line when none), all in one write; fail closed."""
        with self._lock:
            record = self._prototype(origin)
            record.time = time.time()
            record.op = op
            record.outcome = outcome
            record.form = form
            record.subject = subject
            try:
                self._emit(self._open(), record, names or _NO_NAME, key)
            except OSError as exc:
                self._close_file()
                log.error("audit log %s cannot be written: %s", self.path, exc.strerror or exc)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise NoSpace(f"no space left on the device holding the audit log "
                                  f"{self.path}: nothing was revealed") from None
                raise AuditUnavailable(
                    f"the audit log {self.path} cannot be written ({exc.strerror or exc}); "
                    "nothing was revealed: free space or fix the file, then retry") from None

    def try_record(self, op: str, outcome: str, *, names: Sequence[str] = (),
                   key: bytes | None = None, origin: Origin | None = None,
                   subject: str = "") -> None:
        """Record what does not reveal a secret; a failure is logged, not raised."""
        try:
            self.record(op, outcome, names=names, key=key, origin=origin, subject=subject)
        except (AuditUnavailable, NoSpace):
            pass

    def _prototype(self, origin: Origin | None) -> AuditRecord:
        """A record holding who asked, made once per peer and binding: a get on an open
        connection then only sets what changes (building one costs more than hashing it)."""
        peer = origin.peer if origin is not None else None
        binding = origin.binding if origin is not None else OWNER
        if peer is not self._who[0] or binding is not self._who[1]:
            who: dict[str, Any] = {}
            if peer is not None:
                who = {"pid": peer.pid, "uid": peer.uid, "exe": peer.exe, "program": peer.program}
            self._who = peer, binding, AuditRecord(time=0.0, op="", outcome="", **who,
                                                   grant=binding.grant_id,
                                                   session=binding.session or "")
        return self._who[2]

    def _emit(self, fd: int, record: AuditRecord, names: Sequence[str | None],
              key: bytes | None) -> None:
        """Write `record` once per name (None: about no entry), each line chained to the one
        before (its seq and the SHA-256 of that line), in one write; move the chain's end."""
        assert self._head is not None  # _open read it
        seq, prev = self._head
        lines = []
        for name in names:
            record.name_hmac = "" if name is None else self._hmac(key, name)
            record.mount = "" if name is None else self._mount_of(name)
            seq += 1
            record.seq = seq
            record.prev = prev
            line = _encoder.encode(record)
            digest = _SHA256.copy()  # a copy skips OpenSSL's digest lookup: half the cost
            digest.update(line)
            prev = digest.hexdigest()
            lines.append(line)
        data = b"\n".join(lines) + b"\n"
        if self._size and self._size + len(data) > self.max_bytes and self._sealing_key:
            fd = self._rotate()
        self._write(fd, b"\n" + data if self._torn else data)  # end a line a failed write left
        self._head = Link(seq, prev)
        self._first = self._first or Link(seq - len(lines) + 1, line_hash(lines[0]))
        self._size += len(data) + self._torn  # and the newline that ended a torn line
        self._torn = False
        self._unanchored += len(lines)
        if self._unanchored >= self.anchor_every and self._sealing_key:
            self._seal()

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        if os.write(fd, data) != len(data):
            raise OSError(0, "short write")

    def _hmac(self, key: bytes | None, name: str) -> str:
        if not key:
            return ""
        if key != self._key or len(self._hmacs) >= _REMEMBERED:
            self._key, self._hmacs = key, {}
        digest = self._hmacs.get(name)
        if digest is None:
            digest = self._hmacs[name] = name_hmac(key, name)
        return digest

    # ------------------------------------------------------------ the file

    def _open(self) -> int:
        """The open log, after checking that its path still names it (one lstat)."""
        if self._fd is not None:
            self._check_path()
            return self._fd
        self._load()
        if self._identity is None:  # the first open: adopt the file found there, or create it
            fd = self._open_file(os.O_CREAT)
        elif self._path_identity() == self._identity:  # closed after a write error
            fd = self._open_file(0, expect=self._identity)
        else:  # moved away or deleted: only a new file, never one planted at the path
            fd = self._open_file(os.O_CREAT | os.O_EXCL)
            self._adopt(fd)
            self._emit(fd, AuditRecord(time=time.time(), op="audit_log", outcome="recreated"),
                       _NO_NAME, None)  # its first line marks the gap
            return fd
        self._adopt(fd)
        return fd

    def _adopt(self, fd: int) -> None:
        st = os.fstat(fd)
        self._fd, self._identity, self._size = fd, (st.st_dev, st.st_ino), st.st_size
        self._torn = bool(st.st_size) and os.pread(fd, 1, st.st_size - 1) != b"\n"

    def _open_file(self, create: int, expect: tuple[int, int] | None = None) -> int:
        """Open for appending, never through a symlink; a private regular file, or `expect`."""
        try:
            fd = _open_private(self.path, create | os.O_APPEND)
        except FileExistsError:
            raise OSError(0, "it is not the file the agent opened (replaced while the agent "
                             "ran); move it away and the agent starts a new one") from None
        st = os.fstat(fd)
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            os.close(fd)
            raise OSError(0, "it was replaced while the agent reopened it")
        return fd

    def _path_identity(self) -> tuple[int, int] | None:
        """What the path names now: (dev, ino) of a regular file, (0, 0) for anything else."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else (0, 0)

    def _check_path(self) -> None:
        """The agent writes through its descriptor: a renamed, deleted or replaced file
        would take records nobody reads. Raises (and closes) when the path moved on."""
        if self._path_identity() != self._identity:
            self._close_file()
            raise OSError(0, "it was moved, deleted or replaced since the agent opened it")

    def _rotate(self) -> int:
        """Rename the full file to .1 (older ones shifted up, those past `keep` deleted)
        and start a new one; the chain runs on, and the anchor notes the new first record."""
        self._close_file()
        dropped = False
        for n in rotated_numbers(self.path):
            if n >= self.keep:
                os.unlink(f"{self.path}.{n}")
                dropped = True
            else:
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")
        fd = self._open_file(os.O_CREAT | os.O_EXCL)
        self._adopt(fd)
        if dropped:
            with Trail(self.path) as trail:
                ends = trail.last()
            self._first = ends[1] if ends else None
        self._seal()
        return fd

    def _load(self) -> None:
        """The chain's ends as the files say, before this run first writes or anchors."""
        if self._head is not None:
            return
        with Trail(self.path) as trail:
            ends = trail.last()
        self._head, self._first = ends if ends else (GENESIS, None)

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------ the anchor

    def unlocked(self, key: bytes, *, new_key: bool = False) -> None:
        """Hold the audit key until `locked`; check the trail against its anchor (unless
        the key is new: a vault just made or rekeyed), then anchor it under the key."""
        with self._lock:
            try:
                self._load()
                problem = None if new_key else self._check(key)
            except OSError as exc:
                problem = "anchor_mismatch"
                log.error("the audit trail cannot be read to check it: %s", exc.strerror or exc)
            self._sealing_key = key
            if problem:
                self.try_record("audit_log", problem)
            if self._head is not None:
                self._seal()

    def locked(self) -> None:
        """Anchor the trail as it stands, then drop the key and the remembered HMACs."""
        with self._lock:
            if self._sealing_key and self._head is not None:
                self._seal(sync=True)
            self._sealing_key = self._key = None
            self._hmacs = {}

    def _check(self, key: bytes) -> str | None:
        """The break to record, or None when the trail leads back to its anchor."""
        disk, problem = self._read_anchor(key)
        if problem:
            log.error("audit.head %s: the audit trail may have been rewritten", problem)
            return "anchor_invalid"
        anchor = self._anchor or disk  # ours is newer: the file may lag behind it
        assert self._head is not None
        with Trail(self.path) as trail:
            if anchor is None:
                if not _was_anchored(trail):
                    return None
                log.error("audit.head is missing but the trail was anchored before: "
                          "it may have been rewritten")
                return "anchor_missing"
            why = trail.descends(self._head, anchor.link, anchor.first_hash)
        if why:
            log.error("the audit trail does not lead back to its anchor (seq %d): %s; "
                      "run `credd audit verify`", anchor.seq, why)
            return "anchor_mismatch"
        return None

    def _seal(self, *, sync: bool = False) -> None:
        """Anchor the chain's ends under the key, in memory and in audit.head."""
        assert self._sealing_key is not None and self._head is not None
        first = self._first or GENESIS
        self._anchor = Anchor(seq=self._head.seq, hash=self._head.hash, first_seq=first.seq,
                              first_hash=first.hash, time=time.time()).sealed(self._sealing_key)
        self._unanchored = 0
        self._store_anchor(_encoder.encode(self._anchor).ljust(_HEAD_SIZE - 1) + b"\n", sync)

    def _store_anchor(self, data: bytes, sync: bool) -> None:
        """Overwrite audit.head in place with one pwrite of one block: an anchor every 256
        records costs a few µs and no thread (a file replaced by rename would need an
        fsync'd write per anchor, off the loop). What a killed agent wrote is in the page
        cache all the same; `sync` (at lock) also flushes it to the disk, off the loop."""
        try:
            if self._head_fd is None:
                self._head_fd = _open_private(self.head_path, os.O_CREAT)
                os.ftruncate(self._head_fd, _HEAD_SIZE)
            os.pwrite(self._head_fd, data, 0)
        except OSError as exc:
            log.error("the audit anchor %s cannot be written: %s", self.head_path,
                      exc.strerror or exc)
            self._close_head()
            return
        if sync:
            fd = self._head_fd
            self._background(lambda: os.fsync(fd))

    def _close_head(self) -> None:
        if self._head_fd is not None:
            os.close(self._head_fd)
            self._head_fd = None

    def _read_anchor(self, key: bytes) -> tuple[Anchor | None, str]:
        """audit.head if it verifies under `key`; else why not ("" when it is absent)."""
        try:
            data = read_state(self.head_path, 4096)
            if data is None:
                return None, ""
            anchor = msgspec.json.decode(data, type=Anchor)
        except (OSError, msgspec.DecodeError):
            return None, "cannot be read"
        if not anchor.verifies(key):
            return None, "does not verify under the vault's audit key"
        return anchor, ""

    # ------------------------------------------------------------ reading

    def trail(self) -> Trail:
        """The trail as written so far, to read off the event loop (close it after)."""
        with self._lock:
            return Trail(self.path)

    def expected(self) -> Expected:
        """What verification holds the files to: the agent's memory of the chain's ends and
        of its anchor, and whether audit.head still verifies (call while unlocked)."""
        with self._lock:
            self._load()
            assert self._head is not None
            problem = ""
            if self._sealing_key is not None:
                _, why = self._read_anchor(self._sealing_key)
                problem = f"audit.head {why}" if why else ""
            anchor = self._anchor
            return Expected(head=self._head, first=self._first,
                            anchor=anchor.link if anchor else None,
                            anchored_at=anchor.time if anchor else None, anchor_problem=problem)

    def close(self) -> None:
        with self._lock:
            self.locked()
            self._close_file()
            self._close_head()


def _was_anchored(trail: Trail) -> bool:
    """Whether a chained `lock` record exists: every lock since the chain began wrote an
    anchor, so the anchor's absence then means it was deleted."""
    return any(b'"op":"lock"' in line and b'"seq":' in line for line in trail.backward())
