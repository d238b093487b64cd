"""A `keyring` backend that keeps passwords in credd.

Registered under the `keyring.backends` entry point; keyring imports this
module and considers every `KeyringBackend` subclass in it. `CreddKeyring`
is viable only while an agent with a vault answers on CREDD_SOCK (checked
with a short timeout, so a missing agent costs nothing and never hangs);
then its priority, 11, puts it above the platform backends (5) and above
keyring's ChainerBackend (10), so `keyring.get_keyring()` picks credd by
itself.

Each password is an ordinary entry `keyring/<service>/<username>`, both
escaped by `names.segment` (any string keyring accepts: control characters,
surrounding space, 500 characters, any Unicode; a name too long gets a hash,
see `names.fit`), with the exact strings in the plain fields
`keyring_service` and `username`, and the service, shortened and escaped,
as its service label, so it shows in `credd ls` like any other. The fields,
not the name, say which (service, username) an entry holds.

Entries written by the first naming (lossy: `" u"` and `"u"` shared one
entry; the service label was the service itself) are still read when their
label and `username` field are exactly the pair asked for, and the next
write of that pair replaces them with an entry under the new name
(read-old, write-new; the old one goes to the trash).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from keyring import credentials, errors
from keyring.backend import KeyringBackend
from keyring.compat import properties

from credd.integrations import client, legacy_segment
from credd.integrations.names import fit, label, segment

if TYPE_CHECKING:
    from credd.client import Client
    from credd.protocol import EntryMeta

PRIORITY = 11
PROBE_TIMEOUT = 1.0
PREFIX = "keyring"
SERVICE_FIELD = "keyring_service"


def entry_name(service: str, username: str) -> str:
    """Where (service, username) is kept: distinct pairs, distinct names."""
    return fit(f"{PREFIX}/{segment(service)}/{segment(username)}", f"{PREFIX}/{segment(service)}")


def legacy_name(service: str, username: str) -> str:
    """Where the first naming kept (service, username)."""
    return f"{PREFIX}/{legacy_segment(service)}/{legacy_segment(username)}"


def pair(meta: EntryMeta) -> tuple[str, str]:
    """The (service, username) an entry holds: its fields, or a legacy entry's label."""
    return meta.fields.get(SERVICE_FIELD, meta.service), meta.fields.get("username", "")


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

    def __init__(self, error: type[errors.KeyringError] = errors.KeyringError) -> None:
        self.error = error

    def __enter__(self) -> _Translate:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from credd.errors import CreddError, LockedError
        if exc is None or not isinstance(exc, CreddError):
            return
        if isinstance(exc, LockedError):
            raise errors.KeyringLocked(exc.message) from None
        raise self.error(exc.message) from None


def _held(c: Client, service: str, username: str) -> list[str]:
    """The names of the entries that hold (service, username): the current one and a
    legacy one, each only when its fields say it is this pair."""
    from credd.errors import BadRequest, NotFound
    found = []
    for name in dict.fromkeys((entry_name(service, username), legacy_name(service, username))):
        try:
            meta = c.describe(name)
        except (NotFound, BadRequest):  # BadRequest: a legacy name that cannot exist
            continue
        if pair(meta) == (service, username):
            found.append(name)
    return found


def _make_room(c: Client, name: str, service: str, username: str) -> None:
    """A legacy entry of another pair sitting at `name` (the lossy naming put `" u"`
    where `"u"` now goes) moves to its own new name before `name` is written."""
    from credd.errors import NotFound
    try:
        meta = c.describe(name)
    except NotFound:
        return
    if SERVICE_FIELD not in meta.fields and pair(meta) != (service, username):
        c.move(name, entry_name(*pair(meta)))


class CreddKeyring(KeyringBackend):
    """Passwords in the credd agent's vault."""

    @properties.classproperty
    def priority(cls) -> float:
        if _agent_state() == "no_vault":
            raise RuntimeError("the credd agent has no vault yet (run `credd init`)")
        return PRIORITY

    def get_password(self, service: str, username: str) -> str | None:
        from credd.errors import BadRequest, NotFound
        with _Translate(), client("credd-keyring") as c:
            for name in dict.fromkeys((entry_name(service, username),
                                       legacy_name(service, username))):
                try:
                    revealed = c.reveal(name)
                except (NotFound, BadRequest):
                    continue
                if pair(revealed.entry) == (service, username):
                    return revealed.value
            return None

    def set_password(self, service: str, username: str, password: str) -> None:
        from credd.protocol import Field
        name = entry_name(service, username)
        with _Translate(errors.PasswordSetError), client("credd-keyring") as c:
            _make_room(c, name, service, username)
            c.set(name, kind="password", service=label(service), tags=[PREFIX], value=password,
                  fields=[Field(name=SERVICE_FIELD, value=service, secret=False),
                          Field(name="username", value=username, secret=False)])
            for old in _held(c, service, username):
                if old != name:
                    c.delete(old)

    def delete_password(self, service: str, username: str) -> None:
        with _Translate(errors.PasswordDeleteError), client("credd-keyring") as c:
            held = _held(c, service, username)
            if not held:
                raise errors.PasswordDeleteError(f"no password for {username!r} in {service!r}")
            for name in held:
                c.delete(name)

    def get_credential(self, service: str,
                       username: str | None) -> credentials.SimpleCredential | None:
        if username is not None:
            password = self.get_password(service, username)
            return None if password is None else credentials.SimpleCredential(username, password)
        with _Translate(), client("credd-keyring") as c:
            mine = [m for m in c.list(prefix=f"{PREFIX}/", tag=PREFIX) if pair(m)[0] == service]
            if not mine:
                return None
            meta = max(mine, key=lambda m: m.updated)
            return credentials.SimpleCredential(pair(meta)[1], c.get(meta.name))
