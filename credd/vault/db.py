"""SQLite: connection settings, the first-format schema, transactions, and `VaultFile`
(one connection per thread). Bytes in, bytes out.

Every connection runs in autocommit mode (no reader holds a snapshot between
statements, so a TRUNCATE checkpoint can complete) and writes open
`BEGIN IMMEDIATE` explicitly. `secure_delete` zeroes freed content, so a
purged entry or an old wrapped key does not linger in free pages.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator

from credd.errors import BadRequest, IntegrityError, NoSpace, VaultFileChanged

#: "cred" in ASCII: marks the file as a credd vault (PRAGMA application_id).
APPLICATION_ID = 0x63726564
BUSY_TIMEOUT_MS = 5000

SCHEMA_1 = """
CREATE TABLE vault (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    vault_id    BLOB NOT NULL,
    generation  INTEGER NOT NULL,   -- bumped by every write, rows carry it as `rev`
    digest      BLOB NOT NULL,      -- keyed set digest of every (row, rev)
    mac         BLOB NOT NULL       -- HMAC(header key, vault_id, generation, digest)
);
CREATE TABLE slots (
    id       INTEGER PRIMARY KEY,
    label    TEXT NOT NULL UNIQUE,
    header   BLOB NOT NULL,
    wrapped  BLOB NOT NULL
);
CREATE TABLE entries (
    id      BLOB PRIMARY KEY,       -- HMAC(index key, canonical name)
    rev     INTEGER NOT NULL,
    meta    BLOB NOT NULL,
    secret  BLOB NOT NULL
);
CREATE TABLE history (
    hid      INTEGER PRIMARY KEY,
    entry    BLOB NOT NULL,
    version  INTEGER NOT NULL,
    rev      INTEGER NOT NULL,
    blob     BLOB NOT NULL
);
"""


def connect(path: str) -> sqlite3.Connection:
    """A connection with the durability settings every vault connection must have."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                   "secure_delete=ON", f"busy_timeout={BUSY_TIMEOUT_MS}", "trusted_schema=OFF"):
        conn.execute(f"PRAGMA {pragma}")
    if sys.platform == "darwin":
        conn.execute("PRAGMA fullfsync=ON")
        conn.execute("PRAGMA checkpoint_fullfsync=ON")
    return conn


def connect_existing(path: str) -> sqlite3.Connection:
    """`connect` for a file that should already be a vault; a non-database is an IntegrityError."""
    try:
        return connect(path)
    except sqlite3.DatabaseError as exc:
        raise IntegrityError(f"{path} cannot be read as a vault ({exc})") from None


SQLITE_FULL, SQLITE_IOERR = 13, 10
#: Below this much room for unprivileged writes, an I/O error is taken for a full disk.
NEARLY_FULL = 1 << 20


def disk_full(exc: BaseException, path: str) -> bool:
    """Did `exc` come from a full disk? SQLITE_FULL says so. A write that failed with ENOSPC
    reaches Python as a bare "disk I/O error" (sqlite3 does not expose errno), so that one
    counts when the file system holding `path` has (nearly) no room left."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.OperationalError) or code is None:
        return False
    if code & 0xFF == SQLITE_FULL:
        return True
    if code & 0xFF != SQLITE_IOERR:
        return False
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


def no_space(path: str) -> NoSpace:
    return NoSpace(f"no space left on the device holding the vault ({os.path.dirname(path)}): "
                   "nothing was changed")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, path: str = "") -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception; a full disk (`path`: the
    vault's) is NoSpace, not a bug: SQLite changed nothing, and the same connection writes
    again once there is room."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may have rolled back already
                conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        if path and disk_full(exc, path):
            raise no_space(path) from None
        raise


@contextlib.contextmanager
def reading(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN … COMMIT around reads that must agree: under WAL every statement in it sees
    the same committed state, however many writers commit meanwhile."""
    conn.execute("BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def bytes_text(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """TEXT values read as bytes, as BLOBs are: unlock reads every column for its bytes,
    whatever storage class SQLite gave it (and group_concat builds TEXT of bytes)."""
    conn.text_factory = bytes
    try:
        yield conn
    finally:
        conn.text_factory = str


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def application_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA application_id").fetchone()[0])


def create_schema(conn: sqlite3.Connection) -> None:
    """The first format; `migrations` takes it from there."""
    with transaction(conn):
        for statement in SCHEMA_1.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("PRAGMA user_version=1")


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def checkpoint_truncate(conn: sqlite3.Connection, attempts: int = 50) -> bool:
    """Copy the WAL into the file and empty it: the file alone then holds every commit, and
    old page images leave the disk. Best effort (busy readers, a full disk): False."""
    try:
        for _ in range(attempts):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.01)
    except sqlite3.Error:
        pass
    return False


def create_private_file(path: str) -> None:
    """An empty file born 0600 (O_EXCL: never reuse something already there)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


Identity = tuple[int, int]  # (st_dev, st_ino)


class _MovedMidway(Exception):
    """The files moved during a write transaction (it rolls back)."""


def _moved(path: str, now: tuple[Identity | None, Identity | None],
           opened: tuple[Identity | None, Identity | None]) -> str:
    what = "the vault file" if now[0] != opened[0] else "the write-ahead log (-wal)"
    return (f"{what} of {path} was moved, deleted or replaced while the agent had it open: "
            "writes are refused, so that none is acknowledged and then lost")


def identity(path: str) -> Identity | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class VaultFile:
    """One vault file as this process uses it: its path and vault id, one SQLite connection
    per thread (the sqlite3 module's objects are not shared between threads here), the lock
    that serializes writes, unlock, lock and sealing, and the identities of the files the
    connections opened.

    SQLite keeps the file and its WAL open: deleted or replaced under it, its commits would
    go where no later open finds them (a restart then finds every entry lost), and a new
    connection would read a WAL that does not match the shared index. So the identities
    (st_dev, st_ino) are taken at open and compared before a write commits and before a
    thread's connection opens; once they differ, writes are refused for good (`changed`),
    and reads go on through the connections already open.
    """

    def __init__(self, path: str, vault_id: bytes, conn: sqlite3.Connection) -> None:
        self.path, self.vault_id = path, vault_id
        self.lock = threading.RLock()
        self.closed = False
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._adopt(conn)
        #: The file has the format-5 slot columns (created, used, mac; vault.slots).
        self.slotted = has_column(conn, "vault", "slots")
        self._opened = (identity(path), identity(path + "-wal"))
        #: What moved under the agent, once it did (writes refused from then on).
        self.changed: str | None = None

    def _adopt(self, conn: sqlite3.Connection) -> None:
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (never on files that moved)."""
        if self.closed:
            raise BadRequest("the vault is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.check_unchanged()
            conn = connect(self.path)
            self._adopt(conn)
        return conn

    def check_unchanged(self) -> None:
        """Raise VaultFileChanged if the vault file or its WAL is no longer the one opened.
        A thread with a connection saves first what the open files hold (`_rescue`)."""
        if self.changed is None:
            now = self._identities()
            if now == self._opened:
                return
            conn = self.existing_conn()
            if conn is None:  # a reader's new connection: the writer's next check rescues
                raise VaultFileChanged(_moved(self.path, now, self._opened))
            self.changed = self._rescue(conn, now)
        raise VaultFileChanged(self.changed)

    def _identities(self) -> tuple[Identity | None, Identity | None]:
        return identity(self.path), identity(self.path + "-wal")

    def _rescue(self, conn: sqlite3.Connection,
                now: tuple[Identity | None, Identity | None]) -> str:
        """What moved, after saving what only the open files still hold: with the main file
        in place, a checkpoint through the open WAL copies every commit into it; with the
        main file gone, a copy of the vault as this connection sees it goes beside it."""
        said = _moved(self.path, now, self._opened)
        if now[0] == self._opened[0] and checkpoint_truncate(conn):
            return f"{said}; every write so far is in {self.path}: restart the agent"
        target = f"{self.path}.rescued-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        try:
            create_private_file(target)
            conn.execute("VACUUM INTO ?", (target,))
        except (OSError, sqlite3.Error):
            return f"{said}; no copy of it could be saved"
        return f"{said}; a copy with every write so far is at {target}"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection that commits only while the files
        are the ones opened: checked again just before COMMIT, so that no write the file
        would lose is ever acknowledged. A full disk is NoSpace (see `transaction`)."""
        if self.changed is not None:  # refused for good, without a stat
            raise VaultFileChanged(self.changed)
        conn = self.conn()
        try:
            with transaction(conn, self.path):
                yield conn
                if self._identities() != self._opened:
                    raise _MovedMidway()
        except _MovedMidway:
            self.check_unchanged()  # rolled back: save what the WAL holds, and raise
            raise VaultFileChanged(
                _moved(self.path, self._identities(), self._opened)) from None

    def existing_conn(self) -> sqlite3.Connection | None:
        """This thread's connection if it has one (a lock must never open, or create, the
        file), and never after close."""
        return None if self.closed else getattr(self._local, "conn", None)

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        """Close every thread's connection (from any thread)."""
        self.closed = True
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conns.clear()
