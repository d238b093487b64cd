"""App-wide messages: what the agent told us. Widget messages live with their widgets.

They do not bubble: the app forwards them down to screens, and a forwarded
message must not climb back up to the app.
"""

from __future__ import annotations

from textual.message import Message

from credd.protocol import AccessRequest, StatusReply


class AgentLocked(Message, bubble=False):
    """The agent locked (timeout, `credd lock`, SIGUSR1, shutdown)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason


class AgentUnlocked(Message, bubble=False):
    """The agent was unlocked (here or from another terminal)."""


class EntryChanged(Message, bubble=False):
    """An entry was written, deleted, moved or restored by some client."""

    def __init__(self, name: str, action: str, new_name: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.action = action
        self.new_name = new_name


class AgentGone(Message, bubble=False):
    """The agent stopped answering."""

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason


class AgentStatus(Message, bubble=False):
    """A fresh status reply, or None when no agent answers."""

    def __init__(self, status: StatusReply | None) -> None:
        super().__init__()
        self.status = status


class GrantChanged(Message, bubble=False):
    """A grant was made, revoked or expired (here, by the CLI, or by its clock)."""

    def __init__(self, grant: str, action: str) -> None:
        super().__init__()
        self.grant = grant
        self.action = action


class AccessRequested(Message, bubble=False):
    """A bound program waits for the owner's answer to a use of a `confirm` grant."""

    def __init__(self, request: AccessRequest) -> None:
        super().__init__()
        self.request = request
