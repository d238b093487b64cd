"""What a connection acts as: the owner, or a grant (docs/audit.md; grants are issue 14).

A connection's binding is decided once, at accept, from its peer; today every
connection is the owner's. Grants will decide it in one place (a session
ancestor of the peer, or the grant socket it came in on), and the audit trail
already takes the grant and session ids from here, so records need no other
change when they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .peer import Peer


@dataclass(frozen=True, slots=True)
class Binding:
    """The audit reads only `grant_id` and `session`: grants may give a binding more."""

    grant_id: str = ""          # the grant's id; "" for the owner
    session: str | None = None  # the session the connection was bound through, if any

    @property
    def owner(self) -> bool:
        return not self.grant_id


OWNER = Binding()


class Origin(Protocol):
    """Where a request came from: the peer as the kernel named it, and its binding."""

    @property
    def peer(self) -> Peer | None: ...

    @property
    def binding(self) -> Binding: ...


@dataclass(frozen=True, slots=True)
class Refused:
    """The origin of a peer refused at accept: it never had a connection or a binding."""

    peer: Peer | None
    binding: Binding = OWNER
