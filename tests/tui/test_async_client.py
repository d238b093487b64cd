"""credd.async_client.AsyncClient against a real agent: replies, errors, events."""

from __future__ import annotations

import asyncio

import pytest

from credd import protocol as p
from credd.async_client import AsyncClient
from credd.errors import AgentUnavailable, BadPassphrase, LockedError, NotFound
from tests.conftest import SENTINEL, TEST_PASSPHRASE


def test_calls_map_replies_and_errors(unlocked_agent):
    async def scenario():
        async with AsyncClient(unlocked_agent.socket) as c:
            meta = await c.set("a/b", value=SENTINEL, service="svc",
                               fields=[p.Field(name="user", value="me", secret=False)])
            assert meta.name == "a/b" and meta.service == "svc"
            assert await c.get("a/b") == SENTINEL
            assert await c.get("a/b", "user") == "me"
            assert [m.name for m in await c.list()] == ["a/b"]
            assert (await c.reveal("a/b")).value == SENTINEL
            with pytest.raises(NotFound):
                await c.get("missing")
            assert (await c.describe("a/b")).fields == {"user": "me"}   # connection still usable
            await c.delete("a/b")
            assert [m.name for m in await c.trash()] == ["a/b"]
            await c.undelete("a/b")
            await c.lock()
            with pytest.raises(LockedError):
                await c.get("a/b")
            with pytest.raises(BadPassphrase):
                await c.unlock("wrong")
            assert (await c.unlock(TEST_PASSPHRASE)).state == "unlocked"
    asyncio.run(scenario())


def test_concurrent_calls_each_get_their_own_reply(unlocked_agent):
    async def scenario():
        async with AsyncClient(unlocked_agent.socket) as c:
            for i in range(10):
                await c.set(f"e{i}", value=f"v{i}")
            values = await asyncio.gather(*(c.get(f"e{i}") for i in range(10)))
            assert values == [f"v{i}" for i in range(10)]
    asyncio.run(scenario())


def test_events_follow_other_clients(unlocked_agent):
    async def scenario():
        client = AsyncClient(unlocked_agent.socket)
        events = client.events()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.3)  # let the subscription settle
        with unlocked_agent.client() as c:
            c.set("x", value="1")
            c.lock()
        changed = await asyncio.wait_for(first, 5)
        locked = await asyncio.wait_for(events.__anext__(), 5)
        await events.aclose()
        return changed, locked
    changed, locked = asyncio.run(scenario())
    assert isinstance(changed, p.EntryChanged) and changed.name == "x"
    assert isinstance(locked, p.Locked)


def test_no_agent_is_agent_unavailable(agent):
    agent.stop()

    async def scenario():
        with pytest.raises(AgentUnavailable):
            await AsyncClient(agent.socket).status()
    asyncio.run(scenario())


def test_rekey_returns_the_new_recovery_key(unlocked_agent):
    """The agent answers rekey with the new recovery key: the old one stops working
    once the rekey commits, so losing the reply would lock the user out of recovery."""
    async def scenario():
        async with AsyncClient(unlocked_agent.socket) as c:
            await c.set("kept", value=SENTINEL)
            recovery = await c.rekey(proof=TEST_PASSPHRASE)
            await c.lock()
            assert (await c.unlock(recovery_key=recovery)).state == "unlocked"
            assert await c.get("kept") == SENTINEL
    asyncio.run(scenario())


def test_list_follows_pages(unlocked_agent):
    async def scenario():
        async with AsyncClient(unlocked_agent.socket) as c:
            for i in range(25):
                await c.set(f"e{i:02d}", value="v")
            assert [m.name for m in await c.list(limit=4)] == [f"e{i:02d}" for i in range(25)]
            assert await c.status()  # the pipelined pages left nothing unread
    asyncio.run(scenario())


def test_a_dropped_connection_is_reported_then_reconnected(make_agent):
    agent = make_agent()

    async def scenario():
        c = AsyncClient(agent.socket)
        assert (await c.status()).state == "no_vault"
        agent.stop()
        make_agent()
        with pytest.raises(AgentUnavailable):
            await c.status()  # the old connection is dead: a typed error, never a hang
        assert (await c.status()).state == "no_vault"  # a fresh connection
        await c.close()
    asyncio.run(scenario())
