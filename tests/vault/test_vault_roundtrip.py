"""Round trips of every type and field kind, names, and the put semantics of protocol.Set."""

from __future__ import annotations

import sys
import unicodedata

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credd.errors import BadRequest, Exists, LockedError, NotFound
from credd.protocol import EntryMeta, Field, Set
from credd.rules import KINDS
from credd.vault import SecretEntry, Vault, canonical_name
from credd.vault.model import (
    HistoryRecord,
    MetaRecord,
    SecretRecord,
    decode_meta,
    encode,
    to_entry_meta,
)
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.vault.conftest import KDF, reopen

_segment = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
                                 blacklist_characters="/"), min_size=1, max_size=12).filter(
    lambda s: s == s.strip() and s not in (".", ".."))
names = st.lists(_segment, min_size=1, max_size=4).map("/".join).filter(
    lambda n: len(canonical_name(n)) <= 256)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One vault for the Hypothesis tests (creating one per example would cost a KDF each)."""
    root = tmp_path_factory.mktemp("v", numbered=True)
    root.chmod(0o700)
    vault, _ = Vault.create(str(root / "d" / "vault.db"), TEST_PASSPHRASE, kdf=KDF)
    yield vault
    vault.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, value=values, notes=st.none() | values,
       fields=st.dictionaries(_segment.map(lambda k: unicodedata.normalize("NFC", k)),
                              st.tuples(values, st.booleans()), max_size=4),
       kind=st.sampled_from(list(KINDS)))
def test_round_trip_any_name_value_and_fields(shared, name, value, notes, fields, kind):
    flds = [Field(name=k, value=v, secret=s) for k, (v, s) in fields.items()]
    meta = shared.put(Set(name=name, kind=kind, value=value, notes=notes, fields=flds))
    canon = canonical_name(name)
    assert meta.name == canon and meta.kind == kind
    assert shared.get(name) == value
    for k, (v, secret) in fields.items():
        assert shared.get(name, k) == v
        assert (k in meta.secret_fields) == secret and (k in meta.fields) == (not secret)
    revealed = shared.reveal(canon)
    assert revealed.value == value and revealed.notes == (notes or "")
    assert revealed.secret_fields == {k: v for k, (v, s) in fields.items() if s}
    assert shared.describe(canon) == meta


def test_every_type_survives_reopen(vault):
    for kind in KINDS:
        vault.put(Set(name=f"types/{kind}", kind=kind, service="svc", tags=["a", "b", "a"],
                      value=kind * 3,
                  fields=[Field(name="endpoint", value="https://x", secret=False),
                          Field(name="secret_key", value="sk-" + kind)],
                  notes="n", rotate_after=86400, expires=2e9))
    vault.put(Set(name="types/empty", value=""))
    again = reopen(vault)
    assert [e.name for e in again.list()] == sorted([f"types/{k}" for k in KINDS] + ["types/empty"])
    for kind in KINDS:
        meta = again.describe(f"types/{kind}")
        assert (meta.kind, meta.service, meta.tags) == (kind, "svc", ("a", "b"))
        assert meta.fields == {"endpoint": "https://x"} and meta.secret_fields == ("secret_key",)
        assert (meta.rotate_after, meta.expires, meta.has_notes) == (86400, 2e9, True)
        assert again.get(f"types/{kind}") == kind * 3
        assert again.get(f"types/{kind}", "secret_key") == "sk-" + kind
    assert again.get("types/empty") == "" and again.describe("types/empty").has_value
    again.close()


@pytest.mark.parametrize("bad", ["", " a", "a ", "a//b", "/a", "a/", "a/./b", "a/../b",
                                 "x" * 257, "a\x00b", "a\nb", "a\u200eb", 7, None])
def test_bad_names_are_refused_with_the_rule(vault, bad):
    with pytest.raises(BadRequest) as exc:
        vault.put(Set(name=bad, value="v"))
    assert exc.value.message and exc.value.message != "v"
    assert vault.entry_count == 0


def test_names_are_nfc():
    assert canonical_name("cafe\u0301") == "caf\u00e9"


def test_modes_create_update_upsert(vault):
    vault.put(Set(name="m", value="1", mode="create"))
    with pytest.raises(Exists):
        vault.put(Set(name="m", value="2", mode="create"))
    with pytest.raises(NotFound):
        vault.put(Set(name="other", value="2", mode="update"))
    assert vault.put(Set(name="m", value="3", mode="update")).version == 2
    assert vault.get("m") == "3"


def test_merge_keeps_unset_and_replace_resets(vault):
    vault.put(Set(name="s3", kind="api_key", service="aws", tags=["prod"], value="v1",
              fields=[Field(name="access_key", value="AK", secret=False),
                      Field(name="secret_key", value="SK"),
                      Field(name="bucket", value="b", secret=False)], rotate_after=10))
    meta = vault.put(Set(name="s3", merge=True,
                         fields=[Field(name="bucket", value="b2", secret=False)],
                     remove_fields=["access_key"], rotate_after=0))
    assert (meta.kind, meta.service, meta.tags) == ("api_key", "aws", ("prod",))
    assert meta.fields == {"bucket": "b2"} and meta.secret_fields == ("secret_key",)
    assert meta.rotate_after is None and vault.get("s3") == "v1"
    with pytest.raises(NotFound):
        vault.put(Set(name="s3", merge=True, remove_fields=["nope"]))
    meta = vault.put(Set(name="s3", value="v2"))
    assert (meta.kind, meta.service, meta.fields, meta.secret_fields) == ("secret", "", {}, ())
    assert meta.version == 3 and meta.created == vault.history("s3")[1][-1].updated


def test_get_missing_value_field_and_entry(vault):
    vault.put(Set(name="f", fields=[Field(name="token", value="t")]))
    with pytest.raises(NotFound, match="no value"):
        vault.get("f")
    with pytest.raises(NotFound, match="no field"):
        vault.get("f", "other")
    with pytest.raises(NotFound):
        vault.get("missing")


@pytest.mark.parametrize("kwargs", [
    {"kind": "Bad Kind"}, {"tags": "prod"}, {"tags": [""]}, {"value": 5},
    {"fields": [Field(name="a", value="1"), Field(name="a", value="2")]},
    {"rotate_after": -1}, {"expires": float("nan")}, {"mode": "nope"}, {"value": "\ud800"},
])
def test_bad_put_arguments_lose_nothing(vault, kwargs):
    vault.put(Set(name="keep", value="original"))
    with pytest.raises(BadRequest):
        vault.put(Set(name="keep", **kwargs))
    assert vault.get("keep") == "original" and vault.describe("keep").version == 1


def test_locked_vault_refuses_everything_and_forgets(vault):
    vault.put(Set(name="x", value=SENTINEL))
    vault.lock()
    assert not vault.unlocked
    for call in (vault.list, vault.trash, lambda: vault.get("x"), lambda: vault.put(Set(name="y")),
                 lambda: vault.describe("x"), lambda: vault.audit_key):
        with pytest.raises(LockedError):
            call()
    assert vault.session is None


def test_secret_reprs_are_redacted(vault):
    vault.put(Set(name="r", value=SENTINEL, notes=SENTINEL,
                  fields=[Field(name="f", value=SENTINEL)]))
    revealed = vault.reveal("r")
    assert isinstance(revealed, SecretEntry)
    for text in (repr(revealed), str(revealed), repr(list(revealed.__rich_repr__())),
                 repr(vault), repr(vault.describe("r"))):
        assert SENTINEL not in text
    record = SecretRecord(value=SENTINEL, fields={"f": SENTINEL}, notes=SENTINEL)
    history = HistoryRecord(meta=MetaRecord(name="r"), secret=record, replaced=0.0)
    for obj in (record, history):
        for text in (repr(obj), str(obj), repr(list(obj.__rich_repr__()))):
            assert SENTINEL not in text


def test_meta_record_and_entry_meta_share_field_order():
    """to_entry_meta builds the wire record positionally from the disk record."""
    wire_only = ("mount", "last_used")  # filled in by the agent: wire fields, never in the vault
    assert MetaRecord.__struct_fields__ + wire_only == EntryMeta.__struct_fields__
    record = MetaRecord(name="a", kind="api_key", service="s", tags=("t",), fields={"f": "1"},
                        secret_fields=("k",), has_value=True, has_notes=True, created=1.0,
                        updated=2.0, version=3, rotate_after=4.0, expires=5.0, deleted=6.0)
    wire = to_entry_meta(record)
    assert wire == EntryMeta(name="a", kind="api_key", service="s", tags=("t",),
                             fields={"f": "1"}, secret_fields=("k",), has_value=True,
                             has_notes=True, created=1.0, updated=2.0, version=3,
                             rotate_after=4.0, expires=5.0, deleted=6.0)
    wire.fields["g"] = "2"
    assert record.fields == {"f": "1"}  # the one mutable container is not shared


def test_old_list_encoded_records_decode_into_tuples():
    """Name lists were `list` fields: same msgpack arrays, so old bytes still decode."""
    class OldMeta(msgspec.Struct, array_like=True, kw_only=True, omit_defaults=True):
        name: str
        kind: str = "secret"
        service: str = ""
        tags: list[str] = []
        fields: dict[str, str] = {}
        secret_fields: list[str] = []

    old = msgspec.msgpack.encode(OldMeta(name="n", tags=["a", "b"], secret_fields=["s"]))
    record = decode_meta(old)
    assert (record.tags, record.secret_fields, record.version) == (("a", "b"), ("s",), 1)
    assert decode_meta(encode(record)) == record
    assert msgspec.msgpack.encode(("a", "b")) == msgspec.msgpack.encode(["a", "b"])


def test_every_refused_name_character_is_unprintable():
    """`_bad_chars` skips its per-character scan for printable text: this is why it may."""
    refused = ("Cc", "Cf", "Cs", "Zl", "Zp")
    assert not [hex(cp) for cp in range(sys.maxunicode + 1)
                if unicodedata.category(chr(cp)) in refused and chr(cp).isprintable()]


def test_field_names_are_found_in_any_normalization(vault):
    """Field names are stored NFC; a caller's other form of the same name still finds them."""
    vault.put(Set(name="n", fields=[Field(name="\uf900", value="public"),
                           Field(name="cafe\u0301", value="hidden", secret=True)]))
    assert vault.get("n", "\uf900") == vault.get("n", "\u8c48") == "public"
    assert vault.get("n", "cafe\u0301") == vault.get("n", "caf\u00e9") == "hidden"


def test_put_many_and_delete_many_are_one_transaction_each_all_or_none(vault):
    vault.put_many([Set(name="m/a", value="1"), Set(name="m/b", value="2")])
    with pytest.raises(Exists):
        vault.put_many([Set(name="m/c", value="3"), Set(name="m/a", value="x", mode="create")])
    assert [e.name for e in vault.list()] == ["m/a", "m/b"]
    with pytest.raises(NotFound):
        vault.delete_many(["m/a", "m/missing"])
    assert [e.name for e in vault.list()] == ["m/a", "m/b"] and vault.trash() == []
    deleted = vault.delete_many(["m/a", "m/b"])
    assert [e.deleted is not None for e in deleted] == [True, True]
    assert vault.list() == [] and [e.name for e in vault.trash()] == ["m/a", "m/b"]
    vault.undelete("m/b")  # a trashed entry comes back whole
    assert vault.get("m/b") == "2"
