"""The streaming masker: same result however the stream is cut, at most max_hold held back."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credd.mask import MIN_LENGTH, REPLACEMENT, Masker, merged

R = REPLACEMENT


def reference(text: bytes, secrets: list[bytes]) -> bytes:
    """Whole-text masking, the obvious way: mark every byte of every occurrence."""
    secrets = [s for s in set(secrets) if len(s) >= MIN_LENGTH]
    covered = [False] * len(text)
    for s in secrets:
        at = text.find(s)
        while at >= 0:
            for i in range(at, at + len(s)):
                covered[i] = True
            at = text.find(s, at + 1)
    out, i = bytearray(), 0
    while i < len(text):
        if covered[i]:
            out += R
            while i < len(text) and covered[i]:
                i += 1
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def feed_in_pieces(masker: Masker, text: bytes, cuts: list[int]) -> bytes:
    out, prev = [], 0
    for cut in sorted(set(c % (len(text) + 1) for c in cuts)) + [len(text)]:
        out.append(masker.feed(text[prev:cut]))
        prev = cut
    out.append(masker.flush())
    return b"".join(out)


try:
    import hyperscan  # noqa: F401
    HAVE_HYPERSCAN = True
except ImportError:
    HAVE_HYPERSCAN = False
ENGINES = [pytest.param("hyperscan", marks=pytest.mark.skipif(
    not HAVE_HYPERSCAN, reason="hyperscan is not installed (pip install hyperscan)")), "find"]
alphabet = st.sampled_from(b"abcs-")  # small alphabet: many overlaps and near-misses


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=300, deadline=None)
@given(secrets=st.lists(st.binary(min_size=1, max_size=14).map(bytes), min_size=1, max_size=5),
       text=st.lists(alphabet, max_size=120).map(bytes),
       cuts=st.lists(st.integers(0, 200), max_size=12), inject=st.booleans())
def test_stream_equals_whole_text(engine, secrets, text, cuts, inject):
    secrets = [bytes(x % 5 + 97 for x in s) for s in secrets]  # same small alphabet
    if inject and secrets:
        text = text[:len(text) // 2] + secrets[0] + text[len(text) // 2:]
    masker = Masker(secrets, engine=engine)
    assert feed_in_pieces(masker, text, cuts) == reference(text, secrets)


@pytest.mark.parametrize("engine", ENGINES)
def test_byte_by_byte_holds_back_at_most_longest_minus_one(engine):
    secret = b"hunter2-super-secret"
    masker = Masker([secret, b"other-value"], engine=engine)
    text = b"user=admin pass=" + secret + b" done\nhunter2 is not it\n"
    out = b""
    for i in range(len(text)):
        out += masker.feed(text[i:i + 1])
        held = masker._base + len(masker._buf) - masker._emitted  # seen, not yet decided
        assert 0 <= held <= masker.max_hold
    out += masker.flush()
    assert out == b"user=admin pass=" + R + b" done\nhunter2 is not it\n"
    assert secret not in out


def test_nothing_held_when_tail_cannot_start_a_secret():
    masker = Masker([b"s3cr3t-value"])
    assert masker.feed(b"Password: ") == b"Password: "  # a prompt shows at once
    assert masker.feed(b"ab s3c") == b"ab "              # "s3c" may begin the secret
    assert masker.feed(b"r3t-value!") == R + b"!"


def test_short_values_are_not_masked_and_empty_set_passes_through():
    assert Masker([b"abc", b""]).mask(b"abc abc") == b"abc abc"
    assert Masker([]).mask(b"anything") == b"anything"


def test_overlapping_and_touching_secrets_become_one_marker():
    masker = Masker([b"abcdef", b"defghi"])
    assert masker.mask(b"x abcdefghi y") == b"x " + R + b" y"
    assert masker.mask(b"abcdefdefghi") == R


def test_utf8_secret_and_str_input():
    masker = Masker(["pässwörd-ü"])
    assert masker.mask("a pässwörd-ü b".encode()) == b"a " + R + b" b"


def test_merged():
    assert merged([(5, 7), (0, 2), (2, 3), (6, 9)]) == [(0, 3), (5, 9)]


def test_many_secrets_random_chunks_against_reference():
    rng = random.Random(7)
    secrets = [bytes(rng.choices(b"0123456789abcdef", k=rng.randint(8, 24))) for _ in range(2000)]
    pieces = []
    for _ in range(300):
        pieces.append(bytes(rng.choices(b"0123456789abcdef \n", k=rng.randint(0, 60))))
        pieces.append(rng.choice(secrets))
    text = b"".join(pieces)
    cuts = [rng.randint(0, len(text)) for _ in range(500)]
    got = feed_in_pieces(Masker(secrets), text, cuts)
    assert got == reference(text, secrets)
    assert all(s not in got for s in secrets)


def test_repr_hides_values():
    assert "hunter" not in repr(Masker([b"hunter2hunter2"]))


def test_hyperscan_in_several_databases(monkeypatch):
    pytest.importorskip("hyperscan")
    from credd import mask
    monkeypatch.setattr(mask._Hyperscan, "CHUNK", 3)
    secrets = [f"secret-{i:03d}".encode() for i in range(10)]
    masker = Masker(secrets, engine="hyperscan")
    assert len(masker.patterns._engine.parts) == 4
    text = b" ".join(secrets) + b" secret-999"
    assert masker.mask(text) == b" ".join([R] * 10) + b" secret-999"
