"""Stopping the agent while clients are still knocking: no traceback, nothing left behind.

issue 12: a socket-activated agent logged `InvalidStateError` (after `Bad file
descriptor`) in asyncio's `_sock_accept` on `credd stop`: the accept task was
cancelled and the listener closed while the accept callback for a client that had
just connected (`credd stop` probing the socket) was already queued.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from credd.daemon.listener import Listener
from credd.daemon.server import Server
from credd.daemon.state import AgentState, Config


def test_a_client_connecting_as_stop_is_answered_leaves_no_loop_error(tmp_path):
    """Deterministic: the client connects in the same loop pass that sets `stopping`, so
    its accept callback is queued when the server stops accepting."""
    path = str(tmp_path / "s.sock")
    config = Config(socket=path, vault=str(tmp_path / "v" / "vault.db"),
                    state_dir=str(tmp_path / "state"))
    errors: list[dict[str, Any]] = []
    knocking: list[socket.socket] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        listener = Listener.bind(path)
        state = AgentState(config)
        try:
            server = asyncio.create_task(Server(state, listener).run())
            await asyncio.sleep(0.05)  # accepting

            def knock_and_stop() -> None:
                for _ in range(3):
                    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    client.connect(path)  # completes in the backlog, before any accept
                    knocking.append(client)
                state.stopping.set()

            loop.call_soon(knock_and_stop)
            await asyncio.wait_for(server, 10)
            await asyncio.sleep(0.05)  # a late callback would run here
        finally:
            await state.close()
            listener.close()

    try:
        asyncio.run(main())
    finally:
        for client in knocking:
            client.close()
    assert not errors, [(c.get("message"), repr(c.get("exception"))) for c in errors]
