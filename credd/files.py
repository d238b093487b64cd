"""Writing files that hold secrets: atomic, private, and never over a looser file by accident.

`write_private` writes a temporary file born 0600 in the target's directory,
fsyncs it, sets the final mode, renames it over the target and fsyncs the
directory: a reader sees the whole old file or the whole new one, never a
torn or briefly world-readable one. `private_temp` and `publish` are the same
steps for a file something else fills (SQLite writing a backup by its path),
and `publish` can refuse to replace what is there.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator

from credd.errors import BadRequest, Exists, InsecurePath


def check_overwrite(path: str, force: bool) -> None:
    """Refuse to replace a file others can read (it may be shared on purpose) unless forced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest(f"{path} is a directory")
    if (st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode)) and not force:
        raise InsecurePath(f"refusing to overwrite {path} (mode {stat.S_IMODE(st.st_mode):04o}, "
                           f"readable beyond you) with secrets: use --force, or remove it first")


def write_private(path: str, data: bytes, *, mode: int = 0o600, force: bool = False) -> None:
    """Atomically replace `path` with `data`, final permissions `mode` (0600 or stricter)."""
    fill_private(path, lambda fd: _write_all(fd, data), mode=mode, force=force)


def fill_private(path: str, fill: Callable[[int], None], *, mode: int = 0o600,
                 force: bool = False) -> None:
    """`write_private`, the temporary file written by `fill(fd)` (for `inject` under a use
    grant, by the agent through that descriptor)."""
    check_overwrite(path, force)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fill(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(os.path.dirname(tmp))


def temp_name(path: str) -> str:
    """A fresh hidden name beside `path`, for a file that will be renamed to it."""
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}")


@contextlib.contextmanager
def private_temp(path: str) -> Iterator[tuple[str, int]]:
    """A new empty file born 0600 beside `path` (O_EXCL, O_NOFOLLOW) and its descriptor,
    for a write that ends in `publish`; gone afterwards unless published."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        yield tmp, fd
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # after a no-clobber publish, the file keeps only its new name


def publish(tmp: str, path: str, *, replace: bool) -> None:
    """Give the written and fsynced `tmp` the name `path` atomically, then make that
    durable (fsync of the directory). Without `replace`, Exists if `path` exists: the
    new name is a hard link, which fails rather than replace; where the file system has
    none (FAT), a check then a rename."""
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:
            raise _taken(path) from None
        except OSError:  # no hard links here
            if os.path.lexists(path):
                raise _taken(path) from None
            os.rename(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _taken(path: str) -> Exists:
    return Exists(f"{path} exists: nothing was written (choose another name, or add "
                  "`--force` to replace it)")


def fsync_dir(directory: str) -> None:
    """Make the names in `directory` durable (a rename is not, until its directory is)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def save_state(path: str, data: bytes, what: str) -> None:
    """`write_private` for a file the agent can do without (an anchor, last-used times):
    a failure is logged (no secret in it), not raised, since no request is waiting on it."""
    try:
        write_private(path, data, force=True)
    except OSError as exc:
        import logging
        logging.getLogger("credd.agent").error("%s cannot be written to %s: %s", what, path,
                                               exc.strerror or exc)


def read_state(path: str, limit: int = 1 << 22) -> bytes | None:
    """A small file of the agent's own, never through a symlink; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)
