"""Keyed fingerprints of values: how to name a secret in a log line, and how `due` finds reuse.

`fp:3k9q-x2v7` is the first 40 bits of HMAC-SHA256(fingerprint key, value) in Crockford's
base32 (digits and lowercase letters without i, l, o, u). It says nothing of the value to
anyone without the key: unlike `key[:10]`, which is ten characters of the key. The key is
HKDF-SHA256(the vault's audit key, info "credd fingerprint v1"): each vault has its own, a
`rekey` (a new data key) gives new fingerprints, and it is never the audit key itself, so
an audit line's name HMAC can never equal a fingerprint key.

Collisions. Among n values, two share a 40-bit fingerprint with probability about
n² / 2⁴¹: 5 × 10⁻⁷ for 1,000 values, 1 × 10⁻⁵ for 5,000, 0.5 % for 100,000. A fingerprint
identifies a value for a person; `due` compares 128 bits of the HMAC, so its duplicates
are real (odds about n² / 2¹²⁹).

Cost. Fingerprinting every value decrypts every entry once: about 23 µs per entry here
(2.3 s per 100,000 on a shared 2-core machine, 1.0 s when the vault already holds the
sealed blobs in memory), so `due` does it on a reader thread, never on the event loop.
The digests (never a value) are kept per entry while the vault is unlocked, checked
against the entry's version and update time, so the next report decrypts only what
changed; the agent drops them at lock.
"""

from __future__ import annotations

import hmac
import threading
from typing import NamedTuple

from credd.protocol import EntryMeta
from credd.store import EntryStore

PREFIX = "fp:"
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lowercase
INFO = b"credd fingerprint v1"
#: Bytes of HMAC kept per value: 40 bits are shown, 128 compared.
KEPT = 16
#: Secrets shorter than this are not compared for reuse (masking passes them over too).
MIN_COMPARED = 4
CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def derive_key(audit_key: bytes) -> bytes:
    """The fingerprint key of the vault whose audit key this is."""
    from credd.vault.crypto import hkdf
    return bytes(hkdf(audit_key, INFO))


def digest(key: bytes, value: str) -> bytes:
    return hmac.digest(key, value.encode("utf-8", "surrogatepass"), "sha256")[:KEPT]


def shown(digest: bytes) -> str:
    """`fp:xxxx-xxxx`: the digest's first 40 bits, 5 bits per character."""
    bits = int.from_bytes(digest[:5], "big")
    chars = "".join(ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"{PREFIX}{chars[:4]}-{chars[4:]}"


class Digests(NamedTuple):
    """What is kept of one entry's secrets: their HMACs and the value's length."""

    version: int
    updated: float
    value: bytes | None              # None: the entry has no value
    length: int                      # the value's length in characters
    fields: dict[str, bytes]         # each secret field's
    ignored: frozenset[str]          # secrets not compared for reuse ("" is the value)


class Fingerprints:
    """The digests of one unlock's entries, computed when first asked (any thread)."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._kept: dict[str, Digests] = {}
        self._lock = threading.Lock()

    def of(self, store: EntryStore, meta: EntryMeta) -> Digests:
        """`meta`'s digests: kept ones while the entry is unchanged, else from its secrets."""
        kept = self._kept.get(meta.name)
        if kept is not None and (kept.version, kept.updated) == (meta.version, meta.updated):
            return kept
        entry = store.reveal(meta.name)
        key, secrets = self.key, {"": entry.value, **entry.secret_fields}
        found = Digests(meta.version, meta.updated,
                        digest(key, entry.value) if entry.meta.has_value else None,
                        len(entry.value), {field: digest(key, value)
                                           for field, value in entry.secret_fields.items()},
                        frozenset(name for name, value in secrets.items() if _public(value)))
        with self._lock:
            self._kept[meta.name] = found
        return found

    def of_field(self, store: EntryStore, meta: EntryMeta, field: str | None) -> bytes | None:
        """One secret's digest: the value's (field None), a secret field's, or a plain
        field's (not kept: it is no secret); None when there is no such secret."""
        if field is not None and field in meta.fields:
            return digest(self.key, meta.fields[field])
        found = self.of(store, meta)
        return found.value if field is None else found.fields.get(field)


def _public(value: str) -> bool:
    """Not worth comparing for reuse: a certificate (public), or too short to mean much."""
    return len(value) < MIN_COMPARED or CERTIFICATE in value
