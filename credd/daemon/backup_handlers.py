"""Handlers of `verify_backup` and `restore_backup`: the agent's half of `credd backup` and
`credd restore-backup` (credd/vault/backup.py does the file work).

The client hands the copy over as a descriptor (the agent never opens a path a client
names), and the agent stages its bytes in a file of its own beside the vault. A
verification uses the unlocked vault's key. A restore needs proof instead: the copy's
passphrase or recovery key must open it (throttled like an unlock, since it is a guess
like one), and it must be a copy of this same vault; only then is the vault locked and
closed, the copy put in place (the old file kept aside) with a generation above any
seen, and the vault left to be opened afresh and unlocked.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from credd import protocol as p
from credd.errors import BadPassphrase, BadRequest, CreddError

from .handlers import Caller
from .state import AgentState

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import TypeVar

    from credd.vault.backup import CopyInfo

    T = TypeVar("T")


class Handover(Caller, Protocol):
    """A caller whose connection can hand descriptors over (server.Connection)."""

    async def take_over(self, ready: p.Response, count: int) -> tuple[list[int],
                                                                      asyncio.StreamReader]: ...


async def verify_backup(state: AgentState, conn: Handover, req: p.VerifyBackup
                        ) -> p.BackupReport:
    from credd.vault import backup
    vault = state.unlocked_vault()
    staged = await _staged(state, conn)
    try:
        info, problems = await state.write(backup.verify_staged, vault, staged)
    finally:
        backup.remove(staged)
    state.audit.try_record("verify_backup", "problems" if problems else "ok", origin=conn)
    return _report(info, info.generation, problems=problems)


async def restore_backup(state: AgentState, conn: Handover, req: p.RestoreBackup
                         ) -> p.BackupReport:
    from credd.vault import backup
    given = {"passphrase": req.passphrase, "recovery": req.recovery_key}
    proof = [(kind, secret) for kind, secret in given.items() if secret is not None]
    if len(proof) != 1:
        raise BadRequest("restore_backup takes exactly one of passphrase or recovery_key")
    state.throttle.check()
    staged = await _staged(state, conn)
    try:
        restore = await _proven(state, backup.Restore, staged, *proof[0], state.config.vault)
        try:
            generation, replaced = await state.replace_vault(
                lambda: restore.finish(state.config.vault, state.config.state_dir))
        finally:
            restore.close()
    except CreddError as exc:
        state.audit.try_record("restore_backup", exc.code, origin=conn)
        raise
    finally:
        backup.remove(staged)
    state.audit.try_record("restore_backup", "ok", origin=conn)
    return _report(restore.info, generation, replaced=replaced)


async def _proven(state: AgentState, open_copy: Callable[..., T], *args: object) -> T:
    """`open_copy(*args)` on the writer thread, a guess of the vault's secret: a wrong one
    counts in the unlock throttle, a right one resets it."""
    try:
        result = await state.write(open_copy, *args)
    except BadPassphrase:
        await state.write(state.throttle.failed)
        raise
    await state.write(state.throttle.succeeded)
    return result


async def _staged(state: AgentState, conn: Handover) -> str:
    """The copy the client hands over, staged beside the vault (see the module docstring)."""
    from credd.vault import backup
    fds, _ = await conn.take_over(p.Ready(), 1)
    try:
        return await state.write(backup.stage, fds[0], state.config.vault)
    finally:
        os.close(fds[0])


def _report(info: CopyInfo, generation: int, *, problems: list[str] | None = None,
            replaced: str = "") -> p.BackupReport:
    return p.BackupReport(vault_id=info.vault_id.hex(), generation=generation,
                          format=info.format, entries=info.entries, versions=info.versions,
                          problems=problems or [], replaced=replaced)
