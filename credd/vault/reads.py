"""Reads of an unlocked vault: entries by name, secrets and history from the file.

Metadata comes from the session's index and never touches the file. Secrets are
decrypted per request and their plaintext is never kept: a secret column that
authenticated is kept sealed (still encrypted) under its row's rev, so a repeated `get`
is AES-GCM and a decode without SQLite. Secret reads take no lock: if the row's rev in
the file differs from the index's (a writer raced the read), the read is retried under
the write lock, and a difference that persists there is tampering.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import msgspec

from credd.errors import NotFound
from credd.protocol import VersionInfo
from credd.store import SecretEntry
from credd.vault import crypto
from credd.vault.crypto import AuthFailure, Keys, row_ad
from credd.vault.db import VaultFile
from credd.vault.index import Row
from credd.vault.model import (
    HistoryRecord,
    SecretRecord,
    canonical_name,
    decode_history,
    decode_secret,
    to_entry_meta,
)
from credd.vault.session import Session

#: Names remembered per unlock by `locate` (about 100 bytes each).
LOCATED_MAX = 4096

Lookup = Callable[[str, bytes], "Row | None"]


def locate(keys: Keys, name: object) -> tuple[str, bytes]:
    """(canonical name, row id) of a requested name, memoized per unlock: a repeated
    `get` skips the name checks and the HMAC. Bounded, as callers choose the names."""
    memo = type(name) is str  # a str subclass could hash and compare as it likes
    hit = keys.located.get(name) if isinstance(name, str) and memo else None
    if hit is None:
        canonical = canonical_name(name)
        hit = (canonical, keys.row_id(canonical))
        if memo:
            if len(keys.located) >= LOCATED_MAX:
                keys.located.clear()
            keys.located[name] = hit  # type: ignore[index]
    return hit


class Reader:
    """Reads against one session. `current` returns the vault's live session (LockedError
    when locked), for the retry under the lock; `lookup` finds a row by name (a write
    transaction passes its own, which sees the rows it wrote)."""

    def __init__(self, file: VaultFile, session: Session, current: Callable[[], Session],
                 lookup: Lookup | None = None) -> None:
        self.file, self.session, self.current = file, session, current
        self.lookup: Lookup = lookup or (lambda name, _row_id: session.index.find(name))

    def find(self, name: str, *, trashed: bool | None = False) -> tuple[str, Row]:
        """The row of `name`; trashed=None accepts live or trash, else that state only."""
        session = self.session
        name, row_id = locate(session.require(self.file.path), name)
        if row_id in session.bad:
            raise session.bad_error(row_id, name)
        row = self.lookup(name, row_id)
        if row is None:
            session.require(self.file.path)  # not found, or locked meanwhile (LockedError)
            raise NotFound(f"no entry named {name!r}", names=[name])
        in_trash = row.entry.deleted is not None
        if trashed is not None and in_trash != trashed:
            raise NotFound(f"{name!r} is in the trash: undelete it first" if in_trash
                           else f"{name!r} is not in the trash", names=[name])
        return name, row

    # ---------------------------------------------------------------- secrets

    def secret(self, name: str, row: Row) -> SecretRecord:
        """Decrypt one secret column; a racing writer makes us retry under the lock."""
        try:
            return self._read_secret(row, self.session)
        except Exception:
            pass
        with self.file.lock:
            session = self.current()
            session.require(self.file.path)
            current = self.lookup(name, row.id)
            if current is None:
                raise NotFound(f"no entry named {name!r}", names=[name])
            try:
                return self._read_secret(current, session)
            except AuthFailure:
                raise session.bad_error(row.id, name) from None

    def _read_secret(self, row: Row, session: Session) -> SecretRecord:
        """The secret of `row`'s rev: from its kept sealed column, else read from the file.

        A column is kept only once it authenticated under (row id, rev), so what is kept
        is the authentic ciphertext; the file stays what `check()` verifies."""
        keys = session.keys
        if keys.secret is None:  # a lock-free reader that lost a race with lock()
            raise AuthFailure()
        kept = session.secrets.get(row.id)
        sealed = kept[1] if kept is not None and kept[0] == row.rev else None
        if sealed is None:
            found = self.file.conn().execute("SELECT rev, secret FROM entries WHERE id = ?",
                                             (row.id,)).fetchone()
            if found is None or found[0] != row.rev:
                raise AuthFailure()
            sealed = found[1]
        plain = crypto.unseal(keys.secret, sealed,
                              row_ad(self.file.vault_id, row.id, "secret", row.rev))
        try:
            record = decode_secret(plain)
        except msgspec.DecodeError:
            raise AuthFailure() from None
        session.secrets[row.id] = (row.rev, sealed)
        return record

    def get(self, name: str, field: str | None = None) -> str:
        """The entry's value, or one field (secret or not)."""
        name, row = self.find(name)
        meta = row.entry
        if isinstance(field, str):
            field = unicodedata.normalize("NFC", field)  # stored names are NFC (check_label)
        if field is not None and field in meta.fields:
            return meta.fields[field]
        secret = self.secret(name, row)
        if field is None:
            if secret.value is None:
                raise NotFound(f"{name!r} has no value, {_fields_of(name, meta.fields, secret)}",
                               names=[name])
            return secret.value
        if field not in secret.fields:
            raise NotFound(f"{name!r} has no field {field!r}, "
                           f"{_fields_of(name, meta.fields, secret)}", names=[name])
        return secret.fields[field]

    def pending(self, name: str) -> str:
        """The value `stage` kept for the entry (never its value until `finish`)."""
        name, row = self.find(name)
        pending = self.secret(name, row).pending
        if pending is None:
            raise NotFound(f"{name!r} has no pending value", names=[name])
        return pending

    def reveal(self, name: str, version: int | None = None) -> SecretEntry:
        """All secrets of the current entry, or of one version from its history."""
        name, row = self.find(name)
        if version is None or version == row.entry.version:
            meta, secret = to_entry_meta(row.entry), self.secret(name, row)
        else:
            record = self.history_record(row.id, name, version)
            meta, secret = to_entry_meta(record.meta), record.secret
        return SecretEntry(meta, secret.value or "", dict(secret.fields), secret.notes or "")

    # ---------------------------------------------------------------- history

    def history(self, name: str) -> tuple[int, list[VersionInfo]]:
        """(current version, older versions newest first)."""
        name, row = self.find(name, trashed=None)
        with self.file.lock:
            versions = self.file.conn().execute(
                "SELECT version FROM history WHERE entry = ? ORDER BY version DESC",
                (row.id,)).fetchall()
            records = [self.history_record(row.id, name, v) for (v,) in versions]
        return row.entry.version, [
            VersionInfo(version=r.meta.version, updated=r.meta.updated, replaced=r.replaced)
            for r in records]

    def history_record(self, row_id: bytes, name: str, version: int) -> HistoryRecord:
        keys = self.session.require(self.file.path)
        found = None
        if 1 <= version < 2 ** 63:  # beyond SQLite's integers no version can exist
            found = self.file.conn().execute(
                "SELECT rev, blob FROM history WHERE entry = ? AND version = ?",
                (row_id, version)).fetchone()
        if found is None:
            raise NotFound(f"{name!r} has no version {version}", names=[name])
        try:
            plain = crypto.unseal(keys.secret, found[1], row_ad(
                self.file.vault_id, row_id, "history", found[0], version))
            record = decode_history(plain)
        except (AuthFailure, msgspec.DecodeError):
            raise self.session.bad_error(row_id, name, f"version {version} of") from None
        if record.meta.version != version or record.meta.name != name:
            raise self.session.bad_error(row_id, name, f"version {version} of")
        return record


def _fields_of(name: str, plain: dict[str, str], secret: SecretRecord) -> str:
    """The end of a not-found sentence: which fields the entry does have, and how to ask."""
    fields = sorted([*plain, *secret.fields])
    if not fields:
        return "and no fields"
    return f"only the fields {', '.join(fields)} (`credd get {name}/FIELD`)"
