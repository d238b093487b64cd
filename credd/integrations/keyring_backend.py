"""A `keyring` backend that keeps passwords in credd.

Registered under the `keyring.backends` entry point; keyring imports this
module and considers every `KeyringBackend` subclass in it. `CreddKeyring`
is viable only while an agent with a vault answers on CREDD_SOCK (checked
with a short timeout, so a missing agent costs nothing and never hangs);
then its priority, 11, puts it above the platform backends (5) and above
keyring's ChainerBackend (10), so `keyring.get_keyring()` picks credd by
itself.

Each password is an ordinary entry `keyring/<service>/<username>` (both
escaped as name segments) with service = the keyring service and a plain
`username` field, so it shows in `credd ls` like any other.
"""

from __future__ import annotations

from keyring import credentials, errors
from keyring.backend import KeyringBackend
from keyring.compat import properties

from credd.integrations import client, segment

PRIORITY = 11
PROBE_TIMEOUT = 1.0


def entry_name(service: str, username: str) -> str:
    return f"keyring/{segment(service)}/{segment(username)}"


def _agent_state() -> str:
    """The agent's state (unlocked, locked, no_vault); raises RuntimeError when unreachable."""
    from credd.client import Client
    from credd.errors import CreddError
    try:
        with Client(client_name="credd-keyring", timeout=PROBE_TIMEOUT) as c:
            return c.status().state
    except CreddError as exc:
        raise RuntimeError(f"credd agent not reachable: {exc.message}") from None


class _Translate:
    """credd errors as keyring's: locked → KeyringLocked, others → KeyringError."""

    def __init__(self, error=errors.KeyringError) -> None:
        self.error = error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from credd.errors import CreddError, LockedError
        if exc is None or not isinstance(exc, CreddError):
            return False
        if isinstance(exc, LockedError):
            raise errors.KeyringLocked(exc.message) from None
        raise self.error(exc.message) from None


class CreddKeyring(KeyringBackend):
    """Passwords in the credd agent's vault."""

    @properties.classproperty
    def priority(cls) -> float:
        if _agent_state() == "no_vault":
            raise RuntimeError("the credd agent has no vault yet (run `credd init`)")
        return PRIORITY

    def get_password(self, service: str, username: str) -> str | None:
        from credd.errors import NotFound
        with _Translate(), client("credd-keyring") as c:
            try:
                return c.get(entry_name(service, username))
            except NotFound:
                return None

    def set_password(self, service: str, username: str, password: str) -> None:
        from credd.protocol import Field
        with _Translate(errors.PasswordSetError), client("credd-keyring") as c:
            c.set(entry_name(service, username), kind="password", service=service,
                  tags=["keyring"], value=password,
                  fields=[Field(name="username", value=username, secret=False)])

    def delete_password(self, service: str, username: str) -> None:
        from credd.errors import NotFound
        with _Translate(errors.PasswordDeleteError), client("credd-keyring") as c:
            try:
                c.delete(entry_name(service, username))
            except NotFound:
                raise errors.PasswordDeleteError(f"no password for {username!r} "
                                                 f"in {service!r}") from None

    def get_credential(self, service: str, username: str | None):
        if username is not None:
            password = self.get_password(service, username)
            return None if password is None else credentials.SimpleCredential(username, password)
        with _Translate(), client("credd-keyring") as c:
            mine = [m for m in c.list(service=service, tag="keyring")
                    if m.name.startswith("keyring/")]
            if not mine:
                return None
            meta = max(mine, key=lambda m: m.updated)
            return credentials.SimpleCredential(meta.fields.get("username", ""),
                                                c.get(meta.name))
