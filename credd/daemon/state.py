"""The agent's one piece of mutable state: the vault, whether it is unlocked, and until when.

Deadlines are measured on CLOCK_BOOTTIME, which keeps counting while the machine
sleeps, and are re-checked at the start of every request as well as by a
watchdog: a laptop that wakes after the idle timeout answers `locked` to the
first request, whatever asyncio's (monotonic) timers thought.

Vault writes, unlocks and other slow work run on one worker thread, so one
writer at a time and the event loop stays responsive; reads run on the loop,
except reads of a remote mount, which run on reader threads (see dispatch.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from credd import __version__, paths, protocol
from credd.errors import (
    BadPassphrase,
    BadRequest,
    CreddError,
    LockedError,
    NoVault,
    RateLimited,
    Unavailable,
)
from credd.files import write_private
from credd.store import EntryStore

from .approvals import Approvals
from .audit import DEFAULT_KEEP, DEFAULT_MAX_BYTES, FILE_NAME, AuditLog
from .binding import Sessions
from .events import EventHub
from .grant_book import KIND as GRANT_KIND
from .grant_book import GrantBook, Records
from .last_used import FILE_NAME as LAST_USED_FILE
from .last_used import LastUsed
from .lifecycle import Lifecycle
from .mounts.table import MountTable
from .reapers import Reapers

if TYPE_CHECKING:  # the vault (cryptography, sqlite3) is imported when a vault is opened
    from credd.vault import Vault

T = TypeVar("T")

log = logging.getLogger("credd.agent")

DEFAULT_IDLE = 15 * 60.0
DEFAULT_LIFETIME = 8 * 3600.0
DEFAULT_MAX_UNLOCK = 8 * 3600.0  # the longest unlock a client may ask for
MAX_DURATION = 366 * 86400.0  # per-unlock overrides above a year are a mistake
THROTTLE_FILE = "unlock-throttle.json"
#: Quiet seconds after a write before the WAL is copied into the vault file (docs/agent.md).
CHECKPOINT_AFTER = 1.0


@dataclass
class Config:
    socket: str
    vault: str
    state_dir: str
    idle_timeout: float = DEFAULT_IDLE
    max_lifetime: float = DEFAULT_LIFETIME
    read_timeout: float = 10.0         # a partial frame, or a silent new connection
    max_connections: int = 128
    allow_insecure_memory: bool = False
    seal_after: float = 30.0           # quiet seconds after a write before sealing the snapshot
    max_unlock: float | None = None    # None: 8 h, or the agent's own deadlines if longer
    approval_timeout: float = 25.0     # a use of a `confirm` grant waits this long for the owner
    config_file: str | None = None     # mounts, rotation periods; None: paths.config_path()
    audit_max_bytes: int = DEFAULT_MAX_BYTES  # rotate the audit log past this size
    audit_keep: int = DEFAULT_KEEP     # rotated audit files kept

    @property
    def unlock_cap(self) -> float:
        """The longest idle timeout or lifetime an unlock may have (`--max-unlock`).

        A same-user program must not be able to re-unlock for a year: what a client
        asks for above this is lowered to it. Unset, it is 8 h, or the agent's own
        --idle-timeout/--max-lifetime when the owner configured those longer.
        """
        if self.max_unlock is not None:
            return self.max_unlock
        return max(DEFAULT_MAX_UNLOCK, self.idle_timeout, self.max_lifetime)

    def window(self, idle: float | None, lifetime: float | None) -> tuple[float, float, bool]:
        """(idle timeout, lifetime) an unlock gets: what it asked, else the defaults, at
        most the cap; and whether what it asked was lowered to the cap."""
        cap = self.unlock_cap
        capped = any(asked is not None and asked > cap for asked in (idle, lifetime))
        return min(idle or self.idle_timeout, cap), min(lifetime or self.max_lifetime, cap), capped


def _rearm(handle: asyncio.TimerHandle | None, delay: float, callback: Callable[..., None],
           *args: Any) -> asyncio.TimerHandle:
    """`callback(*args)` in `delay` seconds, instead of when `handle` would have run it."""
    if handle is not None:
        handle.cancel()
    return asyncio.get_running_loop().call_later(delay, callback, *args)


def boottime() -> float:
    """Seconds on a clock that never jumps and keeps counting through suspend."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


def check_duration(value: float | None, what: str) -> float | None:
    """A per-request duration: None, or positive, finite and at most a year."""
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0 or value > MAX_DURATION:
        raise BadRequest(f"{what} must be between 0 and {MAX_DURATION:.0f} seconds, got {value!r}")
    return float(value)


class Deadlines:
    """Idle and absolute deadlines of one unlocked session."""

    def __init__(self, clock: Callable[[], float] = boottime) -> None:
        self.clock = clock
        self.idle = self.lifetime = 0.0
        self.capped = False  # the unlock asked for more than the agent allows
        self._last = self._end = 0.0

    def start(self, idle: float, lifetime: float, capped: bool = False) -> None:
        now = self.clock()
        self.idle, self.lifetime, self.capped = idle, lifetime, capped
        self._last, self._end = now, now + lifetime

    def touch(self) -> None:
        """Slide the idle deadline: only requests that use the vault call this."""
        self._last = self.clock()

    def left(self) -> tuple[float, float]:
        """(seconds to the idle lock, seconds to the absolute lock), never negative."""
        now = self.clock()
        return max(0.0, self._last + self.idle - now), max(0.0, self._end - now)

    def expired(self) -> str | None:
        """Why the session must end now ("lifetime" or "idle"), or None (every request asks)."""
        now = self.clock()
        if now >= self._end:
            return "lifetime"
        if now >= self._last + self.idle:
            return "idle"
        return None


class _ThrottleFile(msgspec.Struct, forbid_unknown_fields=True):
    """What the throttle keeps on disk: no secret, only a count and a wall-clock time."""

    failures: int
    until: float  # unix time the window ends


class Throttle:
    """Failed unlocks open a growing window in which an unlock waits or is refused.

    The first failure is free (a typo); then 0.5 s, 1 s, 2 s ... up to 30 s,
    on top of the KDF's own cost. A success resets it. Given a path, the count
    and the window's end are kept in that small 0600 file (written atomically),
    so that stopping the agent, which any client of the socket can ask, does
    not reset them: a client that can reach only the socket (a container) then
    gets no more guesses for a restart. A program that can write the user's
    files can delete it, and can copy the vault to guess offline anyway,
    bounded only by the KDF.
    """

    BASE, CAP = 0.5, 30.0

    def __init__(self, clock: Callable[[], float] = boottime, path: str | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.clock, self.path, self.wall = clock, path, wall
        self.failures = 0
        self._until = 0.0
        if path is not None:
            self._load(path)

    def retry_after(self) -> float:
        """Seconds the window still runs, rounded up to the millisecond: never 0 while it runs."""
        return math.ceil(max(0.0, self._until - self.clock()) * 1000) / 1000

    def check(self) -> None:
        wait = self.retry_after()
        if wait > 0:
            shown = math.ceil(wait * 10) / 10  # "retry in 0.1 s", never "0.0 s"
            raise RateLimited(f"too many failed unlock attempts: retry in {shown:.1f} s",
                              retry_after=wait)

    def failed(self) -> None:
        self.failures += 1
        if self.failures > 1:
            self._until = self.clock() + min(self.BASE * 2 ** (self.failures - 2), self.CAP)
        self._save()

    def succeeded(self) -> None:
        if self.failures or self._until:
            self.failures, self._until = 0, 0.0
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        left = max(0.0, self._until - self.clock())
        data = msgspec.json.encode(_ThrottleFile(self.failures, self.wall() + left))
        try:
            write_private(self.path, data, force=True)
        except (OSError, CreddError) as exc:
            log.warning("the unlock throttle could not be saved to %s: %s", self.path,
                        getattr(exc, "strerror", None) or exc)

    def _load(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                saved = msgspec.json.decode(f.read(4096), type=_ThrottleFile)
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("the unlock throttle's file %s is unreadable (%s): starting afresh",
                        path, getattr(exc, "strerror", None) or exc)
            return
        self.failures = max(0, saved.failures)
        left = min(max(0.0, saved.until - self.wall()), self.CAP)  # a clock set back: the cap
        self._until = self.clock() + left if left else 0.0


class AgentState:
    def __init__(self, config: Config, clock: Callable[[], float] = boottime) -> None:
        self.config = config
        self.vault: Vault | None = None    # opened lazily, once its file exists
        self.deadlines = Deadlines(clock)
        self.throttle = Throttle(clock, os.path.join(config.state_dir, THROTTLE_FILE))
        self.events = EventHub()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="credd-writer")
        self.mounts = MountTable(config.config_file or paths.config_path(), self._mount_read)
        self.audit = AuditLog(os.path.join(config.state_dir, FILE_NAME),
                              mount_of=self.mounts.mount_of,
                              max_bytes=config.audit_max_bytes, keep=config.audit_keep,
                              background=self._writer.submit)
        self.last_used = LastUsed(os.path.join(config.state_dir, LAST_USED_FILE),
                                  background=self._writer.submit)
        self.lifecycle = Lifecycle(self.mounts.path, config.state_dir)
        self.sessions = Sessions(os.getpid())  # session roots and their bindings (binding.py)
        self.grants = GrantBook()          # read from the vault at unlock, dropped at lock
        self.approvals = Approvals(self.events, config.approval_timeout)
        self.reapers = Reapers()           # what commands the agent runs start under
        self.pages: dict[Any, Any] = {}    # encoded list pages (handlers.list_); dropped at lock
        self.stopping = asyncio.Event()
        self._unlocked = False
        self._epoch = 0                    # bumped by every lock; an unlock racing one loses
        self._unlocking = asyncio.Lock()
        self._wake = asyncio.Event()
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="credd-reader")
        self._seal: asyncio.TimerHandle | None = None
        self._replacing = False            # a restore is putting another file in place
        self._checkpoint: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ vault access

    def open_vault(self) -> Vault | None:
        """The vault, opened (locked) on first use; None while its file does not exist."""
        if self._replacing:  # never open the file a restore is about to replace
            raise Unavailable("the vault file is being replaced by a restore; try again")
        if self.vault is None:
            from credd.vault import Vault
            if Vault.exists(self.config.vault):
                self.vault = Vault.open(self.config.vault, state_dir=self.config.state_dir)
        return self.vault

    @property
    def unlocked(self) -> bool:
        self.check_deadlines()
        return self._unlocked

    def require_vault(self) -> Vault:
        vault = self.open_vault()
        if vault is None:
            raise NoVault(f"no vault at {self.config.vault}: create one with `credd init`")
        return vault

    def unlocked_vault(self) -> Vault:
        """The vault itself, unlocked: for what only the local vault has (its key slots,
        passphrase, rekey, check). Entries go through `store()`."""
        vault = self.require_vault()
        if not self.unlocked:
            raise LockedError("the vault is locked: run `credd unlock`")
        return vault

    def records(self) -> Records:
        """Where the agent keeps its own records (grants): the vault, while unlocked."""
        return self.unlocked_vault()

    def store(self) -> EntryStore:
        """Where entries are read and written while the vault is unlocked: the one seam
        the entry handlers know, a router over the local vault and the mounts. The
        deadlines are not checked again here: dispatch checked them for this request on
        the loop, and a handler running on a reader thread must not lock."""
        if not self._unlocked:
            return self.unlocked_vault()  # raises: no vault, or locked
        return self.mounts.router(self.require_vault())

    async def replace_vault(self, install: Callable[[], T]) -> T:
        """Lock, close the vault file, and run `install` (which may put another file in
        its place) on the writer thread; the next request opens the file afresh."""
        self._replacing = True
        try:
            self.lock("restore")
            vault, self.vault = self.vault, None
            if vault is not None:
                await self.write(vault.close)
            return await self.write(install)
        finally:
            self._replacing = False

    def _mount_read(self, name: str, key: bytes) -> None:
        """A mount read its credential `name` from the local vault: audited like a get."""
        self.audit.try_record("mount_credential", "ok", names=[name], key=key)

    async def read(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run `fn` on a reader thread: a read that may wait on a remote mount's network."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(fn, *args))

    def touch(self) -> None:
        if self._unlocked:
            self.deadlines.touch()

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the single writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(fn, *args, **kwargs))

    # ------------------------------------------------------------ lock state

    def check_deadlines(self) -> None:
        if self._unlocked:
            reason = self.deadlines.expired()
            if reason:
                self.lock(reason)

    async def unlock(self, vault: Vault, idle: float | None, lifetime: float | None, *,
                     wait: bool = False, **secret: Any) -> None:
        """Unlock with one secret (throttled; concurrent attempts go one at a time).

        `idle` and `lifetime` override the configured deadlines (checked by the
        caller, capped by `opened`). While the throttle's window runs, a caller at a
        terminal (`wait`) has its attempt tried once the window ends (the wait is at
        most the cap, and no other attempt runs meanwhile), so a program's wrong
        guesses slow the owner down but never lock the owner out; any other caller
        is refused at once with `rate_limited`, without queueing.
        """
        if not wait:
            self.throttle.check()
        async with self._unlocking:
            if wait:
                await asyncio.sleep(min(self.throttle.retry_after(), Throttle.CAP))
            else:
                self.throttle.check()
            epoch = self._epoch
            try:
                await self.write(vault.unlock, **secret)
            except BadPassphrase:
                await self.write(self.throttle.failed)
                raise
            await self.write(self.throttle.succeeded)
            if epoch != self._epoch:  # a lock arrived while the KDF ran: it wins
                await self.write(vault.lock)
                raise LockedError("the vault was locked while unlocking; unlock again")
            self.opened(idle, lifetime)
            if not vault.from_snapshot:
                self.wrote()  # no current snapshot in the file: seal one once things settle

    def wrote(self) -> None:
        """A write changed the vault (and dropped its snapshot): seal a new one once no
        write has come for `seal_after` seconds, so that a crash before the next lock
        does not leave the next unlock to go row by row. Lock seals anyway. And once no
        write has come for a second, copy the WAL into the vault file, so that the file
        alone holds every write (a plain copy of it is a backup; a deleted -wal loses
        nothing)."""
        self._seal = _rearm(self._seal, self.config.seal_after, self._seal_if_still_unlocked,
                            self._epoch)
        self._checkpoint = _rearm(self._checkpoint, CHECKPOINT_AFTER, self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        self._checkpoint = None
        if self.vault is not None:
            self._writer.submit(self.vault.checkpoint)

    def _seal_if_still_unlocked(self, epoch: int) -> None:
        self._seal = None
        if epoch == self._epoch and self._unlocked and self.vault is not None:
            self._writer.submit(self.vault.seal_snapshot)

    @property
    def epoch(self) -> int:
        """Changes with every lock: work that spans an await compares it before and after."""
        return self._epoch

    def opened(self, idle: float | None = None, lifetime: float | None = None, *,
               new_key: bool = False) -> None:
        """The vault is now unlocked: start its deadlines (at most the cap), hand the audit
        key to the trail and the last-used times (`new_key`: a vault just made, whose key
        anchored nothing yet), and tell subscribers."""
        self.deadlines.start(*self.config.window(idle, lifetime))
        was = self._unlocked
        self._unlocked = True
        self._wake.set()
        if not was:
            log.info("unlocked (idle timeout %.0f s, max lifetime %.0f s)",
                     self.deadlines.idle, self.deadlines.lifetime)
            key = self.store().audit_key
            self.audit.unlocked(key, new_key=new_key)
            self.last_used.unlocked(key)
            self._load_grants()
            self.events.publish(protocol.Unlocked())

    def _load_grants(self) -> None:
        """Read the grants from the vault; records of grants long dead are deleted. A vault
        that cannot give them (damaged: `credd check`) leaves none in force (fail closed)."""
        try:
            records = self.records()
            blobs = records.records(GRANT_KIND)
        except CreddError as exc:
            log.error("grants cannot be read from the vault (%s): none is in force", exc.code)
            self.grants.load({})
            return
        for stale in self.grants.load(blobs):
            self._writer.submit(records.delete_record, GRANT_KIND, stale)

    def rekeyed(self) -> None:
        """The vault's key changed, and with it the audit key: re-anchor under the new one
        (a lock that came meanwhile anchored under the old key, and the next unlock says so)."""
        if not self._unlocked:
            return
        vault = self.require_vault()  # the local entries: no mount is listed for this
        self.audit.unlocked(vault.audit_key, new_key=True)
        self.last_used.rekeyed(vault.audit_key, vault.entries())

    def lock(self, reason: str) -> None:
        """Forget the key now; the vault's own lock runs after any write in flight."""
        self._epoch += 1
        if not self._unlocked:
            return
        self._unlocked = False
        if self._seal is not None:
            self._seal.cancel()
            self._seal = None
        if self.vault is not None:
            self._writer.submit(self.vault.lock)
        self.mounts.close()
        log.info("locked (%s)", reason)
        self.audit.try_record("lock", reason)
        self.audit.locked()
        self.last_used.locked()
        self.lifecycle.forget()
        self.pages.clear()
        self.grants.clear()
        self.approvals.refuse()
        self.events.publish(protocol.Locked(reason=reason))

    async def watchdog(self) -> None:
        """Lock on time even when no request comes."""
        while True:
            delay = None
            if self._unlocked:
                delay = min(min(self.deadlines.left()) + 0.01, 5.0)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self.check_deadlines()

    def status(self) -> protocol.StatusReply:
        vault = self.open_vault()
        unlocked = vault is not None and self.unlocked
        entries = vault.entry_count if vault is not None and unlocked else None
        slots = vault.slot_counts() if vault is not None and unlocked else {}
        if unlocked:
            self.store()  # opens the mounts a changed table adds, for their states
        else:
            self.mounts.reload()
        idle_left = lifetime_left = None
        if unlocked:
            idle_left, lifetime_left = self.deadlines.left()
        default_idle, default_lifetime, _ = self.config.window(None, None)
        return protocol.StatusReply(
            state="unlocked" if unlocked else ("locked" if vault is not None else "no_vault"),
            vault=self.config.vault, socket=self.config.socket, pid=os.getpid(),
            version=__version__, entries=entries,
            idle_timeout=self.deadlines.idle if unlocked else default_idle,
            max_lifetime=self.deadlines.lifetime if unlocked else default_lifetime,
            idle_left=idle_left, lifetime_left=lifetime_left,
            retry_after=self.throttle.retry_after(),
            capped=unlocked and self.deadlines.capped,
            mounts=self.mounts.infos(), config_error=self.mounts.error, slots=slots,
        )

    async def close(self) -> None:
        """Lock, end what runs left running, let the writer finish, close the vault."""
        self.lock("shutdown")
        self.reapers.close()
        if self.vault is not None:
            await self.write(self.vault.close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=False, cancel_futures=True)
        self.audit.close()
