"""The files backend: a directory of secret files, read-only.

    credd mount add run --backend files --dir /run/secrets

Each regular file is an entry, its path under the directory the rest of the
name (`/run/secrets/db_password` is `run/db_password`, subdirectories are
segments); its content is the value, one trailing newline dropped (as
`credd.resolve` reads `NAME_FILE`). Files and directories whose names start
with "." are not entries.

Kubernetes mounts a secret volume as `..data -> ..2026_01_01_00_00_00.1234/`
plus a link per key, and updates it by writing a new timestamped directory
and swapping `..data` in one rename. So where `..data` exists the mount lists
and reads the directory it points to, resolved once per read: a read sees the
old files or the new ones, never a mix; a file that vanished under a read
(the old directory removed after the swap) is looked up again in the new one.

Nothing is cached but the listing, which is made again when the directory
(or a subdirectory, or `..data`) changes: one stat each per request. Values
are read from the file at every request, so a changed file is served at once.
No link is followed out of the directory. A secret file that others can
read (or write) is served, and reported in the mount's warnings
(`credd mount ls`, `credd status`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import NamedTuple

from credd.errors import BadRequest, CreddError, Unavailable
from credd.protocol import EntryMeta, MountInfo

from . import Resolve
from .config import MountConfig
from .readonly import ReadOnlyMount, not_found

MAX_FILE = 512 * 1024  # a value must fit in a reply frame (1 MiB) with room to spare
_DATA = "..data"
_SHOWN = 5  # loose files named in the warning


class Listing(NamedTuple):
    key: tuple[object, ...]     # what changes when the directory does (see _key)
    root: str                   # the directory the files are read from
    dirs: list[str]             # every directory listed, for the key
    paths: dict[str, str]       # entry name -> file path
    metas: dict[str, EntryMeta]
    entries: list[EntryMeta]
    warnings: list[str]


class FilesMount(ReadOnlyMount):
    backend = "files"

    def __init__(self, config: MountConfig, resolve: Resolve) -> None:
        super().__init__(config.name, config.dir)
        self.dir = config.dir
        self._listing: Listing | None = None

    def entries(self) -> Sequence[EntryMeta]:
        return self._current().entries

    def describe(self, name: str) -> EntryMeta:
        meta = self._current().metas.get(name)
        if meta is None:
            raise not_found(name, self.name)
        return meta

    def warnings(self) -> list[str]:
        return list(self._current().warnings)

    def info(self) -> MountInfo:
        try:
            return super().info()
        except CreddError as exc:
            return MountInfo(name=self.name, backend=self.backend, location=self.location,
                             state="error", message=exc.message, read_only=True)

    def _secrets(self, meta: EntryMeta) -> tuple[str, dict[str, str]]:
        for attempt in (1, 2):
            path = self._current().paths.get(meta.name)
            if path is None:
                raise not_found(meta.name, self.name)
            try:
                return _read(path, self._top(), meta.name), {}
            except FileNotFoundError:
                if attempt == 2:
                    raise not_found(meta.name, self.name) from None
                self._listing = None  # its directory went in a ..data swap: list the new one
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ listing

    def _top(self) -> str:
        return os.path.realpath(self.dir)

    def _root(self) -> str:
        """The directory to read: where `..data` points (inside the mount), or the mount's."""
        try:
            target = os.readlink(os.path.join(self.dir, _DATA))
        except OSError:
            return self.dir
        root = os.path.realpath(os.path.join(self.dir, target))
        return root if _inside(root, self._top()) else self.dir

    def _current(self) -> Listing:
        listing, root = self._listing, self._root()
        if listing is None or listing.root != root or listing.key != _key(root, listing.dirs):
            try:
                listing = self._listing = self._scan(root)
            except OSError as exc:
                self._listing = None
                raise Unavailable(f"mount {self.name!r}: {self.dir} cannot be listed "
                                  f"({exc.strerror})") from None
        return listing

    def _scan(self, root: str) -> Listing:
        top = self._top()
        dirs: list[str] = []
        files: list[tuple[str, str, os.stat_result]] = []  # (relative name, path, stat)
        skipped: list[str] = []
        _walk(root, "", top, dirs, files, skipped)
        metas = {f"{self.name}/{rel}": EntryMeta(
                     name=f"{self.name}/{rel}", has_value=True, created=st.st_mtime,
                     updated=st.st_mtime, mount=self.name) for rel, _, st in files}
        paths = {f"{self.name}/{rel}": path for rel, path, _ in files}
        loose = [f"{rel} ({stat.S_IMODE(st.st_mode):04o})" for rel, _, st in files
                 if st.st_mode & 0o077]
        warnings = [f"not served: {', '.join(skipped[:_SHOWN])}"] if skipped else []
        if loose:
            warnings.append(f"{len(loose)} secret file{'s' if len(loose) > 1 else ''} in "
                            f"{self.dir} other users can reach: "
                            f"{', '.join(loose[:_SHOWN])}{', ...' if len(loose) > _SHOWN else ''}"
                            " (chmod 600; Kubernetes: defaultMode 0400)")
        return Listing(_key(root, dirs), root, dirs, paths, metas,
                       [metas[name] for name in sorted(metas)], warnings)


def _walk(path: str, rel: str, top: str, dirs: list[str],
          files: list[tuple[str, str, os.stat_result]], skipped: list[str]) -> None:
    """Collect the regular files under `path`; links only to files inside `top`."""
    dirs.append(path)
    with os.scandir(path) as found:
        for item in sorted(found, key=lambda e: e.name):
            if item.name.startswith("."):
                continue
            name = f"{rel}/{item.name}" if rel else item.name
            if not _good_segment(item.name):
                skipped.append(f"{name!r} (not an entry name)")
                continue
            if item.is_symlink() and not _inside(os.path.realpath(item.path), top):
                skipped.append(f"{name} (a link out of the directory)")
                continue
            try:
                st = os.stat(item.path)
            except OSError:
                continue  # a dangling link, or gone since the listing
            if stat.S_ISDIR(st.st_mode) and not item.is_symlink():
                _walk(item.path, name, top, dirs, files, skipped)
            elif stat.S_ISREG(st.st_mode):
                files.append((name, item.path, st))


def _key(root: str, dirs: list[str]) -> tuple[object, ...]:
    """Changes when a file is added, removed or renamed in any listed directory."""
    key: list[object] = [root]
    for path in dirs:
        try:
            st = os.stat(path)
        except OSError:
            return ()  # gone: list again
        key.append((st.st_ino, st.st_mtime_ns))
    return tuple(key)


def _read(path: str, top: str, name: str) -> str:
    """The file's text, checked to be a regular file inside `top` (FileNotFoundError if gone)."""
    real = os.path.realpath(path)
    if not _inside(real, top):
        raise not_found(name, name.partition("/")[0])
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise not_found(name, name.partition("/")[0])
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise BadRequest(f"{name!r} is larger than {MAX_FILE // 1024} KiB: not served")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{name!r} is not UTF-8 text: a files mount serves text") from None
    return text.removesuffix("\n")


def _inside(path: str, top: str) -> bool:
    return path.startswith(top.rstrip("/") + "/")


def _good_segment(name: str) -> bool:
    return name == name.strip() and name.isprintable() and name not in (".", "..")
