"""The two clients and the fast path over the one core: same words, same checks.

A fake agent is used only for what a real one cannot be made to do: hang up
in the middle of a request, fall silent, or answer with the wrong type.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable

import pytest

from credd import errors
from credd import protocol as p
from credd.async_client import AsyncClient
from credd.cli import fast
from credd.client import Client
from credd.wire import connect

WELCOME = p.Welcome(protocol=p.PROTOCOL_VERSION, version="fake", pid=1)


def fake_agent(path: str, answer: Callable[[socket.socket, int], None],
               connections: int = 1) -> None:
    """Welcome each connection's hello, then let `answer(conn, n)` treat its next request."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(connections)

    def run() -> None:
        with server:
            for n in range(connections):
                conn, _ = server.accept()
                with conn:
                    read_frame(conn)
                    conn.sendall(p.encode(WELCOME))
                    answer(conn, n)

    threading.Thread(target=run, daemon=True).start()


def read_frame(conn: socket.socket) -> bytes:
    header = conn.recv(4, socket.MSG_WAITALL)
    return conn.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)


def hang_up(conn: socket.socket, n: int) -> None:
    read_frame(conn)


def fall_silent(conn: socket.socket, n: int) -> None:
    read_frame(conn)
    conn.recv(1)  # until the client gives up and closes


def sync_status(path: str) -> None:
    Client(path, timeout=0.5).status()


def async_status(path: str) -> None:
    asyncio.run(AsyncClient(path, timeout=0.5).status())


def fast_status(path: str) -> None:
    fast.status_dict(connect(path, timeout=0.5))


@pytest.mark.parametrize("behaviour", [hang_up, fall_silent], ids=lambda f: f.__name__)
def test_one_wording_for_a_lost_agent(tmp_path, behaviour):
    messages = []
    for n, status in enumerate((sync_status, async_status, fast_status)):
        path = str(tmp_path / f"a{n}.sock")
        fake_agent(path, behaviour)
        with pytest.raises(errors.AgentUnavailable) as info:
            status(path)
        messages.append(info.value.message)
    assert len(set(messages)) == 1, messages
    assert ("closed the connection" if behaviour is hang_up else "did not answer in time") \
        in messages[0]


def answer_ok(conn: socket.socket, n: int) -> None:
    read_frame(conn)
    conn.sendall(p.encode(p.Ok()))
    if n == 0:
        conn.recv(1)  # the client drops this connection itself


class TestReplyOfTheWrongType:
    """What the table says a request gets is all a client accepts, and a connection that
    carried a wrong reply is dropped (the next call opens a fresh one)."""

    def test_sync(self, tmp_path):
        path = str(tmp_path / "a.sock")
        fake_agent(path, answer_ok, connections=2)
        c = Client(path, timeout=5)
        with pytest.raises(errors.ProtocolError, match="answered 'get' with 'ok'"):
            c.get("x")
        assert c._conn is None
        c.lock()  # `ok` is what lock asks for, on a new connection

    def test_async(self, tmp_path):
        path = str(tmp_path / "a.sock")
        fake_agent(path, answer_ok, connections=2)

        async def scenario() -> None:
            c = AsyncClient(path, timeout=5)
            with pytest.raises(errors.ProtocolError, match="answered 'get' with 'ok'"):
                await c.get("x")
            assert c._conn is None
            await c.lock()
            await c.close()
        asyncio.run(scenario())


def test_bad_arguments_fail_before_connecting(tmp_path):
    nowhere = str(tmp_path / "none.sock")
    with pytest.raises(errors.BadRequest, match="colour"):
        Client(nowhere).set("x", colour="red")
    with pytest.raises(errors.BadRequest, match="colour"):
        Client(nowhere).list(colour="red")
    with pytest.raises(errors.BadRequest, match="colour"):
        asyncio.run(AsyncClient(nowhere).set("x", colour="red"))
    assert not os.path.exists(nowhere)
