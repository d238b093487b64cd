"""credd's settings file, config.toml: where it is, who may write it, how it is edited, and its
sections.

    [mounts.team]            the mount table (credd/daemon/mounts/config.py, docs/mounts.md)
    backend = "openbao"
    ...

    [rotation]               rotation periods by entry kind (docs/lifecycle.md)
    password = "90d"
    api_key = "1y"
    certificate = "never"

The path is `paths.config_path()` (`$CREDD_CONFIG`, else `$XDG_CONFIG_HOME/credd/config.toml`).
The file holds no secret (a mount's credentials are `credd://` references), but whoever can
write it could point a mount, and the token sent to it, at their own server: `read` refuses a
file or directory that others can reach. `editing` holds an exclusive lock on the directory
(created 0700) while a command reads, changes and replaces the file; `replace` writes it
atomically (temp file, fsync, rename, directory fsync) as 0600.

The agent keeps a `Watched` view of each section it uses: one stat per look, a reload when the
file changed, and the last good value (with `error` saying why) when the new file does not load.

Standard library (tomllib) and credd's errors, paths, files and rules: `credd mount` and
`credd due` need no agent to read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tomllib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from credd import rules
from credd.errors import BadRequest, CreddError

T = TypeVar("T")
Document = dict[str, Any]

log = logging.getLogger("credd.agent")


# ---------------------------------------------------------------- the file

def signature(path: str) -> tuple[int, ...] | None:
    """What changes whenever the file is replaced or written (None: no file): one stat, no
    read, so the agent can look at every request that depends on it."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def read(path: str) -> Document:
    """The file's TOML document ({} when there is no file); BadRequest or InsecurePath with
    the file and what is wrong."""
    text = read_text(path)
    return {} if text is None else parse(text, path)


def parse(text: str, path: str = "config.toml") -> Document:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest(f"{path}: not valid TOML: {exc}") from None


def read_text(path: str) -> str | None:
    """The file's text, after checking it and its directory are private (None: no file)."""
    from credd.paths import check_private_dir, check_private_file
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadRequest(f"{path}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        check_private_file(path)
        check_private_dir(os.path.dirname(os.path.abspath(path)))
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{path}: not UTF-8 text") from None


def section(doc: Document, name: str, path: str, shape: str) -> dict[str, Any]:
    """The table `name` of the document ({} when absent); BadRequest naming `shape` (how
    the table is written) when it is something else."""
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise BadRequest(f"{path}: {name} must be a table: {shape}")
    return table


@contextlib.contextmanager
def editing(path: str) -> Iterator[str]:
    """The file's text ("" when there is none), under an exclusive lock on its directory
    (created 0700): read, change and `replace` it inside the block."""
    from credd.paths import ensure_private_dir
    directory = ensure_private_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield read_text(path) or ""
    finally:
        os.close(fd)


def replace(path: str, text: str) -> None:
    """Write `text` over the file atomically, 0600 (call it inside `editing`)."""
    from credd.files import write_private
    write_private(path, text.encode("utf-8"))


def toml_value(value: str | float | bool) -> str:
    """A TOML value for a string, number or boolean (what credd writes into the file)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f"
                                              else c) for c in value) + '"'


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class Watched(Generic[T]):
    """One section of the file as the agent last loaded it.

    `current()` stats the file and re-reads it only when it changed; a file that does not
    load (bad TOML, a bad section, loose permissions) keeps the last good value in force,
    and `error` says why until a good file replaces it.
    """

    def __init__(self, path: str, load: Callable[[Document, str], T], default: T,
                 what: str) -> None:
        self.path, self.what, self.error = path, what, ""
        self._load, self._value = load, default
        self._seen: tuple[int, ...] | None = (-1,)  # no file has it: the first look loads

    def current(self) -> T:
        seen = signature(self.path)
        if seen != self._seen:
            self._seen = seen
            try:
                self._value, self.error = self._load(read(self.path), self.path), ""
            except CreddError as exc:
                if exc.message != self.error:
                    log.warning("%s not loaded, the last good one stays: %s", self.what,
                                exc.message)
                self.error = exc.message
        return self._value


# ---------------------------------------------------------------- [rotation]

ROTATION_SHAPE = '[rotation] with a period per entry type, e.g. password = "90d"'


def rotation(doc: Document, path: str) -> dict[str, float]:
    """Rotation periods by kind: `rules.DEFAULT_ROTATION`, changed by the file's [rotation]
    table. A period is a duration (`90d`, `1y`) or `never`."""
    periods = dict(rules.DEFAULT_ROTATION)
    for kind, text in section(doc, "rotation", path, ROTATION_SHAPE).items():
        if not rules.is_kind(kind):
            raise BadRequest(f"{path}: [rotation] {kind!r} is not an entry type (a lowercase "
                             f"word such as {', '.join(rules.KINDS)})")
        if not isinstance(text, str):
            raise BadRequest(f"{path}: [rotation] {kind} must be text such as \"90d\" or "
                             "\"never\"")
        try:
            periods[kind] = rules.parse_period(text)
        except BadRequest as exc:
            raise BadRequest(f"{path}: [rotation] {kind}: {exc.message}") from None
    return {kind: period for kind, period in periods.items() if period < rules.NEVER}
