"""A mount made of dictionaries (tests/daemon/memory_store.py with a name and a state),
and an agent whose entries are a router over such stores, served through the real
dispatcher on an event loop in this process (test_store_seam.py's MemoryState)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import msgspec

from credd import protocol as p
from credd.daemon import dispatch
from credd.daemon.router import Router
from credd.daemon.state import Config
from credd.protocol import EntryMeta, MountInfo
from tests.daemon.memory_store import MemoryStore
from tests.daemon.test_store_seam import MemoryState, _Caller


class MemoryMount(MemoryStore):
    """A writable mount; `remote` ones record the thread of each read and can be held."""

    backend = "memory"
    read_only = False

    def __init__(self, name: str, *, remote: bool = False) -> None:
        super().__init__()
        self.name, self.remote = name, remote
        self.threads: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.closed = False

    def info(self) -> MountInfo:
        return MountInfo(name=self.name, backend=self.backend)

    def close(self) -> None:
        self.closed = True

    def get(self, name: str, field: str | None = None) -> str:
        self.threads.append(threading.current_thread().name)
        self.release.wait(10)
        return super().get(name, field)

    def entries(self) -> list[EntryMeta]:  # type: ignore[override]
        return [msgspec.structs.replace(m, mount=self.name) for m in super().entries()]


class Served:
    """ask(request) → reply through dispatch; ask_async for requests run concurrently."""

    def __init__(self, tmp_path: Any, router: Router) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        config = Config(socket=str(tmp_path / "s.sock"), vault=str(tmp_path / "none" / "v.db"),
                        state_dir=str(tmp_path / "state"),
                        config_file=str(tmp_path / "none" / "config.toml"))
        self.state = MemoryState(config, router)  # type: ignore[arg-type]  # any EntryStore
        self.state.opened(idle=600, lifetime=3600)
        self.caller = _Caller()

    async def ask_async(self, request: p._Message) -> p.Response:
        reply = dispatch.dispatch(self.state, self.caller, p.encode(request)[4:])
        done = await reply if asyncio.iscoroutine(reply) else reply
        return p.decode_response(p.encode(done)[4:])  # type: ignore[arg-type]

    def __call__(self, request: p._Message) -> p.Response:
        return self.loop.run_until_complete(self.ask_async(request))

    def close(self) -> None:
        self.loop.run_until_complete(self.state.close())
        self.loop.close()
        asyncio.set_event_loop(None)


def served(tmp_path: Any, router: Router) -> Iterator[Served]:
    server = Served(tmp_path, router)
    yield server
    server.close()
