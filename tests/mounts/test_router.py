"""The router: names go to their store, listings merge in name order without copying,
moves do not cross stores; remote reads run on reader threads, decided in dispatch."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credd import protocol as p
from credd.daemon.router import Merged, Router
from credd.errors import BadRequest
from credd.store import EntryStore
from tests.daemon.memory_store import MemoryStore
from tests.mounts.doubles import MemoryMount, served

segments = st.text(alphabet="ab-./0z", min_size=1, max_size=3).filter(
    lambda s: s not in (".", "..") and "/" not in s)
names = st.lists(segments, min_size=1, max_size=3).map("/".join)


def _store(store: MemoryStore, *entries: str) -> MemoryStore:
    for name in entries:
        store.put(p.Set(name=name, value="v"))
    return store


class TestEntries:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(local=st.lists(names, max_size=25, unique=True),
           mounted=st.dictionaries(segments, st.lists(names, max_size=5, unique=True),
                                   max_size=3))
    def test_merged_is_every_visible_name_in_order(self, local, mounted):
        mounts = {m: _store(MemoryMount(m), *[f"{m}/{n}" for n in ns]) for m, ns in mounted.items()}
        router = Router(_store(MemoryStore(), *local), mounts)
        expected = sorted([n for n in local if n.partition("/")[0] not in mounted]
                          + [f"{m}/{n}" for m, ns in mounted.items() for n in ns])
        merged = router.entries()
        assert [e.name for e in merged] == expected
        assert [merged[i].name for i in range(len(merged))] == expected
        assert [e.name for e in merged[1:-1]] == expected[1:-1]
        assert [e.name for e in merged[::2]] == expected[::2]

    def test_no_mounts_is_the_local_view_itself(self):
        local = _store(MemoryStore(), "a")
        assert Router(local, {}).entries() == local.entries()

    def test_the_local_rows_are_not_copied(self):
        class Counting(list):
            sliced = 0

            def __getitem__(self, index):
                Counting.sliced += isinstance(index, slice)
                return super().__getitem__(index)

        class Big(MemoryStore):
            def entries(self):
                return Counting(p.EntryMeta(name=f"n{i:06d}") for i in range(100_000))

        merged = Router(Big(), {"n05": _store(MemoryMount("n05"), "n05/x")}).entries()
        assert isinstance(merged, Merged) and len(merged) == 100_001 and Counting.sliced == 0
        assert merged[50_000].name == "n05/x" and merged[50_001].name == "n050000"

    def test_a_mount_that_cannot_list_is_left_out(self):
        class Down(MemoryMount):
            def entries(self):
                from credd.errors import Unavailable
                raise Unavailable("mount 'team': down")

        router = Router(_store(MemoryStore(), "a", "z"), {"team": Down("team")})
        assert [e.name for e in router.entries()] == ["a", "z"]

    def test_trash_merges_and_hides(self):
        local = _store(MemoryStore(), "a", "team/old")
        local.delete("a")
        local.delete("team/old")
        team = _store(MemoryMount("team"), "team/x")
        team.delete("team/x")
        assert [e.name for e in Router(local, {"team": team}).trash()] == ["a", "team/x"]


class TestRouting:
    def test_the_backends_and_the_stand_in_are_mounts(self, tmp_path):
        from credd.daemon.mounts import BACKENDS, Mount, MountConfig
        from credd.daemon.mounts.table import Broken
        made = [BACKENDS["env"](MountConfig(name="e", backend="env", env_prefix="E_"), str),
                BACKENDS["files"](MountConfig(name="f", backend="files", dir=str(tmp_path)), str),
                Broken(MountConfig(name="b", backend="files", dir="/x"), "why")]
        assert all(isinstance(m, Mount) for m in made)
        assert [m.info().state for m in made] == ["ok", "ok", "error"]

    def test_names_go_to_their_store(self):
        local, team = MemoryStore(), MemoryMount("team")
        router = Router(local, {"team": team})
        assert isinstance(router, EntryStore)
        router.put(p.Set(name="team/db", value="remote"))
        router.put(p.Set(name="teams/db", value="local"))
        assert team.get("team/db") == "remote" and local.get("teams/db") == "local"
        assert router.mount_of("team/db") == "team" and router.mount_of("teams/db") == ""
        assert router.entry_count == 1 and router.audit_key == local.audit_key

    def test_local_entries_under_a_mount_are_hidden_not_mixed(self):
        local = _store(MemoryStore(), "team", "team/a", "team-x")
        router = Router(local, {"team": _store(MemoryMount("team"), "team/b")})
        assert [e.name for e in router.entries()] == ["team-x", "team/b"]
        assert router.hidden("team") == 2

    def test_a_move_does_not_cross_stores(self):
        local = _store(MemoryStore(), "a")
        team = _store(MemoryMount("team"), "team/x")
        router = Router(local, {"team": team})
        with pytest.raises(BadRequest, match="different stores"):
            router.move("a", "team/a")
        assert local.get("a") == "v" and router.move("team/x", "team/y").name == "team/y"

    def test_remote_is_by_name_and_by_listing_prefix(self):
        router = Router(MemoryStore(), {"team": MemoryMount("team", remote=True),
                                        "run": MemoryMount("run")})
        assert router.remote("team/x") and router.remote("credd://team/x/f")
        assert not router.remote("run/x") and not router.remote("teams/x")
        assert router.remote("", prefix=True) and router.remote("te", prefix=True)
        assert not router.remote("r", prefix=True) and not router.remote("run/", prefix=True)


class TestReaderThreads:
    @pytest.fixture
    def ask(self, tmp_path):
        team = _store(MemoryMount("team", remote=True), "team/db")
        run = _store(MemoryMount("run"), "run/x")
        yield from served(tmp_path, Router(_store(MemoryStore(), "local"), {"team": team,
                                                                           "run": run}))

    def test_remote_reads_run_on_a_reader_thread_and_local_ones_on_the_loop(self, ask):
        team = ask.state.memory.mounts["team"]
        run = ask.state.memory.mounts["run"]
        assert ask(p.Get(name="team/db")).value == "v"
        assert ask(p.GetMany(refs=["credd://team/db", "credd://run/x"])).values
        assert ask(p.Get(name="run/x")).value == "v"
        assert team.threads and all(t.startswith("credd-reader") for t in team.threads)
        # a get_many touching both stores runs on a thread whole; run/x alone, on the loop
        assert run.threads[0].startswith("credd-reader")
        assert run.threads[1] == threading.current_thread().name

    @staticmethod
    def _while_held(ask, meanwhile):
        """Start a get of team/db, held inside the mount; run `meanwhile()`, then let go:
        (what meanwhile returned, whether the get was still waiting, the get's reply)."""
        team = ask.state.memory.mounts["team"]
        team.release.clear()

        async def scenario():
            slow = asyncio.ensure_future(ask.ask_async(p.Get(name="team/db")))
            await asyncio.sleep(0.05)
            result = await meanwhile()
            waiting = not slow.done()
            team.release.set()
            return result, waiting, await slow

        return ask.loop.run_until_complete(scenario())

    def test_the_loop_answers_while_a_remote_read_waits(self, ask):
        fast, waiting, slow = self._while_held(ask, lambda: ask.ask_async(p.Get(name="local")))
        assert fast.value == "v" and waiting and slow.value == "v"

    def test_a_lock_during_a_remote_read_wins(self, ask):
        async def lock():
            ask.state.lock("request")

        _, _, reply = self._while_held(ask, lock)
        assert isinstance(reply, p.Error) and reply.code == "locked"
