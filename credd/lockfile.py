"""Lock files that name their holder: one agent per socket, one agent per vault.

The lock is an `flock` on the open file, held as long as the descriptor is open:
the kernel drops it when the holder exits, `kill -9` included, so a stale lock
cannot outlive its process. The file's text (`pid=...`, `socket=...` lines) only
names the holder in the refusal a second process gets. A lock file is never
deleted: unlinking one lets two processes each lock a different inode.

Standard library only, so that a tool opening the vault without the agent can
take the same lock (`lock_vault`) before it touches the file.
"""

from __future__ import annotations

import fcntl
import os
import stat

from credd.errors import InsecurePath, InUse
from credd.paths import ensure_private_dir


class Held(InUse):
    """Another process holds the lock; `owner` is what it wrote (pid, socket)."""

    def __init__(self, message: str, owner: dict[str, str]) -> None:
        super().__init__(message)
        self.owner = owner


def take(path: str, **owner: object) -> int:
    """Lock `path` (created 0600 if missing), write `owner` into it; the fd to keep open."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise InsecurePath(f"{path} is not a private file of yours; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _read_owner(fd)
            raise Held(f"{path} is held by pid {held.get('pid', '?')}", held) from None
        text = "".join(f"{key}={value}\n" for key, value in owner.items())
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def lock_vault(vault: str, socket: str) -> int:
    """Hold `<vault>.lock` for this process's life, before the vault is opened or created.

    Raises InUse (`in_use`) naming the agent that serves the vault already: two agents on
    one file would each serve their own, diverging picture of it.
    """
    vault = os.path.abspath(vault)
    ensure_private_dir(os.path.dirname(vault))  # the vault may not exist yet: `credd init`
    try:
        return take(vault + ".lock", pid=os.getpid(), socket=socket)
    except Held as held:
        pid, other = held.owner.get("pid", "?"), held.owner.get("socket", "?")
        raise InUse(f"another credd agent (pid {pid}) is already serving the vault {vault}, "
                     f"on {other}: use it (CREDD_SOCK={other}), or stop it with "
                     f"`CREDD_SOCK={other} credd stop`") from None


def _read_owner(fd: int) -> dict[str, str]:
    """What the holder wrote: `key=value` lines (a bare number is a pid, as older agents wrote)."""
    text = os.pread(fd, 4096, 0).decode(errors="replace")
    owner: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            owner[key.strip()] = value.strip()
        elif line.strip().isdigit():
            owner["pid"] = line.strip()
    return owner
