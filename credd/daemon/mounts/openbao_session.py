"""One logged-in `hvac` client per OpenBao mount: login, token renewal, and the
server's failures turned into credd's errors, each naming the mount.

Why one client behind one lock: hvac's `requests` session is not documented as
thread-safe, and the agent may run several reads of a mount on its reader
threads at once; the cache in front (openbao.py) answers most reads without
touching this. Login is lazy (the first request, on a reader or the writer
thread), so unlocking the vault never waits on the network. A renewable token
is renewed by a timer at 2/3 of its TTL; an AppRole token that can no longer be
renewed is replaced by logging in again. `close()` (at lock) cancels the timer
and forgets the client and its token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from credd.errors import (
    BadRequest,
    Conflict,
    CreddError,
    Denied,
    LockedError,
    NotFound,
    Unavailable,
)

from .config import MountConfig

if TYPE_CHECKING:  # hvac (and requests) load with the first request, never at agent start
    import hvac

T = TypeVar("T")
log = logging.getLogger("credd.agent")

TIMEOUT = (3.05, 10.0)  # connect, read: a dead server fails a request in seconds
RENEW_AT = 2 / 3        # of the TTL
MIN_RENEW = 1.0         # never spin on a token that is about to expire


class Session:
    """The mount's client; `call` runs one request with it, logging in first if needed."""

    def __init__(self, config: MountConfig, resolve: Callable[[str], str]) -> None:
        self.config = config
        self._resolve = resolve
        self._lock = threading.RLock()
        self._client: hvac.Client | None = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self.state, self.message = "ok", "not contacted yet"
        self.expires: float | None = None  # time.time() the token expires (None: never/unknown)
        self._ttl = 0.0

    # ------------------------------------------------------------ requests

    def call(self, what: str, request: Callable[[hvac.Client], T]) -> T:
        """`request(client)` under the lock, with one retry after a fresh AppRole login
        when the token turns out to have expired; errors become credd's."""
        with self._lock:
            try:
                try:
                    result = request(self._logged_in())
                except _forbidden():
                    if not self._token_lost():
                        raise
                    if not self.config.role_id:
                        raise Denied(self._expired_message()) from None
                    self._client = None
                    result = request(self._logged_in())
            except CreddError as exc:
                self._failed(exc)
                raise
            except Exception as exc:
                error = self._translate(what, exc)
                self._failed(error)
                raise error from None
            self.state, self.message = "ok", ""
            return result

    def _translate(self, what: str, exc: Exception) -> CreddError:
        import hvac.exceptions as e
        import requests
        where = f"mount {self.config.name!r}"
        if isinstance(exc, requests.exceptions.RequestException):
            return Unavailable(f"{where}: the OpenBao server at {self.config.url} cannot be "
                               f"reached ({type(exc).__name__}); nothing local was changed")
        if isinstance(exc, e.VaultDown):
            return Unavailable(f"{where}: the OpenBao server at {self.config.url} is sealed; "
                               "nothing local was changed")
        if isinstance(exc, e.Forbidden):
            return Denied(f"{where}: OpenBao's policy denies {what} (permission denied)")
        if isinstance(exc, e.InvalidPath):
            return NotFound(f"{where}: nothing at {what}")
        if isinstance(exc, e.InvalidRequest) and "check-and-set" in str(exc):
            return Conflict(f"{where}: {what} lost a check-and-set race")
        if isinstance(exc, e.InvalidRequest):
            return BadRequest(f"{where}: OpenBao refused {what}: {_errors(exc)}")
        if isinstance(exc, e.VaultError):
            return Unavailable(f"{where}: OpenBao failed {what}: {_errors(exc)}")
        raise exc

    def _failed(self, error: CreddError) -> None:
        if isinstance(error, Unavailable):
            self.state = "sealed" if "sealed" in error.message else "unreachable"
            self.message = error.message
        elif isinstance(error, Denied) and "token" in error.message:
            self.state, self.message = "error", error.message

    # ------------------------------------------------------------ login and renewal

    def _logged_in(self) -> hvac.Client:
        if self._closed:
            raise LockedError(f"mount {self.config.name!r} was closed (the vault locked)")
        if self._client is None:
            import hvac
            client = hvac.Client(url=self.config.url, namespace=self.config.namespace or None,
                                 verify=self.config.ca_cert or True,
                                 timeout=TIMEOUT)  # type: ignore[arg-type]  # requests takes a pair
            self._client = client
            try:
                ttl, renewable = self._login(client)
            except BaseException:
                self._client = None
                raise
            self._schedule(ttl, renewable)
        return self._client

    def _login(self, client: hvac.Client) -> tuple[float, bool]:
        """Authenticate `client`; (token TTL in seconds, 0 for none; renewable)."""
        if self.config.role_id:
            auth = client.auth.approle.login(role_id=self._resolve(self.config.role_id),
                                             secret_id=self._resolve(self.config.secret_id))
            return float(auth["auth"]["lease_duration"]), bool(auth["auth"]["renewable"])
        if not self.config.token:
            raise BadRequest(f"mount {self.config.name!r} has neither a token nor an AppRole")
        client.token = self._resolve(self.config.token)
        try:
            data = client.auth.token.lookup_self()["data"]
        except _forbidden():
            raise Denied(self._expired_message()) from None
        return float(data.get("ttl") or 0), bool(data.get("renewable"))

    def _schedule(self, ttl: float, renewable: bool) -> None:
        self._ttl = ttl
        self.expires = time.time() + ttl if ttl else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ttl and (renewable or self.config.role_id) and not self._closed:
            self._timer = threading.Timer(max(ttl * RENEW_AT, MIN_RENEW), self._renew)
            self._timer.daemon = True
            self._timer.start()

    def _renew(self) -> None:
        """Renew the token (timer thread). An AppRole token near its maximum TTL is
        dropped instead: the next request logs in again with the AppRole."""
        with self._lock:
            client = self._client
            if client is None or self._closed:
                return
            try:
                auth = client.auth.token.renew_self()["auth"]
            except Exception as exc:  # logged by type only: a response may quote the token
                log.warning("mount %r: token renewal failed (%s)", self.config.name,
                            type(exc).__name__)
                if self.config.role_id:
                    self._client = None
                else:
                    self.message = "the token could not be renewed: it expires at its TTL"
                return
            ttl = float(auth["lease_duration"])
            if self.config.role_id and ttl < self._ttl * RENEW_AT:
                self._client = None
                return
            self._schedule(ttl, bool(auth["renewable"]))

    def _token_lost(self) -> bool:
        """After a 403: is our token itself no longer valid (expired, revoked)?"""
        import hvac.exceptions as e
        if self._client is None:
            return False
        try:
            self._client.auth.token.lookup_self()
        except e.Forbidden:
            return True
        return False

    def _expired_message(self) -> str:
        return (f"mount {self.config.name!r}: the OpenBao token has expired or was revoked; "
                f"store a new one in {self.config.token} (`credd set`) and retry")

    def close(self) -> None:
        """Forget the client and its token; stop renewing. Requests in flight finish."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        client, self._client = self._client, None
        if client is not None:
            client.token = None  # type: ignore[assignment]  # drop it from memory
            client.adapter.close()


def _forbidden() -> type[Exception]:
    import hvac.exceptions
    forbidden: type[Exception] = hvac.exceptions.Forbidden
    return forbidden


def _errors(exc: Exception) -> str:
    """The server's own error lines (never the URL or a header)."""
    errors = getattr(exc, "errors", None) or []
    return "; ".join(str(line) for line in errors)[:300] or type(exc).__name__
