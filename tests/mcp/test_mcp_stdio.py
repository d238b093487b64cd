"""`credd mcp` as an MCP client starts it: a subprocess on stdio, inside a real
`credd session`, spoken to with the SDK's stdio client. This process stays the
owner, and answers access requests with the real `credd grant approve|deny`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.mcp.conftest import assert_no_value

pytestmark = pytest.mark.timeout(90)

CREDD = [sys.executable, "-m", "credd"]


def serve(credd_env: dict[str, str], grant_id: str, *calls: tuple[str, dict[str, Any]]
          ) -> list[tuple[bool, str, Any]]:
    """Start `credd session --grant ID -- credd mcp`, make `calls`, return their results."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "credd", "session", "--grant", grant_id, "--",
                                      *CREDD, "mcp"], env=credd_env)

    async def main() -> list[tuple[bool, str, Any]]:
        results = []
        async with Client(params, read_timeout_seconds=60) as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == {
                "list_names", "describe", "run_with_secrets", "request_access"}
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                text = "\n".join(c.text for c in result.content if hasattr(c, "text"))
                assert_no_value(text, repr(result.structured_content))
                results.append((bool(result.is_error), text, result.structured_content))
        return results
    return anyio.run(main)


def answer_with_the_cli(run_credd, verb: str) -> threading.Thread:
    """`credd grant approve|deny` for the first request that waits, as the owner would."""
    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = run_credd("grant", "ls", "--json")
            if '"r_' in listed.stdout:
                request = listed.stdout.split('"r_', 1)[1].split('"', 1)[0]
                done = run_credd("grant", verb, "r_" + request)
                assert done.returncode == 0, done.stderr
                return
            time.sleep(0.1)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_session_bound_server(credd_env, grant, run_credd):
    g = grant()
    answering = answer_with_the_cli(run_credd, "approve")
    (names, run, asked, after) = serve(
        credd_env, g.id, ("list_names", {}),
        ("run_with_secrets", {"argv": ["sh", "-c", 'echo "token=$T"; exit 4'],
                              "env": {"T": "credd://github/token"}}),
        ("request_access", {"names": ["aws/*"], "reason": "deploy staging"}),
        ("list_names", {}))
    answering.join(30)
    assert [e["name"] for e in names[2]["entries"]] == ["github/token", "stripe/key"]
    assert run[2]["exit_code"] == 4 and run[2]["stdout"] == "token=<concealed by credd>\n"
    assert asked[2]["approved"], asked[1]
    assert "aws/key" in [e["name"] for e in after[2]["entries"]]


def test_a_denial_through_the_cli(credd_env, grant, run_credd):
    answering = answer_with_the_cli(run_credd, "deny")
    ((_, _, asked),) = serve(credd_env, grant().id,
                             ("request_access", {"names": ["aws/*"], "reason": "x"}))
    answering.join(30)
    assert not asked["approved"] and "denied" in asked["message"]


def test_unbound_is_refused(agent, run_credd):
    done = run_credd("mcp", input="")
    assert done.returncode == 7
    assert "--allow-owner" in done.stderr and "every name in the vault" in done.stderr


def test_without_the_extra_it_says_how_to_install(credd_env):
    code = ("import sys; sys.modules['mcp'] = None\n"
            "from credd.cli import main; sys.exit(main(['mcp']))")
    done = subprocess.run([sys.executable, "-c", code], env=credd_env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "pip install 'credd[mcp]'" in done.stderr
