"""The sealed metadata (chunks and manifest): sealed at lock, trusted by the next unlock only
where it is exactly the file's, a chunk dropped by every write of a name in its range;
anything else is decrypted row by row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import msgspec
import pytest

from credd.protocol import Field, Set
from credd.vault import Vault, VaultIntegrityError, chunks
from credd.vault.vault import EntryView
from tests.conftest import REPO, TEST_PASSPHRASE
from tests.vault.conftest import KDF, file_bytes, raw, reopen

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


def _many(vault: Vault, n: int = 600) -> None:
    """Enough entries for several chunks (index.TARGET entries each)."""
    vault.put_many([Set(name=f"n/{i:04d}", value=f"v{i}", tags=["t"]) for i in range(n)])


def _view(vault: Vault) -> tuple:
    """Everything the metadata cache answers, as plain data (every field: to_builtins would
    leave out a value that is the field's default object but keep an equal copy of it)."""
    entries = [list(map(msgspec.structs.asdict, got)) for got in (vault.list(), vault.trash())]
    history = [vault.history(e.name) for e in vault.list()]
    return entries, msgspec.to_builtins(history), [vault.get(e.name) for e in vault.list()]


def _sealed(path: str) -> tuple[bytes | None, dict[int, bytes]]:
    """(the manifest, {chunk id: chunk}) as the file holds them."""
    db = raw(path)
    try:
        manifest = db.execute("SELECT blob FROM manifest").fetchone()
        return manifest and manifest[0], dict(db.execute("SELECT id, blob FROM chunks"))
    finally:
        db.close()


def _restore(path: str, manifest: bytes | None, held: dict[int, bytes]) -> None:
    db = raw(path)
    db.execute("DELETE FROM manifest")
    db.execute("DELETE FROM chunks")
    if manifest is not None:
        db.execute("INSERT INTO manifest VALUES (1, ?)", (manifest,))
    db.executemany("INSERT INTO chunks VALUES (?, ?)", held.items())
    db.close()


def _drop_manifest(path: str) -> None:
    db = raw(path)
    db.execute("DELETE FROM manifest")
    db.close()


def _closing_seals(vault: Vault) -> None:
    """Closing seals what changed: the next unlock reads only chunks and answers the same."""
    expected = _view(vault)
    vault.close()
    again = _unlocked(vault.path, vault.state_dir)
    assert again.from_snapshot and _view(again) == expected
    again.close()


def _unlocked(path: str, state_dir: str) -> Vault:
    vault = Vault.open(path, state_dir=state_dir)
    vault.unlock(TEST_PASSPHRASE)
    return vault


def test_lock_seals_the_chunks_and_the_next_unlock_answers_the_same_from_them(vault):
    _fill(vault)
    rows_view = _view(vault)
    assert not vault.from_snapshot  # it was written to, not unlocked from the chunks
    again = reopen(vault)
    manifest, held = _sealed(again.path)
    assert again.from_snapshot and manifest is not None and len(held) == 1
    assert _view(again) == rows_view
    assert again.describe("b/two").fields == {"user": "bob"}
    assert again.get("b/two", "pin") == "9" and again.entry_count == 3
    again.put(Set(name="d/new", value="5"))  # records read from a chunk write like any other
    again.restore("a/one", 1)
    assert again.get("a/one") == "1" and again.get("d/new") == "5"
    after = _view(again)
    third = reopen(again)
    assert third.from_snapshot and _view(third) == after
    _drop_manifest(third.path)
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
}
SLOT_WRITES = {
    "passwd": lambda v: v.change_passphrase(TEST_PASSPHRASE, TEST_PASSPHRASE),
    "add key slot": lambda v: v.add_key_slot(b"k" * 32, proof=TEST_PASSPHRASE),
}


@pytest.mark.parametrize("write", [*WRITES, *SLOT_WRITES])
def test_every_entry_write_drops_its_chunk_in_its_own_transaction(vault, write):
    _fill(vault)
    again = reopen(vault)
    manifest, held = _sealed(again.path)
    assert len(held) == 1
    {**WRITES, **SLOT_WRITES}[write](again)
    if write in WRITES:
        assert _sealed(again.path) == (manifest, {}) and not again.from_snapshot
    else:  # no row changed: the chunks still describe the file
        assert _sealed(again.path) == (manifest, held) and again.from_snapshot
    _closing_seals(again)
    assert len(_sealed(again.path)[1]) == 1


def test_a_write_drops_only_the_chunks_of_the_names_it_writes(vault):
    _many(vault)
    again = reopen(vault)
    _manifest, held = _sealed(again.path)
    assert len(held) >= 4
    again.put(Set(name="n/0300", value="changed"))
    assert len(_sealed(again.path)[1]) == len(held) - 1
    again.move("n/0001", "n/0599x")  # from the first chunk to the last
    assert len(_sealed(again.path)[1]) == len(held) - 3
    _closing_seals(again)


def test_a_lock_without_changes_keeps_the_chunks_as_they_are(vault):
    _fill(vault)
    again = reopen(vault)
    before = _sealed(again.path)
    again.lock()
    again.unlock(TEST_PASSPHRASE)
    assert again.from_snapshot and _sealed(again.path) == before
    again.close()


@pytest.mark.parametrize("what", ["chunk", "manifest"])
def test_a_damaged_chunk_or_manifest_is_ignored_and_replaced(vault, what):
    _fill(vault)
    expected = _view(vault)
    vault.close()
    manifest, held = _sealed(vault.path)
    if what == "manifest":
        manifest = manifest[:40] + bytes([manifest[40] ^ 1]) + manifest[41:]
    else:
        ((chunk_id, blob),) = held.items()
        held = {chunk_id: blob[:40] + bytes([blob[40] ^ 1]) + blob[41:]}
    _restore(vault.path, manifest, held)
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot and _view(again) == expected and again.check() == []
    third = reopen(again)
    assert third.from_snapshot and _view(third) == expected
    third.close()


def test_a_chunk_from_another_generation_is_ignored(vault):
    """Chunks and manifests sealed before a write, put back beside or instead of the
    current ones: what they say about the rows since written is never served."""
    _many(vault, 300)
    _fill(vault)
    first = reopen(vault)
    old_manifest, old_held = _sealed(first.path)
    first.put(Set(name="a/one", value="changed", service="new"))
    expected = _view(first)
    first.close()
    manifest, held = _sealed(first.path)
    stale = {cid: blob for cid, blob in old_held.items() if cid not in held}
    assert stale and manifest != old_manifest
    for case in ({"manifest": manifest, "held": {**held, **stale}},   # beside, unlisted
                 {"manifest": old_manifest, "held": old_held},          # all of it stale
                 {"manifest": old_manifest, "held": {**held, **stale}}):
        _restore(first.path, case["manifest"], case["held"])
        v = _unlocked(first.path, first.state_dir)
        assert _view(v) == expected and v.describe("a/one").service == "new"
        v.lock()  # seals again only if something was decrypted
        v.close()
    _restore(first.path, manifest, held)


def test_an_unlisted_chunk_is_never_served(vault):
    """A chunk from an earlier seal put back where a write (after the last seal, then a
    crash) left a gap: its range overlaps nothing and its rows' buckets are unchanged since
    the last seal, but it is not the manifest's, and what it says is older than that seal."""
    _many(vault, 600)  # the row a crashed write adds lands in another bucket
    first = reopen(vault)
    _m, old_held = _sealed(first.path)
    first.put(Set(name="n/0100", value="v", service="v2"))
    second = reopen(first)
    _m, held = _sealed(second.path)
    second.put(Set(name="n/0100a", value="new"))  # drops the chunk of that range
    second.file.close()  # a crash: no lock, no seal
    _manifest, after_crash = _sealed(second.path)
    gap = {cid: blob for cid, blob in old_held.items()
           if cid not in held and cid not in after_crash}
    assert len(gap) == 1
    _restore(second.path, _manifest, {**after_crash, **gap})
    third = _unlocked(second.path, second.state_dir)
    assert third.describe("n/0100").service == "v2" and third.get("n/0100a") == "new"
    third.close()


def test_a_chunk_from_another_vault_is_ignored(vault, tmp_path):
    _fill(vault)
    expected = _view(vault)
    vault.close()
    other, _ = Vault.create(str(tmp_path / "other" / "vault.db"), TEST_PASSPHRASE,
                            kdf=KDF)
    _fill(other)
    other.close()
    manifest, held = _sealed(vault.path)
    _other_manifest, other_held = _sealed(other.path)
    ((chunk_id, _blob),) = held.items()
    _restore(vault.path, manifest, {chunk_id: next(iter(other_held.values()))})
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot and _view(again) == expected
    again.close()


def test_chunks_swapped_between_ids_are_both_ignored(vault):
    """A chunk's id is in its AD: swapped blobs open under neither id."""
    _many(vault, 400)
    expected = _view(vault)
    vault.close()
    manifest, held = _sealed(vault.path)
    (a, first), (b, second), *rest = held.items()
    _restore(vault.path, manifest, {a: second, b: first, **dict(rest)})
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot and _view(again) == expected and again.check() == []
    again.close()


def test_overlapping_chunks_are_never_served(vault):
    """Even chunks that open and that the manifest lists are left out if their ranges
    overlap: each row is covered at most once (a forged pair, sealed with the real keys)."""
    _many(vault, 400)
    expected = _view(vault)
    keys, vault_id = vault.session.keys, vault.vault_id
    vault.seal_snapshot()
    index = vault.session.index
    first = index.segments[0]
    liar = index.with_changes([(name, row._replace(entry=msgspec.structs.replace(
        row.entry, service="forged"))) for name, row in first.parts()[0].rows()]).segments[0]
    forged_id = 12345
    forged = chunks.seal_chunk(keys, vault_id, forged_id, liar, index.lows[2])
    seals = vault.session.buckets
    manifest = chunks.Manifest(chunks=sorted([*index.chunks(), forged_id]),
                               buckets=[seals[b] for b in sorted(seals)])
    sealed_manifest = chunks.seal_manifest(keys, vault_id, manifest)
    vault.close()
    _m, held = _sealed(vault.path)
    _restore(vault.path, sealed_manifest, {**held, forged_id: forged})
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot and _view(again) == expected
    assert "forged" not in {e.service for e in again.list()}
    again.close()


@pytest.mark.parametrize("when", ["while locked", "while unlocked", "beside a write"])
def test_a_changed_meta_column_is_never_covered_by_a_chunk(vault, when):
    """Changed behind the vault's back: while locked, or while unlocked, in a row it wrote
    or in one it did not write whose bucket it then wrote into (the seal reads that bucket
    back: it must not vouch for the changed row)."""
    _fill(vault)
    if when == "while locked":
        vault.close()
    elif when == "beside a write":
        vault = reopen(vault)
        vault.put(Set(name="é/unicode", value="written now"))
    db = raw(vault.path)
    row_id, meta = db.execute("SELECT id, meta FROM entries ORDER BY rev LIMIT 1").fetchone()
    db.execute("UPDATE entries SET meta = ? WHERE id = ?",
               (meta[:20] + bytes([meta[20] ^ 1]) + meta[21:], row_id))
    db.close()
    vault.close()  # while unlocked: the lock must not seal the changed column
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot
    with pytest.raises(VaultIntegrityError):
        again.list()
    assert any(row_id.hex() in problem for problem in again.check())
    again.close()


def test_a_chunk_whose_rows_changed_is_not_served_for_them(vault):
    """One row replayed to an older version of itself: its bucket no longer hashes as the
    manifest says, so that row is decrypted (and found damaged); the other chunks serve."""
    _many(vault, 600)
    vault.put(Set(name="n/0100", value="second", service="second"))
    db = raw(vault.path)
    row_id, _rev, meta = db.execute("SELECT id, rev, meta FROM entries ORDER BY rev DESC "
                                   "LIMIT 1").fetchone()
    db.close()
    vault.put(Set(name="n/0100", value="third", service="third"))
    vault.close()
    db = raw(vault.path)
    db.execute("UPDATE entries SET meta = ? WHERE id = ?", (meta, row_id))  # replayed column
    db.close()
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot and again.entry_count == 599
    assert again.get("n/0300") == "v300"
    with pytest.raises(VaultIntegrityError):
        again.describe("n/0100")
    again.close()


def test_the_bucket_hash_sees_moved_bytes_order_and_types_and_matches_sqlite(vault):
    def digest(*rows):
        return chunks.bucket_hash(len(rows), *chunks.bucket_strings(rows))
    i, j = b"i" * 16, b"j" * 16
    assert digest((i, 1, b"ab"), (j, 2, b"c")) != digest((i, 1, b"a"), (j, 2, b"bc"))
    assert digest((i, 1, b"ab"), (j, 2, b"c")) != digest((j, 2, b"c"), (i, 1, b"ab"))
    assert digest((i, 1, b"m"), (j, 2, b"n")) != digest((j, 2, b"m"), (i, 1, b"n"))
    assert digest((i, 1, b"m")) != digest((i, 1, b"m"), (j, 1, b""))
    _many(vault, 20)
    conn = vault.file.conn()
    conn.text_factory = bytes
    try:
        ((bucket, count, sql_digest, _ids, good),) = chunks.scan_buckets(conn)
        assert count == 20 and good and sql_digest == digest(*chunks.bucket_rows(conn, bucket))
    finally:
        conn.text_factory = str


@pytest.mark.parametrize("revs", ["different", "equal"])
def test_rows_swapped_around_their_meta_columns_are_not_covered(vault, revs):
    """(id, rev, secret) of two rows swapped, their meta columns left where they were:
    the set digest and the meta columns in file order are unchanged, the rows are not.
    After a rekey every row has the same rev, so only the ids can tell."""
    vault.put(Set(name="alpha", value="A"))
    vault.put(Set(name="beta", value="B"))
    if revs == "equal":
        vault.rekey(proof=TEST_PASSPHRASE)
    vault.close()
    assert _sealed(vault.path)[0] is not None
    db = raw(vault.path)
    (a_id, a_rev, a_secret), (b_id, b_rev, b_secret) = db.execute(
        "SELECT id, rev, secret FROM entries ORDER BY rowid").fetchall()
    db.execute("UPDATE entries SET id = ?, rev = 0, secret = x'' WHERE id = ?", (b"t" * 16, a_id))
    db.execute("UPDATE entries SET id = ?, rev = ?, secret = ? WHERE id = ?",
               (a_id, a_rev, a_secret, b_id))
    db.execute("UPDATE entries SET id = ?, rev = ?, secret = ? WHERE id = ?",
               (b_id, b_rev, b_secret, b"t" * 16))
    db.close()
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot
    with pytest.raises(VaultIntegrityError):
        again.list()
    again.close()


def test_lock_drops_the_keys_even_when_sealing_is_interrupted(vault, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    vault.put(Set(name="a", value="1"))
    keys = vault.session.keys
    monkeypatch.setattr(chunks, "seal_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vault.lock()
    assert not vault.unlocked and not any(keys.dek) and _sealed(vault.path) == (None, {})


def test_an_edit_to_a_returned_record_never_reaches_the_file(vault):
    names = ("b", "c", "d", "e")
    for name in names:
        vault.put(Set(name=name, value="1", fields=[Field(name="user", value=name, secret=False)]))
    vault.delete("d")
    again = reopen(vault)
    assert again.from_snapshot
    returned = [again.describe("b"), again.list()[0],
                again.put(Set(name="c", value="2", merge=True)),
                *again.trash(), again.move("e", "e")]
    for record in returned:
        record.fields["user"] = "mallory"
    again.undelete("d").fields["user"] = "mallory"  # after the trash edit: it starts from it
    for name in names:  # writes that start from the cached records
        again.put(Set(name=name, value="3", merge=True))
    third = reopen(again)
    assert [third.get(name, "user") for name in names] == list(names)
    third.close()


def test_a_write_that_fails_keeps_the_chunks(vault):
    from credd.errors import Exists
    _fill(vault)
    again = reopen(vault)
    before = _sealed(again.path)
    with pytest.raises(Exists):
        again.put(Set(name="a/one", value="x", mode="create"))
    assert again.from_snapshot and _sealed(again.path) == before
    again.close()


def test_rekey_drops_the_chunks_and_the_next_seal_checks_every_row(vault):
    _fill(vault)
    again = reopen(vault)
    expected = _view(again)
    again.rekey(proof=TEST_PASSPHRASE)
    assert _sealed(again.path) == (None, {}) and not again.from_snapshot  # under the old key
    again.close()  # every rewritten row is decrypted and compared before it is sealed
    third = _unlocked(again.path, again.state_dir)
    assert third.from_snapshot and _view(third) == expected
    third.close()


def test_a_vault_changed_by_another_process_is_not_sealed(vault):
    _fill(vault)
    vault.close()
    _drop_manifest(vault.path)
    first = _unlocked(vault.path, vault.state_dir)  # row by row: it has something to seal
    other = _unlocked(vault.path, vault.state_dir)
    other.put(Set(name="from/other", value="o"))
    other.lock()  # seals the file as it now is
    sealed = _sealed(vault.path)
    _drop_manifest(vault.path)
    first.close()  # its generation is behind the file's: nothing sealed over other's write
    assert _sealed(vault.path)[0] is None
    _restore(vault.path, *sealed)
    other.unlock(TEST_PASSPHRASE)
    assert other.from_snapshot and other.get("from/other") == "o"
    other.close()


def test_a_writer_with_an_older_picture_of_the_chunks_cannot_write(vault):
    """A seal bumps the generation: a process unlocked before it would not know which
    chunk holds a name it writes, so its writes are refused."""
    _fill(vault)
    vault.close()
    _drop_manifest(vault.path)
    first = _unlocked(vault.path, vault.state_dir)
    other = _unlocked(vault.path, vault.state_dir)
    other.seal_snapshot()
    from credd.errors import IntegrityError
    with pytest.raises(IntegrityError, match="another process"):
        first.purge("c/gone")
    first.close()
    other.close()


def test_the_entry_view_makes_each_wire_record_once(vault):
    _fill(vault)
    view = vault.entries()
    assert isinstance(view, EntryView) and len(view) == 3
    assert [e.name for e in view] == ["a/one", "b/two", "é/unicode"]
    assert view[0] is view[0] is view[:1][0] and view[-1].name == "é/unicode"
    vault.put(Set(name="0/first", value="z"))
    assert len(view) == 3 and vault.entries()[0].name == "0/first"  # a write makes a new view


def test_the_entry_view_pages_across_chunks(vault):
    _many(vault, 700)
    vault.delete("n/0200")
    again = reopen(vault)
    view = again.entries()
    names = [f"n/{i:04d}" for i in range(700) if i != 200]
    assert len(view) == 699 and [e.name for e in view] == names
    assert [e.name for e in view[100:450]] == names[100:450]
    probes = (0, 127, 128, 300, -1)
    assert [view[i].name for i in probes] == [names[i] for i in probes]
    again.close()


def test_a_lock_from_a_thread_without_a_connection_opens_nothing(vault):
    import threading
    _fill(vault)
    connections = vault.file.connection_count
    locker = threading.Thread(target=vault.lock)
    locker.start()
    locker.join()
    assert not vault.unlocked and vault.file.connection_count == connections
    assert _sealed(vault.path) == (None, {})  # not sealed there: the next unlock decrypts


def test_chunks_that_vanish_during_an_unlock_are_not_used(vault, monkeypatch):
    """Another process writes (and so drops a chunk) while this one unlocks."""
    _fill(vault)
    vault.close()
    first = Vault.open(vault.path, state_dir=vault.state_dir)
    other = _unlocked(vault.path, vault.state_dir)
    real_scan = chunks.scan_buckets
    wrote = []

    def scan_then_write(conn):
        yield from real_scan(conn)
        if not wrote:
            wrote.append(other.put(Set(name="from/other", value="o")))

    monkeypatch.setattr(chunks, "scan_buckets", scan_then_write)
    first.unlock(TEST_PASSPHRASE)  # reads one consistent state: the one before the write
    assert wrote and first.from_snapshot and "from/other" not in [e.name for e in first.list()]
    monkeypatch.undo()
    first.lock()
    first.unlock(TEST_PASSPHRASE)
    assert first.get("from/other") == "o"
    first.close()
    other.close()


def test_missing_chunk_tables_mean_row_by_row(vault):
    _fill(vault)
    expected = _view(vault)
    vault.close()
    db = raw(vault.path)
    db.execute("DROP TABLE chunks")
    db.execute("DROP TABLE manifest")
    db.close()
    again = _unlocked(vault.path, vault.state_dir)
    assert not again.from_snapshot and _view(again) == expected
    again.put(Set(name="still", value="writable"))
    again.close()


@pytest.mark.parametrize("write", ["purge", "move"])
def test_a_purged_or_renamed_entrys_chunk_leaves_no_trace_in_the_file(vault, write):
    """The chunk that held the old name is gone from the file and the WAL, not only from
    the table: someone who later learns the passphrase cannot decrypt it."""
    _many(vault, 400)
    name = "n/0200-project-x"
    vault.put(Set(name=name, value="v"))
    vault.delete(name)
    again = reopen(vault)
    index = again.session.index
    chunk_id = index.segments[index.segment_of(name)].chunk
    blob = _sealed(again.path)[1][chunk_id]
    assert blob[100:132] in file_bytes(again.path)
    if write == "purge":
        again.purge(name)
    else:
        again.undelete(name)
        again.move(name, "z/elsewhere")
    data = file_bytes(again.path)
    windows = [blob[i:i + 32] for i in range(12, len(blob) - 32, 16)]
    assert not any(window in data for window in windows)
    assert not any(name.encode(codec) in data for codec in ("utf-8", "utf-16-le", "utf-16-be"))
    again.close()


_SEALER = textwrap.dedent("""
    import random, sys, time
    from credd.protocol import Set
    from credd.vault import Vault, chunks
    real = chunks.seal_chunk
    def slow(*args):  # widen the seal, so that kills land inside it
        time.sleep(0.002)
        return real(*args)
    chunks.seal_chunk = slow
    v = Vault.open(sys.argv[1], state_dir=sys.argv[2])
    v.unlock(sys.argv[3])
    rng = random.Random(int(sys.argv[4]))
    first_bucket = random.Random(7).sample(range(2000), 2000)[:500]  # rowids 1-500
    for i in range(40):
        n = rng.choice(first_bucket)
        v.put(Set(name=f"n/{n:04d}", value=f"{sys.argv[4]}-{i}"))
        print(f"wrote n/{n:04d} {sys.argv[4]}-{i}", flush=True)
    print("sealing", flush=True)
    v.lock()
    print("sealed", flush=True)
    time.sleep(30)
""")


@pytest.mark.timeout(120)
def test_kill_9_mid_seal_loses_nothing_and_the_next_unlock_is_right(vault):
    """Writes to rows of one bucket drop chunks whose other rows lie in every bucket; a
    kill before the seal commits leaves those rows uncovered, in buckets that still hash
    as the manifest says: the next unlock must decrypt them too."""
    order = random.Random(7).sample(range(2000), 2000)  # rowid order unlike name order
    vault.put_many([Set(name=f"n/{i:04d}", value=f"v{i}", tags=["t"]) for i in order])
    vault.close()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(99)
    acknowledged: dict[str, str] = {}
    sealed = set()
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _SEALER, vault.path, vault.state_dir,
                                 TEST_PASSPHRASE, str(attempt)], stdout=subprocess.PIPE, env=env)
        while (line := proc.stdout.readline().decode().split()) != ["sealing"]:
            acknowledged[line[1]] = line[2]
        time.sleep(rng.uniform(0.0, 0.12))  # the seal takes ~0.1 s here
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        v = _unlocked(vault.path, vault.state_dir)
        sealed.add(v.from_snapshot)
        assert {name: v.get(name) for name in acknowledged} == acknowledged
        assert v.entry_count == 2000 and not v.session.bad and v.check() == []
        v.file.close()  # as if killed too: nothing sealed here
    assert sealed == {True, False}  # kills landed both inside the seal and after it
    v = _unlocked(vault.path, vault.state_dir)
    v.close()
    last = _unlocked(vault.path, vault.state_dir)
    assert last.from_snapshot and {n: last.get(n) for n in acknowledged} == acknowledged
    last.close()


def test_the_raw_view_encodes_as_the_records_do(vault):
    """An unfiltered list page can be the chunks' bytes: the raw view encodes exactly as the
    records, from sealed chunks (undecoded) and from segments written since alike."""
    _many(vault, 300)
    vault.delete("n/0010")
    again = reopen(vault)
    again.put(Set(name="n/0200", value="changed", service="new"))  # one dirty segment
    encode = msgspec.msgpack.Encoder().encode
    view = again.entries()
    raw = view.raw()
    assert len(raw) == len(view) == 299
    assert encode(raw[:]) == encode(list(view)) and encode(raw[5:250]) == encode(view[5:250])
    assert raw[17] is raw[17] and encode(raw[-1]) == encode(view[-1])
    again.close()
