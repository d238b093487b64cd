"""A staged value beside the current one, and when the value last changed."""

from __future__ import annotations

import time

import msgspec
import pytest

from credd.errors import Conflict, NotFound
from credd.protocol import Field, Set
from credd.vault.model import MetaRecord, SecretRecord, decode_meta, encode
from tests.conftest import SENTINEL
from tests.vault.conftest import file_bytes, reopen


def test_staged_values_stay_beside_the_current_one(vault):
    vault.put(Set(name="k", value="old-value"))
    staged = vault.stage("k", SENTINEL)
    assert staged.pending is not None and staged.version == 1
    assert vault.get("k") == "old-value" and vault.reveal("k").value == "old-value"
    assert vault.pending("k") == SENTINEL
    with pytest.raises(Conflict):
        vault.stage("k", "another")
    edited = vault.put(Set(name="k", tags=["x"], merge=True))
    assert edited.pending == staged.pending and vault.pending("k") == SENTINEL
    replaced = vault.put(Set(name="k", value="typed-by-hand"))  # a whole replace keeps it too
    assert replaced.pending == staged.pending
    for version in vault.history("k")[1]:
        record = vault.reveal("k", version.version)
        assert record.meta.pending is None  # history holds versions, not the staged value


def test_finish_makes_it_current_once(vault):
    vault.put(Set(name="k", value="old-value"))
    vault.stage("k", "new-value")
    with pytest.raises(Conflict):
        vault.finish(Set(name="k", value="not-what-was-staged"))
    done = vault.finish(Set(name="k", value="new-value", fields=[Field(name="f", value="v",
                                                                       secret=False)]))
    assert done.pending is None and done.version == 2 and done.fields == {"f": "v"}
    assert vault.get("k") == "new-value" and vault.reveal("k", 1).value == "old-value"
    assert done.value_changed == done.updated
    with pytest.raises(NotFound):
        vault.pending("k")
    with pytest.raises(Conflict):
        vault.finish(Set(name="k", value="new-value"))


def test_abandon_and_restore_keep_the_staged_value_apart(vault):
    vault.put(Set(name="k", value="v1"))
    vault.put(Set(name="k", value="v2"))
    vault.stage("k", "v3")
    restored = vault.restore("k", 1)
    assert vault.get("k") == "v1" and restored.pending is not None and vault.pending("k") == "v3"
    dropped = vault.abandon("k")
    assert dropped.pending is None and dropped.version == restored.version
    with pytest.raises(NotFound):
        vault.abandon("k")


def test_a_staged_value_is_sealed_and_survives_a_reopen(vault):
    vault.put(Set(name="k", value="old-value"))
    vault.stage("k", SENTINEL)
    assert SENTINEL.encode() not in file_bytes(vault.path)
    vault = reopen(vault)
    assert vault.pending("k") == SENTINEL and vault.get("k") == "old-value"
    assert vault.check() == []


def test_value_changed_follows_the_secret_not_the_metadata(vault):
    first = vault.put(Set(name="k", value="a", fields=[Field(name="p", value="s")]))
    assert first.value_changed == first.updated
    time.sleep(0.01)
    tagged = vault.put(Set(name="k", tags=["t"], merge=True))
    assert tagged.value_changed == first.value_changed < tagged.updated
    assert vault.put(Set(name="k", notes="n", merge=True)).value_changed == first.value_changed
    moved = vault.move("k", "k2")
    assert moved.value_changed == first.value_changed
    field = vault.put(Set(name="k2", fields=[Field(name="p", value="t")], merge=True))
    assert field.value_changed == field.updated > first.value_changed


def test_records_written_before_the_field_decode_and_fall_back():
    class Before(msgspec.Struct, array_like=True, kw_only=True, omit_defaults=True):
        name: str
        kind: str = "secret"
        service: str = ""
        tags: tuple[str, ...] = ()
        fields: dict[str, str] = {}
        secret_fields: tuple[str, ...] = ()
        has_value: bool = False
        has_notes: bool = False
        created: float = 0.0
        updated: float = 0.0
        version: int = 1
        rotate_after: float | None = None
        expires: float | None = None
        deleted: float | None = None

    old = decode_meta(encode(Before(name="x", updated=5.0, version=3)))
    assert (old.value_changed, old.pending, old.updated) == (0.0, None, 5.0)
    assert msgspec.msgpack.decode(encode(SecretRecord(value="v")), type=SecretRecord).pending \
        is None
    assert MetaRecord(name="x").value_changed == 0.0
