"""The handlers serve any `EntryStore`: here a store of dictionaries stands where the vault
stands, and every entry request goes through the agent's real decode, route, handler and
error mapping (`dispatch.dispatch`) without a vault file.

If a handler reached past the interface (into the vault's own methods or attributes),
these tests would fail with an internal error or an AttributeError.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from credd import protocol as p
from credd.daemon import dispatch
from credd.daemon.audit_trail import Query
from credd.daemon.binding import OWNER
from credd.daemon.peer import Peer
from credd.daemon.state import AgentState, Config
from credd.errors import LockedError
from credd.store import EntryStore
from tests.daemon.memory_store import MemoryStore


class _Caller:
    greeted = True
    subscription = None
    binding = OWNER

    def __init__(self) -> None:
        self.peer = Peer(uid=os.geteuid(), pid=os.getpid())


class MemoryState(AgentState):
    """An agent whose entries live in a MemoryStore; lock and unlock work as usual."""

    def __init__(self, config: Config, memory: MemoryStore) -> None:
        super().__init__(config)
        self.memory = memory
        self.kept = MemoryStore()  # the agent's own records (grants), as the vault keeps them

    def store(self) -> EntryStore:
        if not self.unlocked:
            raise LockedError("the vault is locked: run `credd unlock`")
        return self.memory

    def records(self) -> MemoryStore:
        self.store()
        return self.kept


@pytest.fixture
def served(tmp_path) -> Iterator[Any]:
    """ask(request) → the agent's reply, from a MemoryState on a running event loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    config = Config(socket=str(tmp_path / "s.sock"), vault=str(tmp_path / "none" / "vault.db"),
                    state_dir=str(tmp_path / "state"))
    state = MemoryState(config, MemoryStore())
    state.opened(idle=600, lifetime=3600)
    caller = _Caller()

    def ask(request: p._Message) -> p.Response:
        async def run() -> p.Response:
            reply = dispatch.dispatch(state, caller, p.encode(request)[4:])
            return await reply if asyncio.iscoroutine(reply) else reply  # type: ignore[return-value]
        return p.decode_response(p.encode(loop.run_until_complete(run()))[4:])  # as on the wire

    ask.state = state  # type: ignore[attr-defined]
    yield ask
    loop.run_until_complete(state.close())
    loop.close()
    asyncio.set_event_loop(None)


def test_the_memory_store_satisfies_the_interface():
    assert isinstance(MemoryStore(), EntryStore)


def test_writes_and_reads_go_to_the_store(served):
    fields = [p.Field(name="user", value="alice", secret=False), p.Field(name="pw", value="s3")]
    assert isinstance(served(p.Set(name="db/main", value="dsn", fields=fields, kind="password")),
                      p.EntryReply)
    assert served(p.Get(name="db/main")).value == "dsn"
    assert served(p.Get(name="db/main", field="user")).value == "alice"
    secrets = served(p.GetMany(refs=["credd://db/main", "credd://db/main/pw", "db/main/user"]))
    assert secrets.values == {"credd://db/main": "dsn", "credd://db/main/pw": "s3",
                              "db/main/user": "alice"}
    revealed = served(p.Reveal(name="db/main"))
    assert revealed.value == "dsn" and revealed.secret_fields == {"pw": "s3"}
    assert served(p.Describe(name="db/main")).entry.kind == "password"
    assert served.state.memory.get("db/main") == "dsn"  # it was the store that held it


def test_listing_filters_and_pages_through_the_store(served):
    for i in range(30):
        served(p.Set(name=f"team/{i:02d}", value="v", service="svc" if i % 2 else "other"))
    served(p.Set(name="zeta", value="v", expires=1.0))  # long expired: due
    whole = served(p.List())
    assert whole.total == 31 and [e.name for e in whole.entries][:2] == ["team/00", "team/01"]
    page = served(p.List(prefix="team/", limit=10))
    assert len(page.entries) == 10 and page.next == "team/09" and page.total == 30
    rest = served(p.List(prefix="team/", cursor=page.next))
    assert rest.entries[0].name == "team/10"
    assert served(p.List(service="svc")).total == 15
    assert [e.name for e in served(p.List(due=True)).entries] == ["zeta"]


def test_history_trash_move_restore_and_purge(served):
    served(p.Set(name="k", value="one"))
    served(p.Set(name="k", value="two", merge=True))
    history = served(p.History(name="k"))
    assert history.current == 2 and [v.version for v in history.versions] == [1]
    assert served(p.Restore(name="k", version=1)).entry.version == 3
    assert served(p.Get(name="k")).value == "one"
    assert served(p.Move(old="k", new="renamed")).entry.name == "renamed"
    assert served(p.Delete(name="renamed")).entry.deleted is not None
    assert [e.name for e in served(p.Trash()).entries] == ["renamed"]
    served(p.Undelete(name="renamed"))
    served(p.Delete(name="renamed"))
    assert isinstance(served(p.Purge(name="renamed")), p.Ok)
    assert served(p.Trash()).entries == []


def test_store_errors_become_typed_replies_and_are_audited(served):
    missing = served(p.Get(name="nope"))
    assert isinstance(missing, p.Error) and missing.code == "not_found"
    served(p.Set(name="x", value="1", mode="create"))
    taken = served(p.Set(name="x", value="2", mode="create"))
    assert isinstance(taken, p.Error) and taken.code == "exists"
    with served.state.audit.trail() as trail:
        ops = [(r.op, r.outcome) for r in trail.search(Query(), 10)]
    assert ("get", "not_found") in ops and ("set", "ok") in ops


def test_a_locked_agent_does_not_reach_the_store(served):
    served(p.Set(name="x", value="1"))
    served(p.Lock())
    for request in (p.Get(name="x"), p.List(), p.Set(name="y", value="2"), p.Describe(name="x")):
        reply = served(request)
        assert isinstance(reply, p.Error) and reply.code == "locked"
    assert served.state.memory.entry_count == 1
