"""Fixtures for the mount tests: a real OpenBao dev server (tests/mounts/bao.py), one
per module for most tests and a fresh one for tests that seal or kill it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from tests.mounts.bao import ROOT_TOKEN, BaoServer


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A dev server shared by a module's tests (each test works under its own prefix)."""
    server = BaoServer(tmp_path_factory.mktemp("bao")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_bao(tmp_path) -> Iterator[BaoServer]:
    """A dev server of this test's own, for tests that seal, kill or restart it."""
    server = BaoServer(tmp_path / "bao").start()
    yield server
    server.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A KV path prefix unique to the test, so tests sharing a server never meet."""
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60] + "/"


@pytest.fixture
def refs() -> dict[str, str]:
    """The `credd://` references a store resolves (the local vault's part, in these tests)."""
    return {"credd://bao/token": ROOT_TOKEN}


@pytest.fixture
def make_store(refs) -> Iterator[Callable[..., object]]:
    """OpenBaoStore factory over a real server; every store is closed at teardown."""
    from credd.daemon.mounts.config import MountConfig
    from credd.daemon.mounts.openbao import OpenBaoStore
    stores: list[OpenBaoStore] = []

    def make(server: BaoServer, prefix: str = "", name: str = "team", **options: object
             ) -> OpenBaoStore:
        options.setdefault("token", "credd://bao/token")
        config = MountConfig(name=name, backend="openbao", url=server.url, prefix=prefix,
                             **options)  # type: ignore[arg-type]
        store = OpenBaoStore(config, refs.__getitem__)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
