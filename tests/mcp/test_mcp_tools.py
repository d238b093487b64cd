"""The MCP tools in-process, through the SDK's own client, against a real agent.

This process is bound to a `use` grant through a real session (conftest.py):
each tool call is a connection the agent binds by ancestry, exactly as for
`credd mcp` inside `credd session`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import anyio
import pytest
from mcp import Client

from credd.mcp_server import Agent, build
from tests.mcp.conftest import HIDDEN, OTHER, SECRET, assert_no_value

pytestmark = pytest.mark.timeout(60)

SHOW = ("import base64, os, sys\n"
        "v = os.environ['K'].encode()\n"
        "print(v.decode()); print(base64.b64encode(v).decode()); print(v.hex())\n"
        "print(os.environ['T'], file=sys.stderr); sys.exit(3)\n")


def call(tool: str, **arguments: Any) -> tuple[bool, str, Any]:
    """(is_error, every text the model would read, the structured result) of one call."""
    async def main() -> tuple[bool, str, Any]:
        async with Client(build(Agent())) as client:
            result = await client.call_tool(tool, arguments)
            texts = [c.text for c in result.content if hasattr(c, "text")]
            return bool(result.is_error), "\n".join(texts), result.structured_content
    return anyio.run(main)


def ok(tool: str, **arguments: Any) -> dict[str, Any]:
    failed, text, data = call(tool, **arguments)
    assert not failed, text
    assert_no_value(text, repr(data))
    return data


class TestTools:
    def test_lists_covered_names_only(self, grant, bound):
        g = grant()
        bound(g)
        data = ok("list_names")
        assert data["grant"]["id"] == g.id and data["grant"]["mode"] == "use"
        assert [(e["name"], e["kind"], e["service"]) for e in data["entries"]] == [
            ("github/token", "access_token", "github"), ("stripe/key", "api_key", "stripe")]
        assert data["entries"][1]["expires"] == "2100-01-01T00:00:00+00:00"
        assert set(data["entries"][0]) == {"name", "kind", "service", "expires"}

    def test_describe_is_metadata_only(self, grant, bound):
        bound(grant())
        data = ok("describe", name="stripe/key")
        assert data["reference"] == "credd://stripe/key" and data["fields"] == ["account", "pin"]
        failed, text, _ = call("describe", name="aws/key")
        assert failed and "no entry named 'aws/key'" in text  # uncovered: as if absent

    def test_run_with_secrets_masks_and_returns_the_status(self, grant, bound):
        bound(grant())
        data = ok("run_with_secrets", argv=[sys.executable, "-c", SHOW],
                  env={"K": "credd://stripe/key", "T": "credd://github/token"})
        assert data["exit_code"] == 3 and not data["timed_out"] and not data["truncated"]
        assert data["stdout"].count("<concealed by credd>") == 3
        assert data["stderr"].strip() == "<concealed by credd>"

    def test_run_output_is_bounded(self, grant, bound):
        bound(grant())
        data = ok("run_with_secrets", argv=[sys.executable, "-c",
                                            "print('a' * 200000, end=''); print('END')"])
        assert data["truncated"] and data["stdout_bytes"] == 200004
        assert data["stdout"].endswith("END\n") and len(data["stdout"]) < 70000

    def test_run_timeout_ends_the_command(self, grant, bound):
        bound(grant())
        started = time.monotonic()
        data = ok("run_with_secrets", argv=["sleep", "30"], timeout_seconds=1)
        assert data["timed_out"] and data["signal"] == 15
        assert time.monotonic() - started < 10

    def test_uncovered_reference_is_not_found(self, grant, bound):
        bound(grant())
        failed, text, _ = call("run_with_secrets", argv=["true"], env={"X": "credd://aws/key"})
        assert failed and "aws/key" in text and HIDDEN not in text

    def test_not_a_reference(self, grant, bound):
        bound(grant())
        failed, text, _ = call("run_with_secrets", argv=["true"], env={"X": SECRET})
        assert failed and "not a reference" in text


class TestRequestAccess:
    def answer(self, owner, approve: bool) -> threading.Thread:
        """The owner answers the first access request that waits (a connection of its own)."""
        def run() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pending = owner.grants().pending
                if pending:
                    (request,) = pending
                    assert (request.op, request.names, request.mode) == (
                        "request_access", ("aws/*",), "use")
                    assert request.reason == "deploy staging" and "(mcp)" in request.program
                    owner.grant_answer(request.id, approve)
                    return
                time.sleep(0.05)
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def test_approved(self, grant, bound, owner):
        g = grant()
        bound(g)
        answering = self.answer(owner, True)
        data = ok("request_access", names=["aws/*"], reason="deploy staging")
        answering.join(5)
        assert data["approved"] and "aws/*" in data["grant"]["names"]
        assert owner.grants().grants[0].names == ("stripe/*", "github/token", "aws/*")
        assert "aws/key" in [e["name"] for e in ok("list_names")["entries"]]
        run = ok("run_with_secrets", argv=["sh", "-c", 'echo "$X"'], env={"X": "credd://aws/key"})
        assert run["stdout"] == "<concealed by credd>\n"

    def test_denied(self, grant, bound, owner):
        bound(grant())
        answering = self.answer(owner, False)
        data = ok("request_access", names=["aws/*"], reason="deploy staging")
        answering.join(5)
        assert not data["approved"] and "denied" in data["message"]
        assert "aws/key" not in [e["name"] for e in ok("list_names")["entries"]]

    def test_timed_out(self, grant, bound, owner):
        bound(grant())
        started = time.monotonic()
        data = ok("request_access", names=["aws/*"], reason="deploy staging")
        assert not data["approved"] and "did not answer" in data["message"]
        assert 2.5 < time.monotonic() - started < 10
        assert owner.grants().pending == []


def test_the_owner_is_refused(agent):
    from credd.errors import Denied
    with pytest.raises(Denied, match="--allow-owner"):
        Agent().binding(allow_owner=False)
    assert Agent().binding(allow_owner=True).grant == ""


def test_every_call_is_audited_as_mcp(grant, bound, owner):
    bound(grant())
    ok("list_names")
    ok("describe", name="stripe/key")
    ok("run_with_secrets", argv=["true"], env={"K": "credd://stripe/key"})
    records = [r for r in owner.audit(limit=100) if r.source == "mcp"]
    assert {"list", "describe", "run"} <= {r.op for r in records}
    assert all(r.source == "" for r in owner.audit(limit=100) if r.op == "set")
    assert OTHER  # (used by conftest's checks)
