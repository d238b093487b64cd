"""Handlers of `token_create`, `token_list` and `token_revoke`: scoped tokens on an openbao
mount's server (credd/daemon/mounts/openbao_tokens.py does the server side).

The agent keeps what it minted in `tokens.json` in its state directory (0600):
accessors and scopes, never a token. An accessor can look a token up or revoke
it (with a token allowed to) but cannot log in, and the list is what `credd
token ls` shows without asking the server for every token it ever issued. The
server calls run on the writer thread: they wait on the network, never on the
event loop, and one at a time keeps the file's read-modify-write simple.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import msgspec

from credd import protocol as p
from credd.errors import AuditUnavailable, BadRequest, NoSpace, NotFound, Unavailable
from credd.files import write_private

from .router import Router
from .state import AgentState

if TYPE_CHECKING:
    from .mounts.openbao import OpenBaoStore

FILE_NAME = "tokens.json"
_decoder = msgspec.json.Decoder(list[p.TokenInfo])


class TokenBook:
    """The accessors of the tokens credd minted, in a private file."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)

    def read(self) -> list[p.TokenInfo]:
        try:
            with open(self.path, "rb") as f:
                return _decoder.decode(f.read())
        except FileNotFoundError:
            return []
        except msgspec.DecodeError:
            raise BadRequest(f"{self.path} is damaged: move it away to start a new list") from None

    def write(self, tokens: list[p.TokenInfo]) -> None:
        write_private(self.path, msgspec.json.encode(tokens))


def _openbao(state: AgentState, name: str) -> OpenBaoStore:
    """The open openbao mount named `name`."""
    from .mounts.openbao import OpenBaoStore
    router = state.store()
    mount = router.mounts.get(name) if isinstance(router, Router) else None
    if mount is None:
        raise NotFound(f"no mount named {name!r} (`credd mount ls`)", names=[name])
    if isinstance(mount, OpenBaoStore):
        return mount
    if mount.backend == "openbao":
        raise Unavailable(f"mount {name!r} is not open: {mount.info().message}")
    raise BadRequest(f"mount {name!r} is a {mount.backend} mount: tokens are minted on an "
                     "openbao mount's server")


async def token_create(state: AgentState, conn: Any, req: p.TokenCreate) -> p.TokenCreated:
    from .mounts import openbao_tokens
    mount = _openbao(state, req.mount)
    book = TokenBook(state.config.state_dir)
    token, info, wrapped = await state.write(
        openbao_tokens.create, mount, paths=req.paths, policy=req.policy, ttl=req.ttl,
        read_only=req.read_only, uses=req.uses, wrap=req.wrap)
    try:  # fail closed: a token whose minting is not audited does not leave the agent
        state.audit.record("token_create", "ok", names=[req.mount], origin=conn,
                           key=state.store().audit_key)
    except (AuditUnavailable, NoSpace):
        await state.write(openbao_tokens.revoke, mount, info.accessor)
        raise
    await state.write(lambda: book.write([*book.read(), info]))
    return p.TokenCreated(token=token, info=info, wrapped=wrapped)


async def token_list(state: AgentState, conn: Any, req: p.TokenList) -> p.Tokens:
    from .mounts import openbao_tokens
    book = TokenBook(state.config.state_dir)
    mounts: dict[str, OpenBaoStore] = {}
    for name in [req.mount] if req.mount else sorted({t.mount for t in book.read()}):
        try:
            mounts[name] = _openbao(state, name)
        except (NotFound, BadRequest):
            if req.mount:
                raise  # asked for by name; otherwise its records wait for it to come back

    def live() -> list[p.TokenInfo]:
        kept, shown = [], []
        for known in book.read():
            mount = mounts.get(known.mount)
            now = openbao_tokens.lookup(mount, known) if mount is not None else known
            if now is not None:
                kept.append(known)
                if mount is not None:
                    shown.append(now)
        book.write(kept)
        return shown

    return p.Tokens(tokens=await state.write(live))


async def token_revoke(state: AgentState, conn: Any, req: p.TokenRevoke) -> p.Ok:
    from .mounts import openbao_tokens
    book = TokenBook(state.config.state_dir)
    name = req.mount or next((t.mount for t in book.read() if t.accessor == req.accessor), None)
    if name is None:
        raise NotFound(f"credd minted no token with accessor {req.accessor!r}: name its "
                       "mount with --mount", names=[req.accessor])
    mount = _openbao(state, name)
    await state.write(openbao_tokens.revoke, mount, req.accessor)
    state.audit.try_record("token_revoke", "ok", names=[name], origin=conn,
                           key=state.store().audit_key)
    await state.write(lambda: book.write([t for t in book.read()
                                          if t.accessor != req.accessor]))
    return p.Ok()
