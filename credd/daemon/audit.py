"""The audit trail: one JSON line per access, in a 0600 file in the state directory.

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
old one's place is never adopted while the agent runs.

While unlocked, the HMACs of recently audited names are remembered (names and
the key are in the agent's memory anyway until it locks); `forget()` drops them
with the key, and the lock calls it.

Records come from the event loop and from reader threads (reads of remote
mounts), so writing one is serialized by a lock.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO

import msgspec

from credd.errors import AuditUnavailable, NoSpace
from credd.protocol import AuditRecord

from .peer import Peer

log = logging.getLogger("credd.agent")

FILE_NAME = "audit.jsonl"
_REMEMBERED = 4096  # names whose HMAC is kept between records
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AuditRecord)


def name_hmac(key: bytes | None, name: str) -> str:
    """How a name appears in the audit trail ("" while locked: no key, no name)."""
    if not key:
        return ""
    return "hmac-sha256:" + hmac.digest(key, name.encode(), "sha256").hex()


class AuditLog:
    def __init__(self, path: str, mount_of: Callable[[str], str] = lambda name: "") -> None:
        """`mount_of(name)` names the mount serving `name` ("" for the local vault)."""
        self.path = path
        self._mount_of = mount_of
        self._lock = threading.RLock()  # records come from the loop and from reader threads
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._key: bytes | None = None
        self._hmacs: dict[str, str] = {}
        self._lock = threading.RLock()

    def _open(self) -> int:
        """The open log, after checking that its path still names it (one lstat)."""
        if self._fd is not None:
            self._check_path()
            return self._fd
        if self._identity is None:  # the first open: adopt the file found there, or create it
            fd = self._open_file(os.O_CREAT)
        elif self._path_identity() == self._identity:  # closed after a write error
            fd = self._open_file(0, expect=self._identity)
        else:  # moved away or deleted: only a new file, never one planted at the path
            fd = self._open_file(os.O_CREAT | os.O_EXCL)
            self._write(fd, _encoder.encode(AuditRecord(time=time.time(), op="audit_log",
                                                        outcome="recreated")) + b"\n")
        st = os.fstat(fd)
        self._fd, self._identity = fd, (st.st_dev, st.st_ino)
        return fd

    def _open_file(self, create: int, expect: tuple[int, int] | None = None) -> int:
        """Open for appending, never through a symlink; a private regular file, or `expect`."""
        flags = create | os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileExistsError:
            raise OSError(0, "it is not the file the agent opened (replaced while the agent "
                             "ran); move it away and the agent starts a new one") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            raise OSError(0, "the audit log is not a private regular file")
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
            self.close()
            raise OSError(0, "it was moved, deleted or replaced since the agent opened it")

    def record(self, op: str, outcome: str, *, names: Iterable[str] = (), key: bytes | None = None,
               peer: Peer | None = None) -> None:
        """Append one line per name (one line when none), all in one write; fail closed."""
        now = time.time()
        pid = peer.pid if peer else None
        exe = peer.exe if peer else ""
        with self._lock:
            records = [AuditRecord(time=now, op=op, outcome=outcome, pid=pid, exe=exe,
                                   name_hmac=self._hmac(key, n), mount=self._mount_of(n))
                       for n in names]
            if not records:
                records = [AuditRecord(time=now, op=op, outcome=outcome, pid=pid, exe=exe)]
            data = b"".join(_encoder.encode(r) + b"\n" for r in records)
            try:
                self._write(self._open(), data)
            except OSError as exc:
                self.close()
                log.error("audit log %s cannot be written: %s", self.path, exc.strerror or exc)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise NoSpace(f"no space left on the device holding the audit log "
                                  f"{self.path}: nothing was revealed") from None
                raise AuditUnavailable(
                    f"the audit log {self.path} cannot be written ({exc.strerror or exc}); "
                    "nothing was revealed: free space or fix the file, then retry") from None

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

    def forget(self) -> None:
        """Drop the remembered key and name HMACs (at lock)."""
        with self._lock:
            self._key, self._hmacs = None, {}

    def try_record(self, op: str, outcome: str, *, names: Iterable[str] = (),
                   key: bytes | None = None, peer: Peer | None = None) -> None:
        """Record what does not reveal a secret; a failure is logged, not raised."""
        try:
            self.record(op, outcome, names=names, key=key, peer=peer)
        except (AuditUnavailable, NoSpace):
            pass

    def tail(self, limit: int) -> list[AuditRecord]:
        """The last `limit` records, oldest first (unreadable lines are skipped)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                lines = _last_lines(f, limit)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditUnavailable(f"the audit log {self.path} cannot be read "
                                   f"({exc.strerror})") from None
        records = []
        for line in lines:
            try:
                records.append(_decoder.decode(line))
            except msgspec.DecodeError:
                continue
        return records

    def close(self) -> None:
        with self._lock:
            self.forget()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _last_lines(f: BinaryIO, limit: int, block: int = 65536) -> list[bytes]:
    """Read backwards until `limit` whole lines are found: cost follows the answer, not the file."""
    end = f.seek(0, os.SEEK_END)
    data, pos = b"", end
    while pos > 0 and data.count(b"\n") <= limit:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    lines = [line for line in data.split(b"\n") if line]
    if pos > 0:
        lines = lines[1:]  # the first one may be cut
    return lines[-limit:] if limit else []
