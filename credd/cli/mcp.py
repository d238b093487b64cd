"""`credd mcp`: serve MCP on stdio for an AI agent (credd/mcp_server.py, docs/mcp.md).

The server needs the `mcp` SDK, an optional extra: without it the command
says how to install it. It is imported only here, never by another command.
"""

from __future__ import annotations

import argparse

from credd.errors import BadRequest

INSTALL_HINT = ("credd mcp needs the MCP SDK, an optional extra: pip install 'credd[mcp]' "
                "(or `pipx inject credd mcp`)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "mcp", help="serve MCP on stdio: tools for an AI agent that use credentials without "
                    "returning them (run it inside `credd session`)",
        description="An MCP server on stdin/stdout. Its tools list names, describe entries, "
                    "run commands with secrets (masked output) and ask the owner for access; "
                    "none returns a value. It refuses to serve the owner's whole vault: run it "
                    "bound, e.g. `credd session --grant ID -- credd mcp` (docs/mcp.md).")
    p.add_argument("--allow-owner", action="store_true",
                   help="serve even when not bound to a grant: the model then sees every name "
                        "in the vault and can run commands with any secret")
    p.set_defaults(func=cmd_mcp)


def cmd_mcp(ns: argparse.Namespace) -> int:
    try:
        from credd import mcp_server
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"mcp", "mcp_types", "pydantic", "anyio"}:
            raise BadRequest(INSTALL_HINT) from None
        raise
    mcp_server.serve(allow_owner=ns.allow_owner)
    return 0
