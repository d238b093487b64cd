"""The one exception tree of credd, shared by the vault, the agent and the clients.

    CreddError                      code        exit
    ├── BadRequest                  bad_request    2   malformed or invalid request / argument
    │   └── ProtocolError           bad_request    2   a frame that cannot be decoded
    ├── LockedError                 locked         3   the vault is locked
    ├── AgentUnavailable            (client only)  4   no agent answers on the socket
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
    ├── Unavailable                 unavailable    1   a mount's server cannot be reached or is sealed
    ├── Conflict                    conflict       1   changed elsewhere since last read (check-and-set)
    └── InternalError               internal       1   a bug; the message says nothing secret

Only the agent's dispatcher turns an exception into an error response, and only
the clients turn an error response back into an exception (`from_code`).
Messages never contain secret values.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_NO_AGENT = 4
EXIT_NOT_FOUND = 5
EXIT_BAD_PASSPHRASE = 6
EXIT_DENIED = 7
EXIT_INTEGRITY = 8


class CreddError(Exception):
    """Base of every error credd raises on purpose."""

    code = "internal"
    exit_code = EXIT_ERROR

    def __init__(self, message: str = "", *, names: list[str] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = str(super().__str__())
        self.names = list(names or [])
        self.retry_after = retry_after


class BadRequest(CreddError):
    """The request or argument is not valid."""

    code = "bad_request"
    exit_code = EXIT_USAGE


class ProtocolError(BadRequest):
    """A frame could not be decoded."""


class LockedError(CreddError):
    """The vault is locked: run `credd unlock`."""

    code = "locked"
    exit_code = EXIT_LOCKED


class AgentUnavailable(CreddError):
    """No credd agent is reachable: start one with `credd serve` or `eval "$(credd agent)"`."""

    code = "no_agent"
    exit_code = EXIT_NO_AGENT


class NotFound(CreddError):
    """No such entry."""

    code = "not_found"
    exit_code = EXIT_NOT_FOUND


class NoVault(NotFound):
    """No vault exists yet: run `credd init`."""

    code = "no_vault"


class BadPassphrase(CreddError):
    """Wrong passphrase or damaged vault."""

    code = "bad_passphrase"
    exit_code = EXIT_BAD_PASSPHRASE


class Denied(CreddError):
    """Not allowed."""

    code = "denied"
    exit_code = EXIT_DENIED


class InsecurePath(Denied):
    """A file or directory is readable by others or owned by another user."""


class IntegrityError(CreddError):
    """Stored data failed authentication: the vault was damaged or tampered with."""

    code = "integrity"
    exit_code = EXIT_INTEGRITY


class Exists(CreddError):
    """The name is already taken."""

    code = "exists"


class RateLimited(CreddError):
    """Too many failed attempts: wait before trying again."""

    code = "rate_limited"


class VersionMismatch(CreddError):
    """Client and agent speak different protocol versions: restart the agent (`credd stop`)."""

    code = "version_mismatch"


class AuditUnavailable(CreddError):
    """The audit record could not be written, so nothing was revealed."""

    code = "audit_unavailable"


class Unavailable(CreddError):
    """A mount's server cannot be reached or is sealed; nothing local was touched."""

    code = "unavailable"


class Conflict(CreddError):
    """The entry changed elsewhere since it was read: read it again, then retry."""

    code = "conflict"


class InternalError(CreddError):
    """An internal error in credd."""


_BY_CODE: dict[str, type[CreddError]] = {
    cls.code: cls
    for cls in (BadRequest, LockedError, AgentUnavailable, NotFound, NoVault, BadPassphrase,
                Denied, IntegrityError, Exists, RateLimited, VersionMismatch,
                AuditUnavailable, Unavailable, Conflict, InternalError)
}

#: Every code that may appear in an `error` response on the wire.
WIRE_CODES = tuple(code for code in _BY_CODE if code != "no_agent")


def from_code(code: str, message: str, *, names: list[str] | None = None,
              retry_after: float | None = None) -> CreddError:
    """Rebuild the exception an error response stands for (unknown codes become internal)."""
    return _BY_CODE.get(code, InternalError)(message, names=names, retry_after=retry_after)
