"""Format versions and forward migrations, after one backup beside the vault.

The format is `PRAGMA user_version`. A migration is structural (it needs no
key, so it runs at open, while the vault is still locked) and runs in one
transaction after a `VACUUM INTO` copy named `<vault>.format<N>-<time>.bak`.

Format history:
  1  first release: vault header, key slots, entries, history
  2  index on history(entry, version): history, restore, purge and pruning
     no longer scan every version of every entry
  3  snapshot table: one sealed blob of every entry's metadata, which sped up
     unlock and the first list, but which every write had to delete whole
  4  chunks and manifest tables instead (credd/vault/chunks.py): the metadata
     sealed in chunks of about a hundred entries, so that a write deletes one
     chunk, not all of them; the snapshot's pages are zeroed as it is dropped.
     Until the first seal a vault unlocks row by row, as it did without one
  5  authenticated key slots (credd/vault/slots.py): each slot's creation time, last use
     and a MAC over its id, label, header and creation time; the header MAC covers a
     digest of the slots' MACs (`vault.slots`). A step needs no key, so the slots of a
     migrated file are authenticated by its first unlock (until then, as in format 4,
     nothing vouches for their labels)
  6  records table: the agent's own sealed records (grants), each a term of the
     header's set digest (credd/vault/records.py); empty at first, so the digest
     and every existing row are unchanged
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from credd.errors import BadRequest, CreddError, InternalError
from credd.vault import db


def _history_index(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE INDEX IF NOT EXISTS history_entry ON history(entry, version)")


def _snapshot_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), "
                 "generation INTEGER NOT NULL, blob BLOB NOT NULL)")


def _chunk_tables(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS snapshot")  # secure_delete zeroes its pages
    conn.execute("CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS manifest (id INTEGER PRIMARY KEY CHECK (id = 1), "
                 "blob BLOB NOT NULL)")


def _slot_columns(conn: sqlite3.Connection) -> None:
    for statement in ("ALTER TABLE slots ADD COLUMN created INTEGER",  # unix time
                      "ALTER TABLE slots ADD COLUMN used INTEGER",     # last unlock, to the hour
                      "ALTER TABLE slots ADD COLUMN mac BLOB",
                      "ALTER TABLE vault ADD COLUMN slots BLOB"):     # NULL until authenticated
        conn.execute(statement)


def _records_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS records (id BLOB PRIMARY KEY, "
                 "rev INTEGER NOT NULL, blob BLOB NOT NULL)")


#: to-version → step that brings format to-version - 1 up to it.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _history_index,
    3: _snapshot_table,
    4: _chunk_tables,
    5: _slot_columns,
    6: _records_table,
}
LATEST = max(MIGRATIONS, default=1)


def backup(conn: sqlite3.Connection, path: str, version: int) -> str:
    """A consistent copy (0600) of the whole vault before it changes shape."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.format{version}-{stamp}.bak"
    n = 1
    while os.path.exists(target):
        target = f"{path}.format{version}-{stamp}-{n}.bak"
        n += 1
    db.create_private_file(target)
    conn.execute("VACUUM INTO ?", (target,))
    return target


def migrate(conn: sqlite3.Connection, path: str, *, target: int = LATEST,
            backups: bool = True) -> list[str]:
    """Bring the vault up to `target`; returns the backup paths written."""
    current = db.user_version(conn)
    if current > LATEST:
        raise BadRequest(f"{path} is vault format {current}, newer than this credd "
                         f"understands ({LATEST}): upgrade credd")
    if current < 1:
        raise BadRequest(f"{path} has no vault format version: not a credd vault")
    written = []
    if backups and current < target:  # one copy of the file as it was, before any step
        written.append(backup(conn, path, current))
    for version in range(current + 1, target + 1):
        try:
            with db.transaction(conn, path):
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version={version}")
        except CreddError:
            raise
        except Exception as exc:
            saved = f"; a backup of the file as it was is at {written[0]}" if written else ""
            raise InternalError(f"migrating {path} to format {version} failed "
                                f"({type(exc).__name__}); the file stays at format "
                                f"{version - 1}{saved}") from exc
    if current < target:  # what a step dropped leaves the WAL and the file (secure_delete)
        db.checkpoint_truncate(conn)
    return written
