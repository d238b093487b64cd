"""Fixtures for driving credtui against a real agent.

Each scenario is an `async def` run with `asyncio.run` (no pytest-asyncio);
`run_app` opens the app with `App.run_test`, and `wait_until` polls the UI
instead of sleeping a fixed time. Terminal output (OSC 52) is captured at the
headless driver, the one place bytes leave the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from textual.drivers.headless_driver import HeadlessDriver

from tests.conftest import FAST_KDF, SENTINEL

ENTRIES = [
    dict(name="github/work/token", kind="access_token", service="github.com",
         tags=["work", "ci"], value=SENTINEL),
    dict(name="github/personal", kind="password", service="github.com", value="p3rsonal-pw"),
    dict(name="aws/prod/key", kind="api_key", service="aws", tags=["prod"], value="AKIAEXAMPLE",
         fields=[{"name": "region", "value": "eu-west-1", "secret": False},
                 {"name": "secret_key", "value": "wJalrEXAMPLE", "secret": True}]),
    dict(name="db/main", kind="connection_string", service="postgres",
         value="postgres://u:pw@db/main", rotate_after=1.0),
]


def seed(agent, entries=ENTRIES) -> None:
    """Write entries through the real sync client."""
    from credd.protocol import Field
    with agent.client() as c:
        for given in entries:
            spec = dict(given)
            if "fields" in spec:
                spec["fields"] = [Field(**f) for f in spec["fields"]]
            c.set(spec.pop("name"), **spec)


def screen_text(app) -> str:
    """What the terminal shows right now, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_until(pilot, condition, timeout: float = 5.0, what: str = "condition") -> float:
    """Poll `condition()` while the app runs; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                                 f"screen: {type(pilot.app.screen).__name__}\n"
                                 f"{screen_text(pilot.app)}")
        await pilot.pause(0.05)
    return time.monotonic() - start


def screen_is(app, name: str) -> bool:
    return type(app.screen).__name__ == name


@pytest.fixture
def osc_log(monkeypatch) -> list[str]:
    """Every OSC 52 sequence the app writes to its (headless) terminal."""
    sent: list[str] = []
    original = HeadlessDriver.write

    def write(self, data: str) -> None:
        if data.startswith("\x1b]52;"):
            sent.append(data)
        original(self, data)

    monkeypatch.setattr(HeadlessDriver, "write", write)
    return sent


@pytest.fixture
def make_app():
    """CredApp with test-friendly timings and fast KDF for vault creation."""
    def factory(agent, **kwargs):
        from credtui.app import CredApp
        options = dict(reveal_seconds=30.0, clip_seconds=45.0, init_kdf=FAST_KDF,
                       clipboard="osc52", status_every=30.0)
        options.update(kwargs)
        return CredApp(agent.socket, **options)
    return factory


@pytest.fixture
def run():
    """Run an async scenario to completion on a fresh event loop."""
    def runner(coro):
        return asyncio.run(coro)
    return runner


@contextlib.asynccontextmanager
async def running(app, size=(100, 30), notifications: bool = False):
    """Pilot on `app`; toasts are drawn only when asked for (run_test leaves them out)."""
    async with app.run_test(size=size, notifications=notifications) as pilot:
        yield pilot


@pytest.fixture
def browsing(unlocked_agent):
    """An unlocked agent holding ENTRIES."""
    seed(unlocked_agent)
    return unlocked_agent
