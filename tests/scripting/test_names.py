"""The helpers' entry names: one text, one segment, and back; every name one the vault
keeps as it is; distinct credentials never share a name."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from credd.integrations import docker_helper, git_helper
from credd.integrations.names import fit, label, segment, unsegment
from credd.vault.model import canonical_name, check_label

AWKWARD = st.text(st.sampled_from(" ./%@:~\x00\t\u00a0\u0301e\u1100\u1161\u2126\U0001f511aZ9"),
                  max_size=12)
TEXT = st.one_of(st.text(), AWKWARD, st.text(min_size=200, max_size=600))


def kept_as_is(name: str) -> bool:
    return canonical_name(name) == name


@settings(max_examples=1500, deadline=None)
@given(text=TEXT, also=st.sampled_from(["", "@"]))
def test_segment_is_reversible_and_a_valid_name_part(text, also):
    seg = segment(text, also)
    assert unsegment(seg) == text
    assert "/" not in seg and not (set(also) & set(seg))
    assert kept_as_is(fit(f"p/{seg}", f"p/{seg}"))
    if text:
        assert check_label("service", label(text)) == label(text)


@settings(max_examples=500, deadline=None)
@given(a=TEXT, b=TEXT)
def test_distinct_texts_distinct_segments(a, b):
    assert (segment(a) == segment(b)) == (a == b)


def test_a_hashed_name_never_equals_a_full_one():
    long = "x" * 600
    hashed = fit(f"p/{segment(long)}", f"p/{segment(long)}")
    assert len(hashed) <= 256 and "%~" in hashed and kept_as_is(hashed)
    assert "%~" not in segment("%~") and segment("%~") == "%25~"


git_attrs = st.fixed_dictionaries({"protocol": st.sampled_from(["https", "http", "a@b"]),
                                   "host": AWKWARD, "username": AWKWARD},
                                  optional={"path": AWKWARD})


@settings(max_examples=500, deadline=None)
@given(a=git_attrs, b=git_attrs)
def test_git_names_tell_credentials_apart(a, b):
    key = lambda attrs: tuple(attrs.get(k, "") for k in git_helper.KEYS)  # noqa: E731
    name_a, name_b = git_helper.entry_name(a), git_helper.entry_name(b)
    assert kept_as_is(name_a)
    assert (name_a == name_b) == (key(a) == key(b))


urls = st.one_of(AWKWARD, st.builds("{}://{}".format, st.sampled_from(["https", "http"]), AWKWARD))


@settings(max_examples=500, deadline=None)
@given(a=urls, b=urls)
def test_docker_names_keep_schemes_apart(a, b):
    same = a.strip().rstrip("/") == b.strip().rstrip("/")
    name_a = docker_helper.entry_name(a)
    assert kept_as_is(name_a)
    assert (name_a == docker_helper.entry_name(b)) == same
