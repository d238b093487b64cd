"""A real agent with entries and grants, for the MCP server's tests.

The in-process tests make this test process a session root: every
connection it opens after `session_open` (the tools' own) is bound to the
grant, while `owner`, opened before, stays the owner's (a binding is decided
at accept). The stdio tests start `credd session --grant ID -- credd mcp`
instead, so this process and the `credd grant` commands it runs are the owner.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

from credd import protocol as p
from credd.client import Client
from tests.conftest import SENTINEL, Agent

pytest.importorskip("mcp", reason="the mcp extra is part of `make test` (credd[test])")

#: The covered secret: the test-wide sentinel, and characters each encoding changes.
SECRET = SENTINEL + '/+?"&\\=~'
OTHER = "ghp_" + "Q7w" * 12  # covered too
HIDDEN = "uncovered-" + "z9" * 12  # in the vault, outside the grant
PIN = "pin-" + "4k" * 8  # a secret field of the covered entry


def encodings(value: str) -> list[str]:
    """The value and the encodings credd masks, as a leak would show them."""
    raw = value.encode()
    return [value, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
            raw.hex(), raw.hex().upper(), quote(value, safe=""), json.dumps(value)[1:-1]]


def assert_no_value(*texts: str) -> None:
    for text in texts:
        for secret in (SECRET, OTHER, HIDDEN, PIN, "acct_visible"):
            for form in encodings(secret):
                assert form not in text, "a secret value (or an encoding of it) was returned"


@pytest.fixture
def agent(make_agent) -> Agent:
    """Approval requests time out after 3 s, so a test of the timeout is short."""
    agent = make_agent("--approval-timeout", "3s")
    agent.init_and_unlock()
    with agent.client() as c:
        c.set("stripe/key", value=SECRET, kind="api_key", service="stripe",
              fields=[p.Field(name="account", value="acct_visible", secret=False),
                      p.Field(name="pin", value=PIN)], expires=4102444800.0)
        c.set("github/token", value=OTHER, kind="access_token", service="github")
        c.set("aws/key", value=HIDDEN, kind="api_key", service="aws")
    return agent


@pytest.fixture
def owner(agent) -> Iterator[Client]:
    """The owner's connection, opened before any session: it stays the owner's."""
    with agent.client() as c:
        c.hello()
        yield c


@pytest.fixture
def grant(owner) -> Callable[..., p.Grant]:
    def make(names=("stripe/*", "github/token"), mode="use", **kw) -> p.Grant:
        return owner.grant_create(list(names), mode, label="mcp test", **kw)
    return make


@pytest.fixture
def bound(agent, owner) -> Iterator[Callable[[p.Grant], None]]:
    """bound(grant): this process becomes a session root bound to `grant`."""
    roots: list[tuple[Client, str]] = []

    def open_session(g: p.Grant) -> None:
        root = agent.client()
        root.hello()  # accepted as the owner, before the session exists
        roots.append((root, root.session_open(g.id).session))

    yield open_session
    for root, session in roots:
        root.session_close(session)
        root.close()
