"""Fingerprints: stable per vault, different across vaults, never any of the value."""

from __future__ import annotations

import hmac
import re

import pytest

from credd.daemon import fingerprints
from credd.errors import LockedError, NotFound
from credd.protocol import Field
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE

SHAPE = re.compile(r"fp:[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")


def test_the_format_is_40_bits_of_crockford_base32():
    key = b"k" * 32
    digest = fingerprints.digest(key, "value")
    assert digest == hmac.digest(key, b"value", "sha256")[:16]
    shown = fingerprints.shown(digest)
    assert SHAPE.fullmatch(shown)
    alphabet = fingerprints.ALPHABET
    value = 0
    for ch in shown[3:].replace("-", ""):
        value = value * 32 + alphabet.index(ch)
    assert value == int.from_bytes(digest[:5], "big")
    assert fingerprints.shown(bytes(16)) == "fp:0000-0000"
    assert fingerprints.derive_key(key) != key and len(fingerprints.derive_key(key)) == 32


def test_stable_equal_for_equal_values_and_never_the_value(unlocked_agent, run_credd):
    with unlocked_agent.client() as c:
        c.set("a", value=SENTINEL, fields=[Field(name="pin", value="1234-5678")])
        c.set("b", value=SENTINEL)
        c.set("other", value=SENTINEL + "x")
        fp = c.fingerprint("a")
        assert SHAPE.fullmatch(fp) and fp == c.fingerprint("b") != c.fingerprint("other")
        assert c.fingerprint("a", "pin") != fp and SHAPE.fullmatch(c.fingerprint("a", "pin"))
        for chunk in (SENTINEL[i:i + 6] for i in range(len(SENTINEL) - 5)):
            assert chunk not in fp
        c.set("a", tags=["x"], merge=True)
        assert c.fingerprint("a") == fp  # a metadata edit changes nothing
        c.lock()
        with pytest.raises(LockedError):
            c.fingerprint("a")
    unlocked_agent.stop()
    unlocked_agent.start()
    with unlocked_agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
        assert c.fingerprint("a") == fp  # the same after a restart
        with pytest.raises(NotFound, match="no field 'nope'"):
            c.fingerprint("a", "nope")
        pin = c.fingerprint("a", "pin")
        # a path, read as `get` reads it: the whole name, else NAME/FIELD
        assert c.fingerprint("a/pin") == c.fingerprint("credd://a/pin") == pin
        assert c.fingerprint("credd://a") == fp
        with pytest.raises(NotFound, match="'a' has no field 'pim'"):
            c.fingerprint("a/pim")
    assert run_credd("fingerprint", "a").stdout == fp + "\n"
    assert run_credd("fingerprint", "a/pin").stdout == pin + "\n"
    shown = run_credd("show", "a").stdout
    assert f"(hidden: --reveal shows it) {fp}" in shown and SENTINEL not in shown


def test_every_vault_has_its_own(make_agent, tmp_path, credd_env):
    found = []
    for i in range(2):
        env = dict(credd_env, CREDD_VAULT=str(tmp_path / f"v{i}" / "vault.db"),
                   CREDD_STATE_DIR=str(tmp_path / f"s{i}"),
                   CREDD_SOCK=credd_env["CREDD_SOCK"] + str(i))
        agent = make_agent(env=env)
        with agent.client() as c:
            c.init(TEST_PASSPHRASE, **FAST_KDF)
            c.unlock(TEST_PASSPHRASE)
            c.set("same", value=SENTINEL)
            found.append(c.fingerprint("same"))
    assert found[0] != found[1]


def test_a_rekey_gives_new_fingerprints(client):
    client.set("a", value=SENTINEL)
    before = client.fingerprint("a")
    client.rekey(proof=TEST_PASSPHRASE)
    assert client.fingerprint("a") != before
