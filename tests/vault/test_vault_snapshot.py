"""The metadata snapshot: sealed at lock, used by the next unlock only when it is exactly
the file's, dropped by every write; anything else falls back to the row-by-row unlock."""

from __future__ import annotations

import msgspec
import pytest

from credd.protocol import Field
from credd.vault import Vault, VaultIntegrityError
from credd.vault.snapshot import RowsHash
from credd.vault.vault import EntryView
from tests.conftest import TEST_PASSPHRASE
from tests.vault.conftest import raw, reopen
from credd.protocol import Set

pytestmark = pytest.mark.timeout(60)


def _fill(vault: Vault) -> None:
    vault.put(Set(name="b/two", value="2", kind="password", service="svc", tags=["x", "y"],
              fields=[Field(name="user", value="bob", secret=False), Field(name="pin", value="9")],
              notes="n", rotate_after=3600, expires=4_000_000_000))
    vault.put(Set(name="a/one", value="1"))
    vault.put(Set(name="a/one", value="1b"))  # a history version
    vault.put(Set(name="c/gone", value="3"))
    vault.delete("c/gone")          # in the trash
    vault.put(Set(name="é/unicode", value="4"))


def _view(vault: Vault) -> tuple:
    """Everything the metadata cache answers, as plain data (every field: to_builtins would
    leave out a value that is the field's default object but keep an equal copy of it)."""
    entries = [list(map(msgspec.structs.asdict, got)) for got in (vault.list(), vault.trash())]
    history = [vault.history(e.name) for e in vault.list()]
    return entries, msgspec.to_builtins(history), [vault.get(e.name) for e in vault.list()]


def _snapshots(path: str) -> list[tuple]:
    db = raw(path)
    try:
        return db.execute("SELECT generation, blob FROM snapshot").fetchall()
    finally:
        db.close()


def _set_snapshot(path: str, generation: int, blob: bytes) -> None:
    db = raw(path)
    db.execute("INSERT OR REPLACE INTO snapshot (id, generation, blob) VALUES (1, ?, ?)",
               (generation, blob))
    db.close()


def _drop_snapshot(path: str) -> None:
    db = raw(path)
    db.execute("DELETE FROM snapshot")
    db.close()


def test_lock_seals_a_snapshot_and_the_next_unlock_answers_the_same_from_it(vault):
    _fill(vault)
    rows_view = _view(vault)
    assert not vault.from_snapshot  # it was written to, not unlocked from a snapshot
    again = reopen(vault)
    assert again.from_snapshot and len(_snapshots(again.path)) == 1
    assert _view(again) == rows_view
    assert again.describe("b/two").fields == {"user": "bob"}
    assert again.get("b/two", "pin") == "9" and again.entry_count == 3
    again.put(Set(name="d/new", value="5"))  # the records made from the snapshot write like any other
    again.restore("a/one", 1)
    assert again.get("a/one") == "1" and again.get("d/new") == "5"
    after = _view(again)
    third = reopen(again)
    assert third.from_snapshot and _view(third) == after
    _drop_snapshot(third.path)
    fourth = reopen(third)
    assert not fourth.from_snapshot and _view(fourth) == after
    fourth.close()


WRITES = {
    "put": lambda v: v.put(Set(name="a/one", value="new")),
    "delete": lambda v: v.delete("a/one"),
    "undelete": lambda v: v.undelete("c/gone"),
    "purge": lambda v: v.purge("c/gone"),
    "move": lambda v: v.move("a/one", "z/one"),
    "restore": lambda v: v.restore("a/one", 1),
    "passwd": lambda v: v.change_passphrase(TEST_PASSPHRASE, TEST_PASSPHRASE),
    "add key slot": lambda v: v.add_key_slot(b"k" * 32),
}


@pytest.mark.parametrize("write", WRITES)
def test_every_write_drops_the_snapshot_in_its_own_transaction(vault, write):
    _fill(vault)
    again = reopen(vault)
    assert len(_snapshots(again.path)) == 1
    WRITES[write](again)
    assert _snapshots(again.path) == [] and not again.from_snapshot
    expected = _view(again)
    again.close()
    assert len(_snapshots(again.path)) == 1  # and the lock seals the new state
    third = Vault.open(again.path, state_dir=again.state_dir)
    third.unlock(TEST_PASSPHRASE)
    assert third.from_snapshot and _view(third) == expected
    third.close()


def test_a_lock_without_changes_keeps_the_snapshot_as_it_is(vault):
    _fill(vault)
    again = reopen(vault)
    before = _snapshots(again.path)
    again.lock()
    again.unlock(TEST_PASSPHRASE)
    assert again.from_snapshot and _snapshots(again.path) == before
    again.close()


def test_a_damaged_snapshot_is_ignored_and_replaced(vault):
    _fill(vault)
    expected = _view(vault)
    vault.close()
    ((generation, blob),) = _snapshots(vault.path)
    _set_snapshot(vault.path, generation, blob[:40] + bytes([blob[40] ^ 1]) + blob[41:])
    again = Vault.open(vault.path, state_dir=vault.state_dir)
    again.unlock(TEST_PASSPHRASE)
    assert not again.from_snapshot and _view(again) == expected and again.check() == []
    third = reopen(again)
    assert third.from_snapshot and _view(third) == expected
    third.close()


def test_a_snapshot_of_another_generation_is_ignored(vault):
    _fill(vault)
    first = reopen(vault)
    (old,) = _snapshots(first.path)
    first.put(Set(name="a/one", value="changed"))
    expected = _view(first)
    first.close()
    (current,) = _snapshots(first.path)
    assert current[0] > old[0]
    for generation in (old[0], current[0]):  # stale, or stale relabelled as current
        _set_snapshot(first.path, generation, old[1])
        v = Vault.open(first.path, state_dir=first.state_dir)
        v.unlock(TEST_PASSPHRASE)
        assert not v.from_snapshot and _view(v) == expected
        v.close()


@pytest.mark.parametrize("when", ["while locked", "while unlocked"])
def test_a_changed_meta_column_is_never_covered_by_a_snapshot(vault, when):
    _fill(vault)
    if when == "while locked":
        vault.close()
    db = raw(vault.path)
    row_id, meta = db.execute("SELECT id, meta FROM entries ORDER BY rev LIMIT 1").fetchone()
    db.execute("UPDATE entries SET meta = ? WHERE id = ?",
               (meta[:20] + bytes([meta[20] ^ 1]) + meta[21:], row_id))
    db.close()
    vault.close()  # while unlocked: the lock must not seal the changed column
    again = Vault.open(vault.path, state_dir=vault.state_dir)
    again.unlock(TEST_PASSPHRASE)
    assert not again.from_snapshot
    with pytest.raises(VaultIntegrityError):
        again.list()
    assert any(row_id.hex() in problem for problem in again.check())
    again.close()


def _rows_hash(*chunks: tuple) -> bytes:
    rows_hash, row = RowsHash(), 0
    for blobs in chunks:
        revs = tuple(range(row, row + len(blobs)))
        rows_hash.update(tuple(b"%016d" % rev for rev in revs), revs, blobs)
        row += len(blobs)
    return rows_hash.digest()


def test_the_rows_hash_sees_moved_bytes_and_order_but_not_chunking():
    assert _rows_hash((b"ab", b"c")) != _rows_hash((b"a", b"bc"))
    assert _rows_hash((b"ab", b"c")) != _rows_hash((b"c", b"ab"))
    assert _rows_hash((b"ab", b"c")) != _rows_hash((b"ab", b"c", b""))
    assert _rows_hash((b"ab", b"c", b"d")) == _rows_hash((b"ab",), (b"c", b"d"))
    one, other = RowsHash(), RowsHash()
    one.update((b"i" * 16, b"j" * 16), (1, 2), (b"m", b"n"))
    other.update((b"j" * 16, b"i" * 16), (2, 1), (b"m", b"n"))  # rows swapped, columns kept
    assert one.digest() != other.digest()


@pytest.mark.parametrize("revs", ["different", "equal"])
def test_rows_swapped_around_their_meta_columns_are_not_covered(vault, revs):
    """(id, rev, secret) of two rows swapped, their meta columns left where they were:
    the set digest and the meta columns in file order are unchanged, the rows are not.
    After a rekey every row has the same rev, so only the ids can tell."""
    vault.put(Set(name="alpha", value="A"))
    vault.put(Set(name="beta", value="B"))
    if revs == "equal":
        vault.rekey()
        vault = reopen(vault)  # row by row after a rekey; this lock seals
    vault.close()
    assert len(_snapshots(vault.path)) == 1
    db = raw(vault.path)
    (a_id, a_rev, a_secret), (b_id, b_rev, b_secret) = db.execute(
        "SELECT id, rev, secret FROM entries ORDER BY rowid").fetchall()
    db.execute("UPDATE entries SET id = ?, rev = 0, secret = x'' WHERE id = ?", (b"t" * 16, a_id))
    db.execute("UPDATE entries SET id = ?, rev = ?, secret = ? WHERE id = ?",
               (a_id, a_rev, a_secret, b_id))
    db.execute("UPDATE entries SET id = ?, rev = ?, secret = ? WHERE id = ?",
               (b_id, b_rev, b_secret, b"t" * 16))
    db.close()
    again = Vault.open(vault.path, state_dir=vault.state_dir)
    again.unlock(TEST_PASSPHRASE)
    assert not again.from_snapshot
    with pytest.raises(VaultIntegrityError):
        again.list()
    again.close()


def test_lock_drops_the_keys_even_when_sealing_is_interrupted(vault, monkeypatch):
    from credd.vault import snapshot

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    vault.put(Set(name="a", value="1"))
    keys = vault._keys
    monkeypatch.setattr(snapshot, "seal", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vault.lock()
    assert not vault.unlocked and not any(keys.dek) and _snapshots(vault.path) == []


def test_an_edit_to_a_returned_record_never_reaches_the_file(vault):
    names = ("b", "c", "d", "e")
    for name in names:
        vault.put(Set(name=name, value="1", fields=[Field(name="user", value=name, secret=False)]))
    vault.delete("d")
    again = reopen(vault)
    assert again.from_snapshot
    returned = [again.describe("b"), again.list()[0], again.put(Set(name="c", value="2", merge=True)),
                *again.trash(), again.move("e", "e")]
    for record in returned:
        record.fields["user"] = "mallory"
    again.undelete("d").fields["user"] = "mallory"  # after the trash edit: it starts from it
    for name in names:  # writes that start from the cached records
        again.put(Set(name=name, value="3", merge=True))
    third = reopen(again)
    assert [third.get(name, "user") for name in names] == list(names)
    third.close()


def test_a_write_that_fails_keeps_the_snapshot(vault):
    from credd.errors import Exists
    _fill(vault)
    again = reopen(vault)
    before = _snapshots(again.path)
    with pytest.raises(Exists):
        again.put(Set(name="a/one", value="x", mode="create"))
    assert again.from_snapshot and _snapshots(again.path) == before
    again.close()


def test_rekey_drops_the_snapshot_and_the_next_unlock_goes_row_by_row(vault):
    _fill(vault)
    again = reopen(vault)
    expected = _view(again)
    again.rekey()
    assert _snapshots(again.path) == [] and not again.from_snapshot
    again.close()
    assert _snapshots(again.path) == []  # the new meta columns never authenticated here
    third = Vault.open(again.path, state_dir=again.state_dir)
    third.unlock(TEST_PASSPHRASE)
    assert not third.from_snapshot and _view(third) == expected
    fourth = reopen(third)
    assert fourth.from_snapshot and _view(fourth) == expected
    fourth.close()


def test_a_vault_changed_by_another_process_is_not_sealed(vault):
    _fill(vault)
    vault.close()
    _drop_snapshot(vault.path)
    first = Vault.open(vault.path, state_dir=vault.state_dir)
    first.unlock(TEST_PASSPHRASE)  # row by row: it has a snapshot to seal at lock
    other = Vault.open(vault.path, state_dir=vault.state_dir)
    other.unlock(TEST_PASSPHRASE)
    other.put(Set(name="from/other", value="o"))
    other.lock()  # seals the file as it now is
    (sealed,) = _snapshots(vault.path)
    _drop_snapshot(vault.path)
    first.close()  # its generation is behind the file's: nothing sealed over other's write
    assert _snapshots(vault.path) == []
    _set_snapshot(vault.path, *sealed)
    other.unlock(TEST_PASSPHRASE)
    assert other.from_snapshot and other.get("from/other") == "o"
    other.close()


def test_the_entry_view_makes_each_wire_record_once(vault):
    _fill(vault)
    view = vault.entries()
    assert isinstance(view, EntryView) and len(view) == 3
    assert [e.name for e in view] == ["a/one", "b/two", "é/unicode"]
    assert view[0] is view[0] is view[:1][0] and view[-1].name == "é/unicode"
    vault.put(Set(name="0/first", value="z"))
    assert len(view) == 3 and vault.entries()[0].name == "0/first"  # a write makes a new view


def test_a_lock_from_a_thread_without_a_connection_opens_nothing(vault):
    import threading
    _fill(vault)
    connections = len(vault._conns)
    locker = threading.Thread(target=vault.lock)
    locker.start()
    locker.join()
    assert not vault.unlocked and len(vault._conns) == connections
    assert _snapshots(vault.path) == []  # not sealed there: the next unlock goes row by row


def test_a_snapshot_that_vanishes_during_an_unlock_is_not_used(vault, monkeypatch):
    """Another process writes (and so drops the snapshot) while this one unlocks."""
    _fill(vault)
    vault.close()
    first = Vault.open(vault.path, state_dir=vault.state_dir)
    other = Vault.open(vault.path, state_dir=vault.state_dir)
    other.unlock(TEST_PASSPHRASE)
    from credd.vault import load
    real_scan = load.scan

    def scan_then_write(loading, *args, **kwargs):
        result = real_scan(loading, *args, **kwargs)
        if loading is first and _snapshots(vault.path):
            other.put(Set(name="from/other", value="o"))
        return result

    monkeypatch.setattr(load, "scan", scan_then_write)
    first.unlock(TEST_PASSPHRASE)  # reads one consistent state: the one before the write
    assert first.from_snapshot and "from/other" not in [e.name for e in first.list()]
    monkeypatch.undo()
    first.lock()
    first.unlock(TEST_PASSPHRASE)
    assert first.get("from/other") == "o"
    first.close()
    other.close()


def test_a_missing_snapshot_table_means_row_by_row(vault):
    _fill(vault)
    expected = _view(vault)
    vault.close()
    db = raw(vault.path)
    db.execute("DROP TABLE snapshot")
    db.close()
    again = Vault.open(vault.path, state_dir=vault.state_dir)
    again.unlock(TEST_PASSPHRASE)
    assert not again.from_snapshot and _view(again) == expected
    again.put(Set(name="still", value="writable"))
    again.close()
