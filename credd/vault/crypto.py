"""The vault's cryptography, pure (no I/O): Argon2id, HKDF, AES-256-GCM with AD, MACs.

Keys live in `bytearray`s so `wipe` can overwrite them; the keyed objects
(AESGCM, HMAC, AES) keep their own copies, which we can only drop (CPython
offers no more: process isolation is the real boundary, see SECURITY.md).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from credd.errors import LockedError

KEY_LEN = 32
NONCE_LEN = 12
SALT_LEN = 16
TAG_LEN = 16

#: HKDF `info` labels, one per purpose: a key never serves two purposes.
PURPOSES = ("index", "metadata", "secret", "audit", "header", "digest")
ROW_ID_LEN = 16
_COLUMNS = {"meta": b"m", "secret": b"s", "history": b"h", "record": b"r"}
#: (rev, version): ends every row's AD and is the second block of its digest PRF.
TAIL = struct.Struct(">QQ")
#: Digest kinds, each with its own key: entry rows, history rows, agent records.
ENTRY, HISTORY, RECORD = 0, 1, 2


class AuthFailure(Exception):
    """An AEAD tag did not verify (wrong key, or data/AD changed)."""


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def wipe(buf: bytearray | None) -> None:
    """Overwrite a key buffer in place (best effort: see the module docstring)."""
    if buf is not None:
        buf[:] = bytes(len(buf))


def argon2id(secret: bytes, salt: bytes, *, memory_kib: int, iterations: int,
             lanes: int) -> bytearray:
    """Stretch a passphrase; the caller validates the parameters first."""
    kdf = Argon2id(salt=salt, length=KEY_LEN, iterations=iterations, lanes=lanes,
                   memory_cost=memory_kib)
    return bytearray(kdf.derive(secret))


def hkdf(key: bytes | bytearray, info: bytes, salt: bytes | None = None) -> bytearray:
    return bytearray(HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt,
                          info=info).derive(bytes(key)))


def ad(*parts: bytes | str | int) -> bytes:
    """Associated data: length-prefixed parts, so no two part lists share an encoding."""
    out = bytearray()
    for part in parts:
        data = (struct.pack(">q", part) if isinstance(part, int)
                else part.encode() if isinstance(part, str) else part)
        out += struct.pack(">I", len(data)) + data
    return bytes(out)


def row_ad(vault_id: bytes, row_id: bytes, column: str, rev: int, version: int = 0) -> bytes:
    """AD of one encrypted column: vault id ‖ row id ‖ column ‖ rev ‖ version, fixed widths.

    Row ids read from the file are checked to be ROW_ID_LEN long before use,
    so the layout is unambiguous; it is built by concatenation because the
    unlock path computes it once per entry.
    """
    return vault_id + row_id + _COLUMNS[column] + TAIL.pack(rev, version)


@functools.lru_cache(maxsize=4)
def _zero_version_struct(rows: int) -> struct.Struct:
    return struct.Struct(">" + "Q8x" * rows)


def zero_version_tails(revs: Sequence[int]) -> bytes:
    """TAIL(rev, 0) of many rows as one buffer, in one C call (struct.error if a rev is bad)."""
    return _zero_version_struct(len(revs)).pack(*revs)


#: `row_ad` as one struct, for bulk use: only for a 16-byte vault id and row ids
#: already checked to be ROW_ID_LEN long ("16s" would pad or cut any other length).
ROW_AD = struct.Struct(">16s16s1sQQ")


def seal(aead: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """nonce ‖ ciphertext ‖ tag, with a fresh random 96-bit nonce."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + aead.encrypt(nonce, plaintext, associated)


def unseal(aead: AESGCM, blob: bytes, associated: bytes) -> bytes:
    if not isinstance(blob, bytes) or len(blob) < NONCE_LEN + TAG_LEN:
        raise AuthFailure()
    try:
        return aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], associated)
    except InvalidTag:
        raise AuthFailure() from None


class Keys:
    """The DEK and its per-purpose subkeys while the vault is unlocked.

    Keyed primitives are set up once here, not per call: `row_id` runs on every
    request and `digest_item` several times per write.
    """

    def __init__(self, dek: bytearray) -> None:
        self.dek = dek
        sub = {p: hkdf(dek, b"credd/v1/" + p.encode()) for p in PURPOSES}
        self.index, self.audit, self.header = sub["index"], sub["audit"], sub["header"]
        self.meta = AESGCM(bytes(sub["metadata"]))
        self.secret = AESGCM(bytes(sub["secret"]))
        wipe(sub["metadata"])
        wipe(sub["secret"])
        self._index_mac = hmac.new(bytes(self.index), digestmod=hashlib.sha256)
        self._header_mac = hmac.new(bytes(self.header), digestmod=hashlib.sha256)
        self._digest_keys = tuple(bytes(hkdf(sub["digest"], label))
                                  for label in (b"entries", b"history", b"records"))
        wipe(sub["digest"])
        self._item_lock = threading.Lock()
        self._item_ecb = tuple(_ecb(k) for k in self._digest_keys)
        #: name as asked → (canonical name, row id), filled by the vault's reads:
        #: both depend only on the name and this key, so the memo dies with it.
        self.located: dict[str, tuple[str, bytes]] = {}

    def row_id(self, name: str) -> bytes:
        """HMAC-SHA256(index key, canonical name), truncated to 128 bits."""
        proto = self._index_mac
        if proto is None:  # a lock-free reader that lost a race with lock()
            raise LockedError()
        mac = proto.copy()
        mac.update(name.encode())
        return mac.digest()[:16]

    def digest(self, kind: int, ids: Sequence[bytes], tails: bytes | Iterable[bytes]) -> int:
        """XOR over rows of a PRF of (row id, rev, version), computed in bulk.

        The PRF is CBC-MAC over exactly two AES blocks, a PRF for fixed-length
        input: E(E(row id) ⊕ TAIL(rev, version)), with one key per kind. It is
        keyed, so an attacker who sees every row still cannot pick replayed
        rows whose contributions cancel. `tails` are the rows' TAIL blocks, as
        a list or already joined (`zero_version_tails`).
        """
        if not ids:
            return 0
        firsts = b"".join(ids)
        tails = tails if isinstance(tails, bytes) else b"".join(tails)
        if len(firsts) != 16 * len(ids) or len(tails) != len(firsts):
            raise ValueError("row ids must be 16 bytes")
        return _fold(_cbc_mac2(_ecb(self._digest_keys[kind]), firsts, tails))

    def digest_item(self, kind: int, row_id: bytes, rev: int, version: int = 0) -> int:
        """One row's term of `digest`, with a cached cipher (writes call this per row)."""
        if len(row_id) != 16:
            raise ValueError("row ids must be 16 bytes")
        with self._item_lock:
            return int.from_bytes(_cbc_mac2(self._item_ecb[kind], row_id,
                                            TAIL.pack(rev, version)), "big")

    def header_mac(self, data: bytes) -> bytes:
        mac = self._header_mac.copy()
        mac.update(data)
        return mac.digest()

    def wipe(self) -> None:
        for buf in (self.dek, self.index, self.audit, self.header):
            wipe(buf)
        self._index_mac = self._header_mac = None  # type: ignore[assignment]
        self.located = {}
        self._digest_keys = (b"", b"", b"")
        self._item_ecb = ()
        self.meta = self.secret = None  # type: ignore[assignment]


def _ecb(key: bytes) -> CipherContext:
    """An AES-ECB encryptor: stateless between blocks, so it can be reused."""
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def _cbc_mac2(enc: CipherContext, firsts: bytes, tails: bytes) -> bytes:
    """E(E(first) ⊕ tail) for each pair of 16-byte blocks, as one buffer."""
    size = len(firsts)
    mixed = int.from_bytes(enc.update(firsts), "big") ^ int.from_bytes(tails, "big")
    return enc.update(mixed.to_bytes(size, "big"))


def _fold(buf: bytes) -> int:
    """XOR of all 16-byte blocks of `buf`, halving it as a big integer (fast at 100k blocks)."""
    acc, blocks = 0, len(buf) // 16
    while blocks:
        if blocks & 1:
            acc ^= int.from_bytes(buf[:16], "big")
            buf, blocks = buf[16:], blocks - 1
        if blocks:
            half = blocks // 2 * 16
            buf = (int.from_bytes(buf[:half], "big") ^ int.from_bytes(buf[half:], "big")
                   ).to_bytes(half, "big")
            blocks //= 2
    return acc
