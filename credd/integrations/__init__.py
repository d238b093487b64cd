"""Helpers that other programs call: git, Docker, Python keyring, AWS.

Each is a thin client of the agent. They share the rules below: connect with
a short timeout (a helper must never hang the program that called it),
never prompt, and when the agent is absent or locked say so on stderr in one
line and fall back to the protocol's "not found".
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from credd.client import Client

#: A helper waits at most this long for the agent.
TIMEOUT = 5.0


def client(name: str) -> Client:
    from credd.client import Client
    return Client(client_name=name, timeout=TIMEOUT)


def complain(program: str, exc: Exception) -> None:
    """One line on stderr, with the next step (never a secret: errors carry none)."""
    from credd.errors import CreddError
    message = getattr(exc, "message", str(exc))
    hint = exc.next_step() if isinstance(exc, CreddError) else ""
    sys.stderr.write(f"{program}: {message}{f' ({hint})' if hint else ''}\n")


def legacy_segment(text: str) -> str:
    """The first naming's segment: lossy (`" u"` and `"u"` both gave `u`), kept only to
    find entries it named; names.segment is the one that writes."""
    quoted = quote(text, safe=" !$&'()*+,;=:@~")
    return {"": "%00", ".": "%2E", "..": "%2E%2E"}.get(quoted, quoted).strip() or "%20"
