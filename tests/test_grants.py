"""credd.grants: validation, patterns, narrowing and the policy a bound connection gets."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credd import protocol as p
from credd.errors import BadRequest
from credd.grants import (
    DEFAULT_TTL,
    MAX_TTL,
    OWNER_POLICY,
    Policy,
    ended,
    make_grant,
    narrowing,
    pattern_within,
    spent,
)

NOW = 1_700_000_000.0


def grant(names=("stripe/*",), mode="use", **kw):
    return make_grant(list(names), mode, kw.pop("ttl", 3600.0), now=kw.pop("now", NOW), **kw)


class TestMake:
    def test_defaults(self):
        g = make_grant(["github/token"], "read", now=NOW)
        assert g.id.startswith("g_") and len(g.id) == 12
        assert g.expires == NOW + DEFAULT_TTL and g.uses is None and not g.confirm

    def test_ids_differ(self):
        assert len({grant().id for _ in range(50)}) == 50

    @pytest.mark.parametrize("kwargs, words", [
        ({"names": []}, "--names"),
        ({"names": ["/a"]}, "empty segment"),
        ({"names": ["a//b"]}, "empty segment"),
        ({"names": [" a"]}, "surrounding space"),
        ({"names": ["a\x00b"]}, "control"),
        ({"mode": "admin"}, "mode"),
        ({"ttl": 0}, "30 days"),
        ({"ttl": MAX_TTL + 1}, "30 days"),
        ({"ttl": float("nan")}, "30 days"),
        ({"uses": 0}, "--uses"),
        ({"commands": ["'unclosed"]}, "command pattern"),
        ({"commands": ["** git"]}, "may only end"),
        ({"uid": 65534, "mode": "use"}, "must pin its commands"),
        ({"uid": 65534, "commands": ["git push"]}, "absolute path"),
        ({"uid": 1000, "owner_uid": 1000, "commands": ["/bin/true"]}, "another user"),
    ])
    def test_refused(self, kwargs, words):
        names = kwargs.pop("names", ["stripe/*"])
        mode = kwargs.pop("mode", "use")
        ttl = kwargs.pop("ttl", 60.0)
        with pytest.raises(BadRequest, match=words):
            make_grant(names, mode, ttl, **kwargs)

    def test_sandbox_with_pinned_commands(self):
        g = grant(uid=65534, commands=["/usr/bin/git push **"], owner_uid=0)
        assert g.uid == 65534 and g.commands == ("/usr/bin/git push **",)

    def test_record_roundtrips_on_the_wire(self):
        g = grant(uses=3, commands=["/bin/true"], confirm=True, label="ci")
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(g), type=p.Grant) == g


class TestPatterns:
    @pytest.mark.parametrize("name, covered", [
        ("stripe/key", True), ("stripe/live/key", True), ("stripe", False),
        ("stripex/key", False), ("github/token", True), ("github/token2", False),
        ("Stripe/key", False),
    ])
    def test_covers(self, name, covered):
        policy = Policy([grant(["stripe/*", "github/token"])])
        assert policy.covers(name) is covered

    def test_nfc(self):
        policy = Policy([grant(["caf\u00e9/*"])])
        assert policy.covers("cafe\u0301/key")  # the store reads it as NFC

    def test_star_is_the_only_wildcard(self):
        policy = Policy([grant(["a?c/[x]"])])
        assert policy.covers("a?c/[x]") and not policy.covers("abc/x")

    @pytest.mark.parametrize("inner, outer, within", [
        ("stripe/key", "stripe/*", True), ("stripe/live/*", "stripe/*", True),
        ("stripe/*", "stripe/live/*", False), ("*", "stripe/*", False),
        ("a*b*c", "a*c", True), ("a*c", "a*b*c", False), ("x", "x", True), ("x*", "x", False),
        ("*/prod/*", "*", True),
    ])
    def test_within(self, inner, outer, within):
        assert pattern_within(inner, outer) is within

    @settings(max_examples=300, deadline=None)
    @given(st.text("ab*/", min_size=1, max_size=6), st.text("ab*/", min_size=1, max_size=6),
           st.text("ab/", max_size=6))
    def test_within_is_sound(self, inner, outer, name):
        """Never a widening: when inner is said to be within outer, every name inner
        covers, outer covers."""
        def covers(pattern: str) -> bool:
            raw = p.Grant(id="g_x", names=(pattern,), mode="read", created=0, expires=1)
            return Policy([raw]).covers(name)
        if pattern_within(inner, outer) and covers(inner):
            assert covers(outer)


class TestCommands:
    @pytest.mark.parametrize("argv, ok", [
        (["git", "push"], True), (["git", "push", "origin", "main"], True),
        (["git", "pull"], False), (["git"], False), (["make", "test"], True),
        (["make", "test", "x"], False), (["make", "test-all"], False),
    ])
    def test_permits(self, argv, ok):
        policy = Policy([grant(commands=["git push **", "make test"])])
        assert policy.permits(argv) is ok

    def test_no_pins_any_command(self):
        assert Policy([grant()]).permits(["anything", "at", "all"])

    def test_word_globs(self):
        assert Policy([grant(commands=["terraform plan -var-file=*.tfvars"])]).permits(
            ["terraform", "plan", "-var-file=prod.tfvars"])


class TestNarrowing:
    def test_narrower_is_fine(self):
        outer = grant(["stripe/*"], "read", uses=5, commands=["git **"])
        inner = grant(["stripe/live/*"], "use", uses=2, commands=["git push **"], ttl=60)
        assert narrowing([outer], inner) == ""

    @pytest.mark.parametrize("changes, words", [
        ({"names": ["*"]}, "not within"),
        ({"mode": "write"}, "mode write"),
        ({"ttl": 7200}, "outlive"),
        ({"uses": None}, "uses are left"),
        ({"uses": 6}, "uses are left"),
        ({"commands": []}, "pinned"),
        ({"commands": ["git **", "rm **"]}, "not within"),
        ({"confirm": False}, "confirmation"),
        ({"inject": True}, "--inject"),
    ])
    def test_widening_refused(self, changes, words):
        outer = grant(["stripe/*"], "read", uses=5, commands=["git **"], confirm=True)
        inner = {"names": ["stripe/a"], "mode": "read", "uses": 5, "commands": ["git push"],
                 "confirm": True, "ttl": 60}
        inner.update(changes)
        names, mode = inner.pop("names"), inner.pop("mode")
        assert words in narrowing([outer], grant(names, mode, **inner))

    def test_every_outer_counts(self):
        wide, narrow = grant(["*"], "read"), grant(["a/*"], "read")
        assert f"widen grant `{narrow.id}`" in narrowing([wide, narrow], grant(["b/x"], "read"))


class TestPolicy:
    def test_owner_allows_everything(self):
        assert OWNER_POLICY.owner and OWNER_POLICY.mode == "owner"
        assert all(OWNER_POLICY.allows(cls) for cls in p.REPLY)
        assert OWNER_POLICY.covers("anything")

    @pytest.mark.parametrize("mode, allowed, refused", [
        ("use", [p.Describe, p.List, "run"], [p.Get, p.GetMany, p.Reveal, p.Set]),
        ("read", [p.Get, p.GetMany, p.Reveal, "run"], [p.Set, p.Delete]),
        ("write", [p.Set, p.Delete, p.Move, p.Purge], [p.Rekey]),
    ])
    def test_modes(self, mode, allowed, refused):
        policy = Policy([grant(mode=mode)])
        assert all(policy.allows(r) for r in allowed)
        assert not any(policy.allows(r) for r in refused)

    @pytest.mark.parametrize("request_type", [
        p.Init, p.Unlock, p.Lock, p.ChangePassphrase, p.AddKeySlot, p.RemoveKeySlot, p.Audit,
        p.Check, p.Rekey, p.Subscribe, p.Stop])
    def test_owner_only_even_for_write(self, request_type):
        policy = Policy([grant(mode="write")])
        assert not policy.allows(request_type)
        assert "only the owner" in policy.refusal(request_type)

    def test_use_refusal_says_what_to_do(self):
        assert "credd run" in Policy([grant()]).refusal(p.Get)

    def test_mode_is_the_lowest(self):
        assert Policy([grant(mode="write"), grant(mode="use")]).mode == "use"

    def test_select_keeps_order_and_coverage(self):
        names = ["a", "b/1", "github/token", "github/token2", "stripe", "stripe/k", "stripe/z/x",
                 "zz"]
        entries = [p.EntryMeta(name=n) for n in names]
        policy = Policy([grant(["stripe/*", "github/token", "b*"])])
        assert [m.name for m in policy.select(entries)] == [
            "b/1", "github/token", "stripe/k", "stripe/z/x"]
        assert [m.name for m in Policy([grant(["*z*"])]).select(entries)] == ["stripe/z/x", "zz"]

    def test_select_within_every_grant(self):
        entries = [p.EntryMeta(name=n) for n in ["a/1", "a/2", "b/1"]]
        policy = Policy([grant(["a/*", "b/*"]), grant(["*1"])])
        assert [m.name for m in policy.select(entries)] == ["a/1", "b/1"]


class TestLife:
    def test_alive(self):
        g = grant(ttl=10)
        assert ended(g, NOW + 9) == "" and "expired" in ended(g, NOW + 10)
        assert "revoked" in ended(msgspec.structs.replace(g, revoked=NOW), NOW)

    def test_spent(self):
        g = grant(uses=2)
        assert not spent(msgspec.structs.replace(g, used=1))
        assert spent(msgspec.structs.replace(g, used=2)) and not spent(grant())
