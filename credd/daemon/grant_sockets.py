"""Sandbox grants' own sockets: one listener for each grant made for another uid.

The owner's runtime directory is 0700, so no other uid can reach the main
socket. A grant with `uid` U gets a socket of its own, `<grant id>.sock` in a
fresh directory under /tmp (mkdtemp: a random name nobody could have made
first, owned by the owner) opened for traversal (0711), the socket itself
0666. The wall is the peer check at accept: the kernel's uid of the peer must
be U (not even the owner is admitted there), and such a connection is bound to
the grant and nothing else. The path is the grant's `socket`, shown by
`credd grant show`, to bind-mount into a container.

A socket opens when its grant is made, or read from the vault at unlock, and
closes (node and directory removed) when the grant is revoked or expires. It
stays while the vault is locked (its clients hear `locked`), and a restarted
agent opens it anew, at a new path.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from typing import TYPE_CHECKING

from credd.grants import Grant

from .binding import Binding, NotAdmitted
from .peer import Peer

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("credd.agent")

BACKLOG = 64


class GrantSocket:
    """One grant's listener: its socket, its directory, and who it admits."""

    def __init__(self, grant: Grant, base: str) -> None:
        self.grant = grant
        self.directory = tempfile.mkdtemp(prefix="credd-", dir=base)
        self.path = os.path.join(self.directory, f"{grant.id}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(self.path)
            os.chmod(self.path, 0o666)  # the peer-uid check is the wall, not the mode
            os.chmod(self.directory, 0o711)
            self.sock.listen(BACKLOG)
            self.sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.sock.close()
        for remove in (os.unlink, os.rmdir):
            try:
                remove(self.path if remove is os.unlink else self.directory)
            except FileNotFoundError:
                pass


class GrantSockets:
    """The listeners of the grants in force that name a uid, kept in step with them."""

    def __init__(self, server: Server, base: str = "/tmp") -> None:
        self.server = server
        self.base = base
        self._open: dict[str, GrantSocket] = {}

    def sync(self) -> None:
        """Open what a grant in force needs, close what none needs any more (called after
        every change of the grants; a grant that cannot have its socket is logged)."""
        wanted = {g.id: g for g in self.server.state.grants.active() if g.uid is not None}
        for grant_id in [g for g in self._open if g not in wanted]:
            self._close(grant_id)
        for grant_id, grant in wanted.items():
            if grant_id not in self._open:
                self._listen(grant)

    def close_all(self) -> None:
        for grant_id in list(self._open):
            self._close(grant_id)

    def _listen(self, grant: Grant) -> None:
        try:
            door = GrantSocket(grant, self.base)
        except OSError as exc:
            log.error("the socket of grant %s cannot be opened in %s: %s", grant.id, self.base,
                      exc.strerror or exc)
            return
        self._open[grant.id] = door
        self.server.listen(door.sock, lambda peer: self._bind(door.grant, peer))
        self.server.state.grants.listening(grant.id, door.path)
        log.info("listening for uid %s (grant %s) on %s", grant.uid, grant.id, door.path)

    def _close(self, grant_id: str) -> None:
        door = self._open.pop(grant_id)
        self.server.unlisten(door.sock)
        door.close()
        self.server.state.grants.listening(grant_id, None)
        log.info("closed the socket of grant %s", grant_id)

    def _bind(self, grant: Grant, peer: Peer) -> Binding:
        """Only the grant's uid; bound to the grant, and to any session it runs inside."""
        if peer.uid != grant.uid:
            raise NotAdmitted(f"uid {peer.uid} on the socket of grant {grant.id}")
        around = self.server.state.sessions.enclosing(peer.pid)
        outer = tuple(g for binding in around for g in binding.grants if g.id != grant.id)
        return Binding(grant=grant, via="socket", outer=outer)
