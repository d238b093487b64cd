"""Key slots: each unlock method wraps the same data key (DEK).

A slot is a canonical header (what to derive and how) plus the DEK sealed with
AES-256-GCM under the derived key-encryption key (KEK), with the header bytes
as associated data: a flipped header byte fails exactly like a wrong
passphrase, after the same work. KDF parameters are checked against a floor
and a ceiling *before* deriving, so a weakened or absurd header costs nothing.
"""

from __future__ import annotations

import base64
import struct
import unicodedata

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credd.errors import BadRequest
from credd.vault import crypto

PASSPHRASE, KEY, RECOVERY = "passphrase", "key", "recovery"
_KIND_IDS = {PASSPHRASE: 1, KEY: 2, RECOVERY: 3}
_KINDS = {v: k for k, v in _KIND_IDS.items()}
_KDF_ARGON2ID, _KDF_HKDF = 1, 2
_MAGIC = b"credd-ks"
_LAYOUT = 1
_HEADER = struct.Struct(">8sH16sIBBIII16s")

#: OWASP's Argon2id floor, and a ceiling (SECURITY.md E21, Bitwarden's ranges) so that a
#: tampered header costs at most 1 GiB and t=10 per attempt, refused before deriving.
FLOOR = {"memory_kib": 19 * 1024, "iterations": 2, "lanes": 1}
CEILING = {"memory_kib": 1024 * 1024, "iterations": 10, "lanes": 16}
RECOVERY_BYTES = 20  # 160 bits, 32 base32 characters


class KdfParams(msgspec.Struct, frozen=True, kw_only=True):
    """Argon2id cost; the defaults are what `credd init` ships."""

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4

    def problem(self) -> str | None:
        """Why these parameters are refused, or None."""
        for name in ("memory_kib", "iterations", "lanes"):
            value = getattr(self, name)
            if type(value) is not int or not FLOOR[name] <= value <= CEILING[name]:
                return (f"KDF {name}={value!r} is outside [{FLOOR[name]}, {CEILING[name]}]")
        if self.memory_kib < 8 * self.lanes:
            return "KDF memory_kib must be at least 8 × lanes"
        return None

    def validate(self) -> KdfParams:
        problem = self.problem()
        if problem:
            raise BadRequest(problem)
        return self


class SlotHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated description of one slot (its bytes are the AEAD's AD)."""

    vault_id: bytes
    slot_id: int
    kind: str
    salt: bytes
    kdf: KdfParams | None = None  # passphrase slots only

    def pack(self) -> bytes:
        k = self.kdf or KdfParams(memory_kib=0, iterations=0, lanes=0)
        return _HEADER.pack(_MAGIC, _LAYOUT, self.vault_id, self.slot_id, _KIND_IDS[self.kind],
                            _KDF_ARGON2ID if self.kdf else _KDF_HKDF,
                            k.memory_kib, k.iterations, k.lanes, self.salt)


class SlotOutOfRange(Exception):
    """The stored KDF parameters are outside floor/ceiling: refused before deriving."""


def kind_of(raw: bytes) -> str | None:
    """The kind a stored header claims (None when unreadable)."""
    if not isinstance(raw, bytes) or len(raw) != _HEADER.size:
        return None
    return _KINDS.get(_HEADER.unpack(raw)[4])


def candidate(raw: bytes, kind: str) -> SlotHeader | None:
    """How to try a stored slot for an unlock of `kind`, or None if it is another kind.

    The header is not trusted yet: its bytes are the AD, so any change fails
    the unwrap. A header whose kind byte is unreadable is still tried, so a
    flipped byte costs the same derivation as a wrong passphrase. Only KDF
    parameters outside floor/ceiling are refused up front (SlotOutOfRange).
    """
    if not isinstance(raw, bytes) or len(raw) != _HEADER.size:
        return None
    _magic, _layout, vault_id, slot_id, kind_id, _kdf, m, t, p, salt = _HEADER.unpack(raw)
    if _KINDS.get(kind_id, kind) != kind:
        return None
    kdf = None
    if kind == PASSPHRASE:
        kdf = KdfParams(memory_kib=m, iterations=t, lanes=p)
        problem = kdf.problem()
        if problem:
            raise SlotOutOfRange(problem)
    return SlotHeader(vault_id=vault_id, slot_id=slot_id, kind=kind, salt=salt, kdf=kdf)


def new_header(vault_id: bytes, slot_id: int, kind: str,
               kdf: KdfParams | None = None) -> SlotHeader:
    return SlotHeader(vault_id=vault_id, slot_id=slot_id, kind=kind,
                      salt=crypto.random_bytes(crypto.SALT_LEN),
                      kdf=(kdf or KdfParams()).validate() if kind == PASSPHRASE else None)


def secret_bytes(kind: str, secret: str | bytes) -> bytes:
    """The slot's secret as bytes: NFC UTF-8 passphrase, raw key, normalized recovery key."""
    if kind == PASSPHRASE:
        if not isinstance(secret, str) or not secret:
            raise BadRequest("the passphrase must be a non-empty string")
        return unicodedata.normalize("NFC", secret).encode()
    if kind == KEY:
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != crypto.KEY_LEN:
            raise BadRequest(f"a slot key must be exactly {crypto.KEY_LEN} bytes")
        return bytes(secret)
    return parse_recovery_key(secret)


def derive_kek(header: SlotHeader, secret: bytes) -> bytearray:
    """The key-encryption key: Argon2id for passphrases, HKDF for high-entropy secrets."""
    if header.kdf is not None:
        k = header.kdf
        return crypto.argon2id(secret, header.salt, memory_kib=k.memory_kib,
                               iterations=k.iterations, lanes=k.lanes)
    return crypto.hkdf(secret, b"credd/v1/slot/" + header.kind.encode(), salt=header.salt)


def wrap(kek: bytearray, dek: bytearray, header_bytes: bytes) -> bytes:
    return crypto.seal(AESGCM(bytes(kek)), bytes(dek), header_bytes)


def unwrap(kek: bytearray, blob: bytes, header_bytes: bytes) -> bytearray:
    """The DEK, or AuthFailure."""
    dek = bytearray(crypto.unseal(AESGCM(bytes(kek)), blob, header_bytes))
    if len(dek) != crypto.KEY_LEN:
        raise crypto.AuthFailure()
    return dek


def new_recovery_key() -> tuple[str, bytes]:
    """(as shown to the person: groups of four base32 characters, its raw bytes)."""
    raw = crypto.random_bytes(RECOVERY_BYTES)
    text = base64.b32encode(raw).decode()
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4)), raw


def parse_recovery_key(text: str | bytes) -> bytes:
    """Accept what a person types: any case, dashes or spaces, 0/1 for O/I."""
    if not isinstance(text, str):
        raise BadRequest("a recovery key must be text")
    cleaned = "".join(text.split()).replace("-", "").upper().replace("0", "O").replace("1", "I")
    try:
        raw = base64.b32decode(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != RECOVERY_BYTES:
        raise BadRequest("a recovery key is 32 letters and digits in groups of four "
                         "(XXXX-XXXX-...)")
    return raw
