"""History, restore, trash, undelete, purge (with scrubbing), move."""

from __future__ import annotations

import pytest

from credd.errors import BadRequest, Exists, NotFound
from credd.protocol import Set
from credd.vault import HISTORY_KEEP
from tests.conftest import SENTINEL
from tests.vault.conftest import file_bytes, raw, reopen


def test_history_keeps_at_least_twenty_versions_and_restores(vault):
    for i in range(1, 31):
        vault.put(Set(name="h", value=f"v{i}"))
    current, versions = vault.history("h")
    assert current == 30 and HISTORY_KEEP >= 20
    assert [v.version for v in versions] == list(range(29, 29 - HISTORY_KEEP, -1))
    assert all(v.replaced and v.replaced >= v.updated for v in versions)
    assert vault.reveal("h", 15).value == "v15"
    with pytest.raises(NotFound):
        vault.reveal("h", 3)  # pruned
    meta = vault.restore("h", 12)
    assert meta.version == 31 and vault.get("h") == "v12"
    assert vault.history("h")[1][0].version == 30
    with pytest.raises(BadRequest):
        vault.restore("h", 31)
    db = raw(vault.path)
    assert db.execute("SELECT count(*) FROM history").fetchone()[0] == HISTORY_KEEP
    db.close()
    assert vault.check() == []


def test_restore_brings_back_metadata_and_fields(vault):
    vault.put(Set(name="x", kind="password", service="old", value="1"))
    vault.put(Set(name="x", kind="api_key", service="new", value="2"))
    meta = vault.restore("x", 1)
    assert (meta.kind, meta.service) == ("password", "old") and vault.get("x") == "1"


def test_trash_undelete_and_purge(vault):
    vault.put(Set(name="t", value=SENTINEL))
    vault.put(Set(name="t", value=SENTINEL + "-2"))
    deleted = vault.delete("t")
    assert deleted.deleted and vault.list() == [] and [e.name for e in vault.trash()] == ["t"]
    assert vault.entry_count == 0
    with pytest.raises(NotFound, match="trash"):
        vault.get("t")
    with pytest.raises(NotFound):
        vault.delete("t")
    assert vault.undelete("t").deleted is None and vault.get("t") == SENTINEL + "-2"
    with pytest.raises(NotFound, match="not in the trash"):
        vault.purge("t")
    vault.delete("t")
    vault.purge("t")
    assert vault.trash() == [] and vault.list() == []
    with pytest.raises(NotFound):
        vault.undelete("t")
    db = raw(vault.path)
    assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM history").fetchone()[0] == 0
    db.close()
    again = reopen(vault)
    assert again.trash() == [] and again.check() == []
    again.close()


def test_purge_scrubs_the_ciphertext_from_file_and_wal(vault):
    vault.put(Set(name="keep", value="k"))
    vault.put(Set(name="p", value="1"))
    vault.put(Set(name="p", value="2"))
    db = raw(vault.path)
    blobs = [r[0] for r in db.execute("SELECT secret FROM entries")]
    blobs += [r[0] for r in db.execute("SELECT blob FROM history")]
    db.close()
    vault.delete("p")
    vault.purge("p")
    data = file_bytes(vault.path)
    gone = [b for b in blobs if b[:24] not in data]
    assert len(gone) == len(blobs) - 1  # only "keep"'s row remains


def test_put_on_a_trashed_name_revives_it_with_history(vault):
    vault.put(Set(name="n", value="1"))
    vault.delete("n")
    meta = vault.put(Set(name="n", value="2", mode="create"))
    assert meta.version == 2 and meta.deleted is None and vault.reveal("n", 1).value == "1"


def test_move_carries_history(vault):
    vault.put(Set(name="a", value="1"))
    vault.put(Set(name="a", value="2"))
    vault.put(Set(name="b", value="b"))
    with pytest.raises(Exists):
        vault.move("a", "b")
    meta = vault.move("a", "c/d")
    assert meta.name == "c/d" and [e.name for e in vault.list()] == ["b", "c/d"]
    assert vault.reveal("c/d", 1).value == "1" and vault.reveal("c/d", 1).meta.name == "c/d"
    with pytest.raises(NotFound):
        vault.get("a")
    again = reopen(vault)
    assert again.get("c/d") == "2" and again.check() == []
    again.close()
