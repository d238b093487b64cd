"""The streaming masker: same result however the stream is cut, at most max_hold held back."""

from __future__ import annotations

import os
import random
import time

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
    for cut in [*sorted({c % (len(text) + 1) for c in cuts}), len(text)]:
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


def test_hyperscan_in_several_databases_compiled_and_scanned_side_by_side(monkeypatch):
    pytest.importorskip("hyperscan")
    from credd import mask
    monkeypatch.setattr(mask._Hyperscan, "PER_DB", 2)
    monkeypatch.setattr(mask, "cpus", lambda: 4)  # 10 patterns: 4 databases, not 5
    monkeypatch.setattr(mask._Hyperscan, "PARALLEL_SCAN", 16)  # this short text: on threads
    secrets = [f"secret-{i:03d}".encode() for i in range(10)]
    masker = Masker(secrets, engine="hyperscan")
    assert len(masker.patterns.engine().parts) == 4
    text = b" ".join(secrets) + b" secret-999"
    assert masker.mask(text) == b" ".join([R] * 10) + b" secret-999"
    assert feed_in_pieces(masker, text, [5, 17, 40]) == b" ".join([R] * 10) + b" secret-999"


def random_corpus(seed: int, n_secrets: int, pieces: int) -> tuple[list[bytes], bytes]:
    """Secrets from a small alphabet (shared prefixes, overlaps, one inside another) and
    text made of noise, whole secrets and fragments of them."""
    rng = random.Random(seed)
    secrets = [bytes(rng.choices(b"abcdef0123", k=rng.randint(4, 30))) for _ in range(n_secrets)]
    secrets += [s[:len(s) // 2 + 2] for s in secrets[:50]]      # prefixes of others
    secrets += [a + b for a, b in zip(secrets[:40], secrets[40:80])]  # containing others
    chunks = []
    for _ in range(pieces):
        kind = rng.random()
        if kind < 0.3:
            chunks.append(rng.choice(secrets))
        elif kind < 0.5:
            s = rng.choice(secrets)
            chunks.append(s[:rng.randint(1, len(s))])                 # a fragment
        else:
            chunks.append(bytes(rng.choices(b"abcdef0123 \n", k=rng.randint(0, 40))))
    return secrets, b"".join(chunks)


@pytest.mark.skipif(not HAVE_HYPERSCAN, reason="hyperscan is not installed")
@pytest.mark.parametrize("databases", [1, 3])
def test_fast_path_and_fallback_agree_on_random_input_with_many_secrets(monkeypatch, databases):
    from credd import mask
    monkeypatch.setattr(mask, "cpus", lambda: databases)
    monkeypatch.setattr(mask._Hyperscan, "PER_DB", 50)
    monkeypatch.setattr(mask._Hyperscan, "PARALLEL_SCAN", 1 << 10)
    for seed in range(3):
        secrets, text = random_corpus(seed, 400, 3000)
        fast = Masker(secrets, engine="hyperscan")
        assert len(fast.patterns.engine().parts) == databases
        slow = Masker(secrets, engine="find")
        rng = random.Random(seed)
        cuts = [rng.randint(0, len(text)) for _ in range(300)]
        expected = reference(text, secrets)
        assert feed_in_pieces(fast, text, cuts) == expected
        assert feed_in_pieces(slow, text, cuts) == expected
        assert fast.mask(text) == slow.mask(text) == expected


@pytest.mark.parametrize("engine", ["auto", "hyperscan", "find"])
def test_background_compile_gives_the_same_output(engine):
    if engine == "hyperscan" and not HAVE_HYPERSCAN:
        pytest.skip("hyperscan is not installed")
    from credd.mask import Patterns
    secrets, text = random_corpus(11, 300, 1500)
    patterns = Patterns(secrets, engine=engine, background=True)
    maskers = [Masker(patterns) for _ in range(3)]  # made at once, before compiling ends
    cuts = random.Random(1).sample(range(len(text)), 50)
    outputs = [feed_in_pieces(m, text, cuts) for m in maskers]
    assert outputs == [reference(text, secrets)] * 3


def test_background_compile_error_surfaces_on_first_use(monkeypatch):
    from credd import mask

    def broken(patterns, **options):
        raise MemoryError("compiling failed")

    monkeypatch.setitem(mask.ENGINES, "hyperscan", broken)
    patterns = mask.Patterns([b"secret-%d" % i for i in range(20)], engine="hyperscan",
                             background=True)
    masker = Masker(patterns)
    with pytest.raises(MemoryError):
        masker.feed(b"secret-1 and more")


@pytest.mark.skipif(not HAVE_HYPERSCAN, reason="hyperscan is not installed")
def test_secret_with_nul_byte_is_masked_by_hyperscan_too():
    """The binding passes literals as C strings; a NUL byte must not cut one short."""
    secrets = [b"ab\x00cdefgh"] + [b"filler%03dxx" % i for i in range(20)]
    for engine in ("hyperscan", "auto", "find"):
        masker = Masker(secrets, engine=engine)
        assert masker.mask(b"xx ab\x00cdefgh yy filler003xx") == b"xx " + R + b" yy " + R
        assert masker.mask(b"xx abQQQ yy") == b"xx abQQQ yy"


@pytest.mark.parametrize("engine", ENGINES)
def test_secret_with_newline_split_at_the_newline_is_held(engine):
    """Bytes no secret contains end a held tail early ("\n" usually), unless one does."""
    secrets = [b"first-line\nsecond-line"] + [b"other-secret-%02d" % i for i in range(12)]
    masker = Masker(secrets, engine=engine)
    assert masker.feed(b"log: first-line\n") == b"log: "
    assert masker.feed(b"second-line done\n") == R + b" done\n"
    assert masker.feed(b"other-secret-01\n") == R + b"\n"   # nothing held after a newline
    assert masker.feed(b"plain line\n") == b"plain line\n"


def test_values_of_every_kind():
    from credd.mask import as_bytes
    got = as_bytes(["päss", b"p\xc3\xa4ss", bytearray(b"bytes-1"), memoryview(b"bytes-2"), "abc"])
    assert got == [b"bytes-1", b"bytes-2", "päss".encode()]
    assert Masker([bytearray(b"secret-one")]).mask(b"a secret-one b") == b"a " + R + b" b"


def test_redact_stream_writes_each_piece_as_it_arrives():
    """`tail -f log | credd redact`: output must not wait for a full chunk or end of input."""
    import io
    import threading

    from credd.redact import redact_stream, redactor
    r, w = os.pipe()
    src = os.fdopen(r, "rb")
    written = []

    class Sink(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            written.append(bytes(b))
            return len(b)

    masker = redactor(["hunter2-secret-value"])
    t = threading.Thread(target=redact_stream, args=(src, io.BufferedWriter(Sink()), masker))
    t.start()
    try:
        os.write(w, b"line one hunter2-secret-value\n")
        deadline = time.monotonic() + 10
        while not written and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"".join(written) == b"line one " + R + b"\n"
    finally:
        os.close(w)
        t.join(10)
        src.close()
    assert not t.is_alive()


def test_an_empty_stream_does_not_wait_for_compiling(monkeypatch):
    """`credd run -- true` with many secrets: no output, so no waiting for the matcher."""
    import threading

    from credd import mask
    release = threading.Event()

    def slow(patterns, **options):
        release.wait(10)
        return mask._FindLoop(patterns, **options)

    monkeypatch.setitem(mask.ENGINES, "hyperscan", slow)
    patterns = mask.Patterns([b"secret-%d" % i for i in range(20)], engine="hyperscan",
                             background=True)
    try:
        masker = Masker(patterns)
        assert masker.feed(b"") == b"" and masker.flush() == b""
        assert patterns._thread.is_alive()  # still compiling: nothing waited for it
    finally:
        release.set()
    assert Masker(patterns).mask(b"a secret-7 b") == b"a " + R + b" b"


@pytest.mark.parametrize("background", [False, True])
def test_without_hyperscan_auto_falls_back_to_the_find_loop(monkeypatch, background):
    import sys

    from credd import mask
    monkeypatch.setitem(sys.modules, "hyperscan", None)  # `import hyperscan` fails
    secrets, text = random_corpus(3, 60, 400)
    patterns = mask.Patterns(secrets, background=background)
    assert isinstance(patterns.engine(), mask._FindLoop)
    assert feed_in_pieces(Masker(patterns), text, [3, 99, 500]) == reference(text, secrets)


@pytest.mark.parametrize("engine", ENGINES)
def test_locator_names_the_pattern_of_every_occurrence(engine, monkeypatch):
    """What `credd scan` needs: each hit with the index of its pattern in Patterns.values,
    across several databases and for a NUL-byte pattern (matched beside Hyperscan)."""
    from credd import mask
    monkeypatch.setattr(mask, "cpus", lambda: 3)
    monkeypatch.setattr(mask._Hyperscan, "PER_DB", 50)
    monkeypatch.setattr(mask._Hyperscan, "PARALLEL_SCAN", 1 << 10)
    secrets, text = random_corpus(7, 300, 2000)
    secrets.append(b"nul\0secret")
    text += b" nul\0secret nul\0secre"
    patterns = mask.Patterns(secrets, engine=engine)
    values = patterns.values
    expected = set()
    for i, value in enumerate(values):
        at = text.find(value)
        while at >= 0:
            expected.add((at, at + len(value), i))
            at = text.find(value, at + 1)
    hits = patterns.locator()(text)
    assert len(hits) == len(set(hits)) and set(hits) == expected
    assert sorted(values) == sorted(mask.as_bytes(secrets))
    assert mask.Patterns([], engine=engine).locator()(text) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_caseless_patterns_match_in_any_case_and_name_their_pattern(engine):
    from credd.mask import Patterns
    literals = [b"Secret-%02d" % i for i in range(12)]
    patterns = Patterns([*literals, b"deadbeef00"], caseless=[b"DEADbeef00", b"cafe0123ab"],
                        engine=engine)
    assert patterns.values[patterns.caseless:] in ([b"deadbeef00", b"cafe0123ab"],
                                                   [b"cafe0123ab", b"deadbeef00"])
    assert b"deadbeef00" not in patterns.values[:patterns.caseless]  # caseless only
    text = b"DEADBEEF00 deadbeef00 DeadBeef00 CAFE0123AB Secret-03 SECRET-03"
    found = sorted((text[s:e], patterns.values[i]) for s, e, i in patterns.locator()(text))
    assert found == sorted([(b"DEADBEEF00", b"deadbeef00"), (b"deadbeef00", b"deadbeef00"),
                            (b"DeadBeef00", b"deadbeef00"), (b"CAFE0123AB", b"cafe0123ab"),
                            (b"Secret-03", b"Secret-03")])
    assert Masker(patterns).mask(text) == b" ".join([R] * 5) + b" SECRET-03"
