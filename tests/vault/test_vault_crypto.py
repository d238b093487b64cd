"""The pure crypto layer and the KDF limits."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credd.errors import BadRequest
from credd.vault import KdfParams, crypto, keyslots


def test_nonces_never_repeat_and_same_plaintext_differs():
    aead = AESGCM(bytes(32))
    blobs = [crypto.seal(aead, b"same", b"ad") for _ in range(10_000)]
    assert len({b[:crypto.NONCE_LEN] for b in blobs}) == 10_000
    assert len(set(blobs)) == 10_000
    assert all(crypto.unseal(aead, b, b"ad") == b"same" for b in blobs[:10])


def test_unseal_rejects_other_ad_flipped_bit_and_truncation():
    aead = AESGCM(bytes(32))
    blob = crypto.seal(aead, b"value", b"row-1")
    with pytest.raises(crypto.AuthFailure):
        crypto.unseal(aead, blob, b"row-2")
    for i in range(len(blob)):
        flipped = blob[:i] + bytes([blob[i] ^ 1]) + blob[i + 1:]
        with pytest.raises(crypto.AuthFailure):
            crypto.unseal(aead, flipped, b"row-1")
    with pytest.raises(crypto.AuthFailure):
        crypto.unseal(aead, blob[:-1], b"row-1")


def test_ad_parts_are_unambiguous():
    assert crypto.ad(b"ab", b"c") != crypto.ad(b"a", b"bc")
    assert crypto.ad("meta", 1) != crypto.ad("meta", 2)


def test_subkeys_are_distinct_per_purpose():
    keys = crypto.Keys(bytearray(range(32)))
    subkeys = {bytes(keys.index), bytes(keys.audit), bytes(keys.header)}
    assert len(subkeys) == 3 and bytes(keys.dek) not in subkeys
    keys.wipe()
    assert bytes(keys.index) == bytes(32) and bytes(keys.dek) == bytes(32)


def test_bulk_digest_forms_agree_with_one_row_at_a_time():
    keys = crypto.Keys(bytearray(range(32)))
    ids = [bytes([i]) * 16 for i in range(40)]
    revs = [i * 1000 + 7 for i in range(40)]
    items = 0
    for row_id, rev in zip(ids, revs):
        items ^= keys.digest_item(crypto.ENTRY, row_id, rev)
    joined = crypto.zero_version_tails(revs)
    assert joined == b"".join(crypto.TAIL.pack(r, 0) for r in revs)
    assert keys.digest(crypto.ENTRY, ids, joined) == items
    assert keys.digest(crypto.ENTRY, ids, [crypto.TAIL.pack(r, 0) for r in revs]) == items
    assert keys.digest(crypto.HISTORY, ids, joined) != items  # one key per kind
    with pytest.raises(ValueError):
        keys.digest(crypto.ENTRY, [*ids[:-1], b"short"], joined)
    with pytest.raises(ValueError):
        keys.digest_item(crypto.ENTRY, b"short", 1)


def test_bulk_row_ad_is_row_ad():
    vault_id, row_id = bytes(range(16)), bytes(range(16, 32))
    assert crypto.ROW_AD.pack(vault_id, row_id, b"m", 9, 0) == crypto.row_ad(
        vault_id, row_id, "meta", 9)


def test_a_wiped_key_set_refuses_row_ids():
    from credd.errors import LockedError
    keys = crypto.Keys(bytearray(range(32)))
    assert len(keys.row_id("a/b")) == 16 and keys.row_id("a/b") != keys.row_id("a/c")
    keys.wipe()
    with pytest.raises(LockedError):
        keys.row_id("a/b")


@pytest.mark.parametrize("params", [
    {"memory_kib": 8 * 1024}, {"iterations": 1}, {"lanes": 0},
    {"memory_kib": 2 ** 31}, {"memory_kib": 4 * 1024 * 1024}, {"memory_kib": 1024 * 1024 + 1},
    {"iterations": 11}, {"lanes": 17}, {"memory_kib": True},
])
def test_caller_kdf_params_outside_limits_are_bad_requests(params):
    with pytest.raises(BadRequest, match="KDF"):
        KdfParams(**{"memory_kib": 19456, "iterations": 2, "lanes": 1, **params}).validate()


def test_the_ceiling_is_1_gib_and_1_gib_itself_is_allowed():
    assert KdfParams(memory_kib=1024 * 1024, iterations=10, lanes=16).problem() is None


def test_absurd_stored_params_are_refused_before_deriving():
    vault_id = bytes(16)
    for m, t, p in [(2 ** 31, 3, 4), (4 * 1024 * 1024, 3, 4), (1024 * 1024 + 1, 3, 4),
                    (8 * 1024, 3, 4), (65536, 1, 4), (65536, 3, 200)]:
        header = keyslots.SlotHeader(vault_id=vault_id, slot_id=1, kind="passphrase",
                                     salt=bytes(16), kdf=KdfParams(memory_kib=m, iterations=t,
                                                                   lanes=p)).pack()
        start = time.perf_counter()
        with pytest.raises(keyslots.SlotOutOfRange):
            keyslots.candidate(header, "passphrase")
        assert time.perf_counter() - start < 0.05


def test_recovery_key_is_typeable_and_forgiving():
    text, raw = keyslots.new_recovery_key()
    groups = text.split("-")
    assert len(groups) == 8 and all(len(g) == 4 for g in groups)
    assert keyslots.parse_recovery_key(text.lower().replace("-", " ")) == raw
    with pytest.raises(BadRequest):
        keyslots.parse_recovery_key("ABCD-EFGH")


def test_defaults_are_at_least_the_floor():
    d = KdfParams()
    assert (d.memory_kib, d.iterations, d.lanes) == (65536, 3, 4)
    assert d.validate() is d
