"""`credd mcp`: an MCP server (stdio) whose tools use credentials and never return one.

An AI agent's tool results land in its transcript and its provider's logs,
so no tool here hands out a value, a length, a mask or a prefix: the model
sees names and metadata, runs commands that the agent starts with the
secrets and masks (`run` through the agent, captured_run.py), and asks the
owner for more (`request_access`). The server runs bound (a `credd session`
or a grant's socket): the grant, not this process, is the wall, and this
process holds no value at any time. Unbound, it would serve the owner's
whole vault, so it refuses unless told `allow_owner`.

Each tool call opens its own connection, declaring `source=mcp` in its
hello: the agent's audit records of it say so, and a connection made after
an approved `request_access` sees the wider grant. Only this module imports
the `mcp` SDK (the `credd[mcp]` extra); docs/mcp.md is the user's view.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from credd import __version__, captured_run
from credd import protocol as p
from credd.client import Client
from credd.errors import CreddError, Denied
from credd.refs import parse

SOURCE = "mcp"
CLIENT = "credd-mcp"
RUN_TIMEOUT = 300.0
MAX_RUN_TIMEOUT = 3600.0
ASK_TIMEOUT = 3600.0  # the agent's approval timeout is what bounds request_access
T = TypeVar("T")

INSTRUCTIONS = """\
credd lends this session credentials it cannot read. Find names with list_names and
describe; use them with run_with_secrets (env maps a variable to credd://NAME or
credd://NAME/FIELD; the command's output comes back with secret values masked); ask the
owner for names you are not lent with request_access (it waits for their answer). No tool
returns a secret value. Never print secrets on purpose: masking is best effort."""


class Agent:
    """The credd agent as the tools reach it: a fresh connection per call."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path

    def call(self, use: Callable[[Client], T], timeout: float = 30.0) -> T:
        """`use(client)` on a new connection; credd's errors become the tool's error text
        (they carry names at most, never a value)."""
        with _reported(), Client(self.socket_path, client_name=CLIENT, source=SOURCE,
                    timeout=timeout) as client:
            return use(client)

    def binding(self, allow_owner: bool) -> p.Welcome:
        """The agent's welcome, after checking this server is bound (or allowed not to be)."""
        with Client(self.socket_path, client_name=CLIENT, source=SOURCE) as client:
            welcome = client.hello()
        if not welcome.grant and not allow_owner:
            raise Denied("credd mcp serves a grant, not the owner: an unbound server would hand "
                         "the model every name in the vault and run commands with any secret. "
                         "Start it inside `credd session --grant ID -- ...` (or on a grant's "
                         "socket), or pass --allow-owner if that is what you mean")
        if "run" not in welcome.capabilities:
            raise Denied(f"the agent (credd {welcome.version}) cannot run commands for a "
                         "client; restart it with this credd")
        return welcome


class Tools:
    """The tools, each a plain function of JSON values (the SDK builds their schemas)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def list_names(self, prefix: str = "") -> dict[str, Any]:
        """The entries this session may use: name, kind, service and expiry (never a
        value, length or part of one), and the grant lending them."""
        def ask(c: Client) -> tuple[list[p.EntryMeta], list[p.Grant], str]:
            return c.list(prefix=prefix), c.grants().grants, c.hello().grant
        entries, grants, grant_id = self.agent.call(ask)
        grant = next((g for g in grants if g.id == grant_id), None)
        return {"grant": _grant(grant) if grant else None,
                "entries": [{"name": m.name, "kind": m.kind, "service": m.service,
                             "expires": _when(m.expires)} for m in entries]}

    def describe(self, name: str) -> dict[str, Any]:
        """Metadata of one entry: kind, service, tags, the names of its fields, times. No
        value, not even of fields marked non-secret: use them with run_with_secrets."""
        meta = self.agent.call(lambda c: c.describe(name))
        return {"name": meta.name, "reference": f"credd://{meta.name}", "kind": meta.kind,
                "service": meta.service, "tags": list(meta.tags),
                "fields": sorted({*meta.fields, *meta.secret_fields}),
                "has_value": meta.has_value, "has_notes": meta.has_notes,
                "version": meta.version, "created": _when(meta.created),
                "updated": _when(meta.updated), "expires": _when(meta.expires),
                "rotate_after_days": meta.rotate_after / 86400 if meta.rotate_after else None,
                "mount": meta.mount or None}

    def run_with_secrets(self, argv: list[str], env: dict[str, str] | None = None,
                         cwd: str = "", timeout_seconds: float = RUN_TIMEOUT) -> dict[str, Any]:
        """Run a command with secrets in its environment: `env` maps a variable to a
        reference (credd://NAME or credd://NAME/FIELD). The credd agent starts the command
        and masks every secret value (and its common encodings) in its output; stdin is
        empty; the output kept is bounded (the first and last 32 KiB of each stream).
        Returns the exit code and the masked output. Masking is best effort: do not try
        to print secrets."""
        refs = env or {}
        if not argv:
            raise ToolError("argv is empty: give the command and its arguments")
        for ref in refs.values():
            _check_ref(ref)
        if not 0 < timeout_seconds <= MAX_RUN_TIMEOUT:
            raise ToolError(f"timeout_seconds is more than 0 and at most {MAX_RUN_TIMEOUT:.0f}")
        with _reported():
            done = captured_run.run(argv, refs, env=dict(os.environ), cwd=cwd or os.getcwd(),
                                    timeout=timeout_seconds, socket_path=self.agent.socket_path,
                                    client=CLIENT, source=SOURCE)
        return {"exit_code": done.code, "signal": done.signal or None,
                "timed_out": done.timed_out,
                "stdout": done.stdout.text, "stderr": done.stderr.text,
                "stdout_bytes": done.stdout.size, "stderr_bytes": done.stderr.size,
                "truncated": bool(done.stdout.omitted or done.stderr.omitted)}

    def request_access(self, names: list[str], reason: str,
                       mode: Literal["use", "read", "write"] = "use") -> dict[str, Any]:
        """Ask the owner to lend this session more entries (exact names or globs such as
        `aws/*`), saying why. Waits for the owner's answer (`credd grant approve|deny`, or
        the TUI); returns whether it was approved. `use` is all these tools need."""
        try:
            with Client(self.agent.socket_path, client_name=CLIENT, source=SOURCE,
                        timeout=ASK_TIMEOUT) as client:
                grant = client.request_access(names, mode, reason)
        except Denied as exc:  # denied, unanswered in time, or the grant ended meanwhile
            return {"approved": False, "message": exc.message}
        except CreddError as exc:
            raise ToolError(exc.message) from None
        return {"approved": True, "grant": _grant(grant),
                "message": "approved: the names are usable from the next tool call on"}


def build(agent: Agent) -> MCPServer[Any]:
    """The server with its four tools."""
    tools = Tools(agent)
    server: MCPServer[Any] = MCPServer("credd", version=__version__, instructions=INSTRUCTIONS)
    looks = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    server.add_tool(tools.list_names, annotations=looks)
    server.add_tool(tools.describe, annotations=looks)
    server.add_tool(tools.run_with_secrets,
                    annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True))
    server.add_tool(tools.request_access,
                    annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False))
    return server


def serve(socket_path: str | None = None, allow_owner: bool = False) -> None:
    """Check the binding, then serve MCP on stdin/stdout until the client hangs up."""
    agent = Agent(socket_path)
    agent.binding(allow_owner)
    build(agent).run("stdio")


@contextmanager
def _reported() -> Iterator[None]:
    """credd's errors as the tool's error text: they name names at most, never a value."""
    try:
        yield
    except CreddError as exc:
        raise ToolError(exc.message) from None


def _check_ref(ref: str) -> None:
    with _reported():
        parse(ref)


def _grant(grant: p.Grant) -> dict[str, Any]:
    return {"id": grant.id, "mode": grant.mode, "names": list(grant.names),
            "expires": _when(grant.expires), "label": grant.label or None,
            "uses_left": None if grant.uses is None else grant.uses - grant.used}


def _when(t: float | None) -> str | None:
    """An RFC 3339 time in UTC, or None."""
    if not t:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
