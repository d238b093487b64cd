"""Backups of a vault file: taking a consistent copy, checking one, and putting one back.

Who touches which file (docs/vault.md, "Backups"):

- `snapshot` runs in the `credd backup` process: it reads the live vault through its
  own read-only SQLite connection (under WAL a reader sees one committed state while
  the agent keeps writing) and writes the copy, one self-contained file, with the
  SQLite backup API. `inspect` checks what needs no key.
- The agent never opens a path a client names: it gets the copy as a descriptor and
  `stage`s its bytes into a file of its own beside the vault. There it checks every
  row with its key (`verify_staged`, for `credd backup`), or, for a restore, with the
  key the copy's own passphrase (or recovery key) opens (`Restore`): proof that the
  owner asked for it. The restored file is given a generation above every one seen
  before (`Restore.finish`), so the rollback counter never moves back: the file that
  was replaced, or any older copy, stays refused as a rollback.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import NamedTuple

from credd.errors import BadRequest, IntegrityError, LockedError
from credd.files import fsync_dir, private_temp
from credd.vault import crypto, db, header, keyslots, migrations, slots
from credd.vault.check import check_vault
from credd.vault.crypto import Keys
from credd.vault.vault import Vault

#: A staged copy is read in pieces of this size (never whole into memory).
COPY_CHUNK = 1 << 20


class CopyInfo(NamedTuple):
    """What a vault file says about itself without a key (nothing here is authenticated)."""

    vault_id: bytes
    generation: int
    format: int
    entries: int   # entry rows, the trash included
    versions: int  # history rows


# ---------------------------------------------------------------- without a key

def connect_readonly(path: str, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection: `immutable` for a file nobody writes (a finished copy:
    no -wal or -shm is made beside it), else one that reads a live vault's WAL."""
    uri = Path(os.path.abspath(path)).as_uri() + ("?mode=ro&immutable=1" if immutable
                                                  else "?mode=ro")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                               timeout=db.BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA trusted_schema=OFF")
    except sqlite3.Error as exc:
        raise IntegrityError(f"{path} cannot be read as a vault ({exc})") from None
    return conn


def snapshot(source: str, target: str) -> None:
    """Copy the vault at `source` into the empty file `target` (born 0600 by the caller),
    as one consistent state, in rollback-journal mode: a single file, no -wal to lose."""
    src = connect_readonly(source)
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, never restarted
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise IntegrityError(f"{source} could not be copied ({exc})") from None
    finally:
        src.close()


def inspect(conn: sqlite3.Connection, name: str) -> CopyInfo:
    """The structure of a vault file: SQLite's own check, credd's marker, a format this
    credd reads, a header row. IntegrityError names what is wrong."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        if problems:
            raise IntegrityError(f"{name} is damaged: {'; '.join(problems[:3])}")
        if db.application_id(conn) != db.APPLICATION_ID:
            raise IntegrityError(f"{name} is not a credd vault")
        fmt = db.user_version(conn)
        if not 1 <= fmt <= migrations.LATEST:
            raise IntegrityError(f"{name} is vault format {fmt}; this credd reads 1 to "
                                 f"{migrations.LATEST}")
        row = conn.execute("SELECT vault_id, generation FROM vault WHERE id = 1").fetchone()
        (entries,) = conn.execute("SELECT count(*) FROM entries").fetchone()
        (versions,) = conn.execute("SELECT count(*) FROM history").fetchone()
    except sqlite3.Error as exc:
        raise IntegrityError(f"{name} cannot be read as a vault ({exc})") from None
    if row is None or not isinstance(row[0], bytes) or len(row[0]) != 16 \
            or not isinstance(row[1], int):
        raise IntegrityError(f"{name} has no valid vault header")
    return CopyInfo(row[0], row[1], fmt, entries, versions)


def file_vault_id(path: str) -> bytes | None:
    """The vault id the file at `path` claims; None when there is no readable vault."""
    claims = _claims(path)
    return claims[0] if claims else None


def _claims(path: str) -> tuple[bytes, int] | None:
    """(vault id, generation) as the file at `path` says, unauthenticated; None when there
    is no readable vault there."""
    if not os.path.lexists(path):
        return None
    try:
        conn = connect_readonly(path)
        try:
            row = conn.execute("SELECT vault_id, generation FROM vault WHERE id = 1").fetchone()
        finally:
            conn.close()
    except (sqlite3.Error, IntegrityError):
        return None
    if row is None or not isinstance(row[0], bytes) or not isinstance(row[1], int):
        return None
    return row[0], row[1]


# ---------------------------------------------------------------- in the agent

def stage(fd: int, beside: str) -> str:
    """Copy the regular file open at `fd` into a new private file of ours beside `beside`
    (so that it can be renamed over it); its path. The caller removes it."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest("a backup is passed as a regular file's descriptor")
    with private_temp(beside) as (tmp, out):
        offset = 0
        while piece := os.pread(fd, COPY_CHUNK, offset):
            view = memoryview(piece)
            while view:
                view = view[os.write(out, view):]
            offset += len(piece)
        os.fsync(out)
        staged = tmp + ".staged"
        os.rename(tmp, staged)  # keeps it past private_temp, which removes `tmp`
    return staged


def remove(path: str) -> None:
    """A staged copy and whatever SQLite left beside it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def verify_staged(vault: Vault, staged: str) -> tuple[CopyInfo, list[str]]:
    """Check a staged copy of `vault` with the vault's own key: the header MAC, every row
    and version, the set digest, the slots. Needs the vault unlocked."""
    conn = connect_readonly(staged, immutable=True)
    try:
        info = inspect(conn, "the copy")
        if info.vault_id != vault.vault_id:
            return info, [f"the copy is of another vault ({info.vault_id.hex()}, not "
                          f"{vault.vault_id.hex()})"]
        with vault.file.lock:  # the session's keys are not wiped while they are used
            session = vault.session
            if session is None:
                raise LockedError("the vault locked while the copy was being checked")
            return info, check_vault(conn, info.vault_id, session.keys, 0,
                                     db.has_column(conn, "vault", "slots"),
                                     db.has_table(conn, "records"))
    finally:
        conn.close()


class Restore:
    """A staged copy the owner proved (its passphrase or recovery key opens it), checked,
    on its way to replace the vault file. `close()` wipes the key and the connection."""

    def __init__(self, staged: str, kind: str, secret: str, vault_path: str) -> None:
        self.staged = staged
        self.conn = db.connect_existing(staged)
        self.keys: Keys | None = None
        try:
            self.info = inspect(self.conn, "the backup")
            _same_vault(self.info.vault_id, vault_path)
            vault_file = db.VaultFile(staged, self.info.vault_id, self.conn)
            dek, kek, _slot = slots.open_slot(vault_file, kind, keyslots.secret_bytes(kind, secret))
            crypto.wipe(kek)
            self.keys = Keys(dek)
            problems = check_vault(self.conn, self.info.vault_id, self.keys, 0,
                                   vault_file.slotted, db.has_table(self.conn, "records"))
        except BaseException:
            self.close()
            raise
        if problems:
            self.close()
            shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
            raise IntegrityError(f"the backup failed its check ({shown}): nothing was replaced")

    def finish(self, vault_path: str, state_dir: str | None) -> tuple[int, str]:
        """Give the copy a generation above any seen, put it in place of `vault_path`
        (whose file is kept aside), and remember that generation. Run with the vault
        closed. Returns (the generation, where the replaced file went or "")."""
        assert self.keys is not None  # set by __init__, or it raised
        rollback = header.Rollback(state_dir, self.info.vault_id)
        generation = 1 + max(self.info.generation, rollback.remembered(),
                             _generation_of(vault_path, self.info.vault_id))
        slotted = db.has_column(self.conn, "vault", "slots")
        digest, slots = self.conn.execute(
            f"SELECT digest, {'slots' if slotted else 'NULL'} FROM vault WHERE id = 1").fetchone()
        with db.transaction(self.conn):
            header.write(self.conn, self.keys, self.info.vault_id, generation,
                         header.digest_int(digest), header.slots_value(slots) if slotted else None)
        self.conn.execute("PRAGMA journal_mode=DELETE")  # the WAL folded in: one file to move
        self.close()
        replaced = install(self.staged, vault_path)
        rollback.remember(generation)
        return generation, replaced

    def close(self) -> None:
        if self.keys is not None:
            self.keys.wipe()
            self.keys = None
        self.conn.close()


def _same_vault(vault_id: bytes, vault_path: str) -> None:
    """A restore puts back a copy of the same vault: the proof is this vault's own secret.
    (Another vault goes where no vault is: move this one away first.)"""
    current = file_vault_id(vault_path)
    if current is not None and current != vault_id:
        raise BadRequest(f"the backup is of another vault (id {vault_id.hex()[:12]}…, this "
                         f"vault's is {current.hex()[:12]}…): nothing was replaced; to put "
                         f"another vault in place, move {vault_path} away first")


def _generation_of(path: str, vault_id: bytes) -> int:
    """The generation the file at `path` claims if it is the same vault, else 0 (read
    without its key: it only ever raises the restored file's generation)."""
    claims = _claims(path)
    return claims[1] if claims and claims[0] == vault_id else 0


def install(staged: str, vault_path: str) -> str:
    """Put `staged` in place of the vault file, keeping the old one as
    `<vault>.replaced-<UTC time>` (a hard link made first, so a crash leaves the old or
    the new vault in place, never neither). Returns that name, or "" with no old file."""
    wal = vault_path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal):
        raise BadRequest(f"{wal} still holds commits not in {vault_path} (another process "
                         "has the vault open?): nothing was replaced")
    aside = ""
    if os.path.lexists(vault_path):
        aside = _aside_name(vault_path)
        try:
            os.link(vault_path, aside, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system: a moment without a vault file
            os.rename(vault_path, aside)
    for suffix in ("-wal", "-shm"):  # empty, or a cache of the old file's WAL
        with contextlib.suppress(FileNotFoundError):
            os.unlink(vault_path + suffix)
    os.replace(staged, vault_path)
    fsync_dir(os.path.dirname(os.path.abspath(vault_path)))
    return aside


def _aside_name(path: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = f"{path}.replaced-{stamp}", 1
    while os.path.lexists(aside):
        aside, n = f"{path}.replaced-{stamp}-{n}", n + 1
    return aside
