"""The one exception tree of credd, shared by the vault, the agent and the clients.

    CreddError                      code        exit
    ├── BadRequest                  bad_request    2   malformed or invalid request / argument
    │   └── ProtocolError           bad_request    2   a frame that cannot be decoded
    ├── LockedError                 locked         3   the vault is locked
    ├── AgentUnavailable            (client only)  4   no agent answers on the socket
    │   └── AgentBusy               (client only)  4   the agent's queue of connections stayed full
    ├── NotFound                    not_found      5   entry, field, version or vault missing
    │   └── NoVault                 no_vault       5   no vault file yet: run `credd init`
    ├── BadPassphrase               bad_passphrase 6   wrong passphrase/key, or damaged key slot
    ├── Denied                      denied         7   not allowed (peer, permissions, policy)
    │   └── InsecurePath            denied         7   a file or directory with loose modes/owner
    ├── IntegrityError              integrity      8   authentication of stored data failed
    ├── Exists                      exists         1   the name is already taken
    ├── RateLimited                 rate_limited   1   too many failed unlocks; wait
    ├── VersionMismatch             version_mismatch 1 client and agent speak different protocols
    ├── AuditUnavailable            audit_unavailable 1 the audit record could not be written
    ├── Unavailable                 unavailable    1   a mount's server is unreachable or sealed
    ├── Conflict                    conflict       1   changed elsewhere since last read (CAS)
    ├── InUse                       in_use         1   another agent serves this vault (or socket)
    ├── NoSpace                     no_space       1   the disk is full: nothing was changed
    ├── VaultFileChanged            vault_file_changed 1 the vault file or its WAL was moved,
    │                                                  deleted or replaced under the agent:
    │                                                  writes are refused
    └── InternalError               internal       1   a bug; the message says nothing secret

Only the agent's dispatcher turns an exception into an error response, and only
the clients turn an error response back into an exception (`from_code`).
Messages never contain secret values.

Each class carries its `hint`, the next step a person should take; every
front end (the CLI, the fast path, the git/docker/keyring helpers) shows it
through `next_step()`, so the advice is written once, here.
"""

from __future__ import annotations

import math

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_NO_AGENT = 4
EXIT_NOT_FOUND = 5
EXIT_BAD_PASSPHRASE = 6
EXIT_DENIED = 7
EXIT_INTEGRITY = 8

START_HINT = 'start one with `eval "$(credd agent)"` or `credd serve`'
RESTART_HINT = "restart the agent: `credd stop`, then start it again"


class CreddError(Exception):
    """Base of every error credd raises on purpose."""

    code = "internal"
    exit_code = EXIT_ERROR
    hint = ""

    def __init__(self, message: str = "", *, names: list[str] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = str(super().__str__())
        self.names = list(names or [])
        self.retry_after = retry_after

    def next_step(self) -> str:
        """What to do next, unless the message already says (it quotes a command)."""
        return "" if "`" in self.message else self.hint


class BadRequest(CreddError):
    """The request or argument is not valid."""

    code = "bad_request"
    exit_code = EXIT_USAGE
    hint = "see `credd COMMAND --help`"


class ProtocolError(BadRequest):
    """A frame could not be decoded."""


class LockedError(CreddError):
    """The vault is locked: run `credd unlock`."""

    code = "locked"
    exit_code = EXIT_LOCKED
    hint = "run `credd unlock`"


class AgentUnavailable(CreddError):
    """No credd agent is reachable: start one with `credd serve` or `eval "$(credd agent)"`."""

    code = "no_agent"
    exit_code = EXIT_NO_AGENT
    hint = START_HINT


class AgentBusy(AgentUnavailable):
    """The agent is alive but did not take the connection in time: its queue is full."""

    hint = "try again in a moment; if it stays busy, see the agent's log"


class NotFound(CreddError):
    """No such entry."""

    code = "not_found"
    exit_code = EXIT_NOT_FOUND
    hint = "see `credd ls` (deleted entries: `credd trash`)"


class NoVault(NotFound):
    """No vault exists yet: run `credd init`."""

    code = "no_vault"
    hint = "create one with `credd init`"


class BadPassphrase(CreddError):
    """Wrong passphrase or damaged vault."""

    code = "bad_passphrase"
    exit_code = EXIT_BAD_PASSPHRASE
    hint = "check the passphrase (caps lock, keyboard layout) and try again"


class Denied(CreddError):
    """Not allowed."""

    code = "denied"
    exit_code = EXIT_DENIED
    hint = "run credd as the user who owns the agent and the vault"


class InsecurePath(Denied):
    """A file or directory is readable by others or owned by another user."""

    hint = "fix the owner or mode as the message says, then try again"


class IntegrityError(CreddError):
    """Stored data failed authentication: the vault was damaged or tampered with."""

    code = "integrity"
    exit_code = EXIT_INTEGRITY
    hint = "run `credd check`; restore the vault from a backup if it is damaged"


class Exists(CreddError):
    """The name is already taken."""

    code = "exists"
    hint = "pick another name, or change the entry with `credd set` (no --create)"


class RateLimited(CreddError):
    """Too many failed attempts: wait before trying again."""

    code = "rate_limited"
    hint = "wait before trying again"

    def next_step(self) -> str:
        if self.retry_after and "`" not in self.message:
            return f"wait {math.ceil(self.retry_after)}s before trying again"  # never 0s
        return super().next_step()


class VersionMismatch(CreddError):
    """Client and agent speak different protocol versions: restart the agent (`credd stop`)."""

    code = "version_mismatch"
    hint = RESTART_HINT


class AuditUnavailable(CreddError):
    """The audit record could not be written, so nothing was revealed."""

    code = "audit_unavailable"
    hint = "check free space and permissions of the state directory"


class Unavailable(CreddError):
    """A mount's server cannot be reached or is sealed; nothing local was touched."""

    code = "unavailable"
    hint = "check the mount with `credd mount ls`; local entries still work"


class Conflict(CreddError):
    """The entry changed elsewhere since it was read: read it again, then retry."""

    code = "conflict"
    hint = "read the entry again (`credd show`), then retry the change"


class InUse(CreddError):
    """Another credd agent already serves this vault (or listens on this socket)."""

    code = "in_use"
    hint = "use the agent that serves it (its socket is named above), or stop that one first"


class NoSpace(CreddError):
    """No space left on the device holding the vault: nothing was changed."""

    code = "no_space"
    hint = "free some space on that device, then try again (the agent needs no restart)"


class VaultFileChanged(CreddError):
    """The vault file or its write-ahead log was moved, deleted or replaced while the agent
    had it open: writes are refused, reads are served from what the agent verified."""

    code = "vault_file_changed"
    hint = RESTART_HINT


class InternalError(CreddError):
    """An internal error in credd."""

    hint = "this is a bug in credd: please report it with the agent's log"


_BY_CODE: dict[str, type[CreddError]] = {
    cls.code: cls
    for cls in (BadRequest, LockedError, AgentUnavailable, NotFound, NoVault, BadPassphrase,
                Denied, IntegrityError, Exists, RateLimited, VersionMismatch,
                AuditUnavailable, Unavailable, Conflict, InUse, NoSpace, VaultFileChanged,
                InternalError)
}

#: Every code that may appear in an `error` response on the wire.
WIRE_CODES = tuple(code for code in _BY_CODE if code != "no_agent")


def from_code(code: str, message: str, *, names: list[str] | None = None,
              retry_after: float | None = None) -> CreddError:
    """Rebuild the exception an error response stands for (unknown codes become internal).

    A version mismatch always says how to restart the agent, whatever agent
    sent it: a script or the TUI may show the message without its hint.
    """
    cls = _BY_CODE.get(code, InternalError)
    if cls is VersionMismatch and "credd stop" not in message:
        message = f"{message}: {RESTART_HINT}"
    return cls(message, names=names, retry_after=retry_after)
