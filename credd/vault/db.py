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

from credd.errors import BadRequest, IntegrityError

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


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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


def checkpoint_truncate(conn: sqlite3.Connection, attempts: int = 50) -> bool:
    """Copy the WAL into the file and empty it, so old page images leave the disk."""
    for _ in range(attempts):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.01)
    return False


def create_private_file(path: str) -> None:
    """An empty file born 0600 (O_EXCL: never reuse something already there)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


class VaultFile:
    """One vault file as this process uses it: its path and vault id, one SQLite connection
    per thread (the sqlite3 module's objects are not shared between threads here), and the
    lock that serializes writes, unlock, lock and sealing."""

    def __init__(self, path: str, vault_id: bytes, conn: sqlite3.Connection) -> None:
        self.path, self.vault_id = path, vault_id
        self.lock = threading.RLock()
        self.closed = False
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._adopt(conn)

    def _adopt(self, conn: sqlite3.Connection) -> None:
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self.closed:
            raise BadRequest("the vault is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._adopt(conn)
        return conn

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
