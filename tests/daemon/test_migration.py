"""The migration's copy (credd/daemon/migration.py) between real local vaults and the
memory store double: which names a prefix takes, batches and cursors, what confirms a
copy, what is deleted, and the one-transaction writes of the vault."""

from __future__ import annotations

import pytest

from credd import protocol as p
from credd.daemon.migration import Migration, Prefix, pair
from credd.errors import BadRequest, LockedError, Unavailable
from credd.protocol import Field, Set
from credd.vault import KdfParams, Vault
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock
from tests.daemon.memory_store import MemoryStore

KDF = KdfParams(memory_kib=FAST_KDF["kdf_memory_kib"], iterations=FAST_KDF["kdf_iterations"],
                lanes=FAST_KDF["kdf_lanes"])


@pytest.fixture
def vault(isolated_env):
    made, _ = Vault.create(isolated_env["CREDD_VAULT"], TEST_PASSPHRASE, kdf=KDF,
                           state_dir=isolated_env["CREDD_STATE_DIR"])
    yield made
    made.close()


def fill(store, *names: str) -> None:
    for name in names:
        store.put(Set(name=name, value=f"v-{name}", kind="password", tags=["t"],
                      fields=[Field(name="user", value="u", secret=False),
                              Field(name="pw", value=f"pw-{name}")], notes="n",
                      rotate_after=3600.0))


def run(store_from, store_to, src: str, dst: str, *, limit: int = 100, cursor=None,
        **options) -> object:
    return Migration(store_from, store_to, *pair(src, dst), **options).batch(cursor, limit, 10.0)


class TestPrefixes:
    def test_a_folder_and_an_entry_with_its_folder(self):
        folder, entry = Prefix.parse("a/b/", "SRC"), Prefix.parse("a/b", "SRC")
        assert [folder.covers(n) for n in ("a/b", "a/b/c", "a/bc")] == [False, True, False]
        assert [entry.covers(n) for n in ("a/b", "a/b/c", "a/bc")] == [True, True, False]
        assert entry.rename("a/b/c", Prefix.parse("x", "DST")) == "x/c"

    @pytest.mark.parametrize(("src", "dst"), [("a/", "a/"), ("a/", "a/b/"), ("a/b/", "a/"),
                                              ("a", "a/b"), ("", "b/"), ("a", "b/"),
                                              ("a//b/", "c/")])
    def test_pairs_that_cannot_mean_a_copy(self, src, dst):
        with pytest.raises(BadRequest):
            pair(src, dst)

    def test_neighbours_are_not_inside(self):
        source, target = pair("a/b/", "a/bc/")
        assert not source.within(target)


class TestNames:
    def test_only_the_prefix_is_taken_never_its_neighbours(self, vault):
        fill(vault, "local", "local/a", "local/b/c", "local-x", "locals", "loc", "m/local/a")
        done = run(vault, vault, "local", "moved", delete_source=True)
        assert [(i.name, i.to) for i in done.items] == [
            ("local", "moved"), ("local/a", "moved/a"), ("local/b/c", "moved/b/c")]
        assert [e.name for e in vault.list()] == [
            "loc", "local-x", "locals", "m/local/a", "moved", "moved/a", "moved/b/c"]
        assert run(vault, vault, "local/", "other/").items == []

    def test_batches_follow_the_cursor_to_the_end(self, vault):
        fill(vault, "s", *[f"s/{i:02d}" for i in range(7)], "t/x")
        seen, cursor, lefts = [], None, []
        while True:
            done = run(vault, vault, "s", "d", limit=3, cursor=cursor)
            seen += [i.name for i in done.items]
            lefts.append(done.remaining)
            if done.next is None:
                break
            cursor = done.next
        assert seen == ["s", *[f"s/{i:02d}" for i in range(7)]]
        assert lefts == [5, 2, 0]

    def test_a_time_budget_ends_a_batch_early(self, vault):
        fill(vault, *[f"s/{i}" for i in range(5)])
        done = Migration(vault, vault, *pair("s/", "d/")).batch(None, 100, 0.0)
        assert len(done.items) == 1 and done.remaining == 4 and done.next == "s/0"


class TestCopies:
    def test_everything_is_carried_between_two_vaults(self, vault, tmp_path):
        other, _ = Vault.create(str(tmp_path / "other.db"), TEST_PASSPHRASE, kdf=KDF,
                                state_dir=str(tmp_path))
        fill(vault, "s/a", "s/b")
        vault.put(Set(name="s/c", fields=[Field(name="only", value="x")], expires=2e9))
        done = run(vault, other, "s/", "d/")
        assert [i.outcome for i in done.items] == ["copied"] * 3
        for name in ("a", "b", "c"):
            a, b = vault.reveal(f"s/{name}"), other.reveal(f"d/{name}")
            assert (a.value, a.secret_fields, a.notes) == (b.value, b.secret_fields, b.notes)
            keep = ("kind", "service", "tags", "fields", "secret_fields", "has_value",
                    "has_notes", "rotate_after", "expires")
            assert [getattr(a.meta, k) for k in keep] == [getattr(b.meta, k) for k in keep]
        other.close()

    def test_one_transaction_per_batch_and_one_by_one_when_it_fails(self, vault):
        """The vault takes a batch in one commit; one entry it refuses makes it write the
        batch one by one, and only that entry is skipped."""
        batches: list[int] = []
        original = vault.put_many

        def counted(requests):
            requests = list(requests)
            batches.append(len(requests))
            return original(requests)

        vault.put_many = counted  # type: ignore[method-assign]
        good = MemoryStore()
        fill(good, "g/a", "g/b", "g/c")
        assert [i.outcome for i in run(good, vault, "g/", "d/").items] == ["copied"] * 3
        assert batches == [3]
        mixed = MemoryStore()
        fill(mixed, "s/a", "s/c")
        mixed.put(Set(name="s/b", value="v", tags=["x" * 129]))  # the vault refuses the tag
        done = run(mixed, vault, "s/", "e/")
        assert [(i.name, i.outcome) for i in done.items] == [
            ("s/a", "copied"), ("s/b", "skipped"), ("s/c", "copied")]
        assert "tag" in done.items[1].reason
        assert batches == [3, 3] and done.written == ["e/a", "e/c"]
        assert [e.name for e in vault.list()] == ["d/a", "d/b", "d/c", "e/a", "e/c"]

    def test_a_lossy_destination_is_not_confirmed_and_keeps_the_source(self, vault):
        class Lossy(MemoryStore):
            def put(self, request):  # drops the notes on the floor
                request = p.Set(**{f: getattr(request, f) for f in request.__struct_fields__
                                   if f != "notes"})
                return super().put(request)

        fill(vault, "s/a")
        done = run(vault, Lossy(), "s/", "d/", delete_source=True)
        (item,) = done.items
        assert (item.outcome, item.deleted) == ("copied", False)
        assert item.reason == "written, but its notes read back different"
        assert vault.describe("s/a").deleted is None

    def test_dry_run_writes_and_deletes_nothing(self, vault):
        fill(vault, "s/a", "d/b")
        fill(vault, "s/b")
        vault.put(Set(name="d/b", value="other"))
        done = run(vault, vault, "s/", "d/", dry_run=True, delete_source=True)
        assert [(i.outcome, i.deleted) for i in done.items] == [("copied", True),
                                                                ("conflict", False)]
        assert [e.name for e in vault.list()] == ["d/b", "s/a", "s/b"]
        assert done.written == []

    def test_conflict_reasons_name_what_differs_never_a_value(self, vault):
        fill(vault, "s/a")
        vault.put(Set(name="d/a", value="v-s/a", kind="password", tags=["other"],
                      fields=[Field(name="user", value="u", secret=False),
                              Field(name="pw", value="changed")], notes="n", rotate_after=3600))
        (item,) = run(vault, vault, "s/", "d/").items
        assert item.outcome == "conflict"
        assert item.reason == ("the destination holds a different tags, field 'pw' "
                               "(--overwrite replaces it)")


class TestStops:
    class Down(MemoryStore):
        """A destination whose server goes away after `good` writes."""

        def __init__(self, good: int) -> None:
            super().__init__()
            self.good = good

        def put(self, request):
            if self.good == 0:
                raise Unavailable("mount 'x': the server cannot be reached")
            self.good -= 1
            return super().put(request)

    def test_a_server_that_goes_away_stops_the_batch_where_it_failed(self, vault):
        fill(vault, *[f"s/{i}" for i in range(5)])
        done = run(vault, self.Down(2), "s/", "d/", delete_source=True)
        assert [(i.name, i.outcome, i.deleted) for i in done.items] == [
            ("s/0", "copied", True), ("s/1", "copied", True)]
        assert done.stopped == "mount 'x': the server cannot be reached"
        assert done.next == "s/1" and done.remaining == 3
        assert [e.name for e in vault.list()] == ["s/2", "s/3", "s/4"]

    def test_a_lock_ends_the_batch_before_the_next_step(self, vault):
        fill(vault, "s/a", "s/b")
        target = MemoryStore()
        calls = iter([False, True])  # locked after the first entry was read
        done = Migration(vault, target, *pair("s/", "d/"), delete_source=True).batch(
            None, 100, 10.0, stop=lambda: next(calls, True))
        assert done.stopped.startswith("the vault was locked during the migration")
        assert done.items == [] and target.entries() == [] and len(vault.list()) == 2

    def test_a_locked_source_is_an_error_before_anything(self, vault):
        fill(vault, "s/a")
        vault.lock()
        with pytest.raises(LockedError):
            run(vault, MemoryStore(), "s/", "d/")


def test_secrets_are_not_in_the_batch_or_its_repr(vault):
    fill(vault, "s/a")
    done = run(vault, MemoryStore(), "s/", "d/")
    assert "pw-s/a" not in repr(done) and "v-s/a" not in repr(done)


class TestOverTheSocket:
    """`migrate` as a client sends it: raw frames to a real agent, local vault to itself."""

    def test_batches_follow_next_and_trash_each_confirmed_source(self, agent, raw):
        conn = raw(agent)
        init_unlock(conn)
        for name in ("s/a", "s/b", "s/c/d", "s/e", "t/x"):
            assert isinstance(conn.call(p.Set(name=name, value=f"{SENTINEL}-{name}",
                                              tags=["t"])), p.EntryReply)
        batches, cursor = [], None
        while True:
            reply = conn.call(p.Migrate(src="s/", dst="m/", cursor=cursor, limit=2,
                                        delete_source=True))
            assert isinstance(reply, p.Migrated), reply
            batches.append(([(i.name, i.to, i.outcome, i.deleted) for i in reply.items],
                            reply.remaining))
            if reply.next is None:
                break
            cursor = reply.next
        assert batches == [([("s/a", "m/a", "copied", True), ("s/b", "m/b", "copied", True)], 2),
                           ([("s/c/d", "m/c/d", "copied", True), ("s/e", "m/e", "copied", True)],
                            0)]
        assert reply.versions_left and not reply.stopped
        listed = conn.call(p.List())
        assert isinstance(listed, p.Entries)
        assert [e.name for e in listed.entries] == ["m/a", "m/b", "m/c/d", "m/e", "t/x"]
        moved = conn.call(p.Reveal(name="m/c/d"))
        assert isinstance(moved, p.Revealed) and moved.value == f"{SENTINEL}-s/c/d"
        assert moved.entry.tags == ("t",)

    def test_a_negative_limit_is_a_bad_request(self, agent, raw):
        conn = raw(agent)
        init_unlock(conn)
        reply = conn.call(p.Migrate(src="s/", dst="m/", limit=-1))
        assert isinstance(reply, p.Error) and reply.code == "bad_request", reply
