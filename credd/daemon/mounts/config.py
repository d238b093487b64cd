"""The mount table: `[mounts.NAME]` tables in credd's config.toml.

    [mounts.team]
    backend = "openbao"
    url = "https://bao.example.com:8200"
    prefix = "team/"
    token = "credd://openbao/token"

    [mounts.platform]
    backend = "env"
    env_prefix = "PLATFORM_CRED_"

    [mounts.run]
    backend = "files"
    dir = "/run/secrets"

Credentials never sit in this file: `token`, `role_id` and `secret_id` are
`credd://` references to entries of the local vault. The file may hold other
settings and comments: `add` and `remove` edit only the lines of one
`[mounts.NAME]` table, check that the result parses to exactly the intended
table, and replace the file atomically (temp file, fsync, rename, directory
fsync) as 0600 in a 0700 directory, under a lock on that directory. Loading
refuses a file or directory that others can reach: whoever can write it could
point a mount, and the token sent to it, at their own server.

Standard library (tomllib) and msgspec only: `credd mount` needs no agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import msgspec

from credd.errors import BadRequest, Exists, NotFound


class MountConfig(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True,
                  frozen=True):
    """One mount as configured. Frozen: the agent keeps a mount open while its config is equal."""

    name: str
    backend: str
    url: str = ""                # openbao: the server
    engine: str = "secret"       # openbao: the KV v2 engine's mount point
    prefix: str = ""             # openbao: the path under the engine
    token: str = ""              # openbao: credd:// reference to a token
    role_id: str = ""            # openbao: credd:// references for AppRole
    secret_id: str = ""
    namespace: str = ""          # openbao: a namespace (OpenBao / Vault Enterprise)
    revalidate: float = 30.0     # openbao: seconds a cached read is served before it is checked
    offline_cache: bool = False  # openbao: serve cached reads while the server is down
    ca_cert: str = ""            # openbao: a CA bundle for https
    dir: str = ""                # files: the directory of secret files
    env_prefix: str = ""         # env: the variables' common prefix


#: The options each backend takes besides `name` and `backend`; any other is refused.
OPTIONS = {
    "openbao": ("url", "engine", "prefix", "token", "role_id", "secret_id", "namespace",
                "revalidate", "offline_cache", "ca_cert"),
    "env": ("env_prefix",),
    "files": ("dir",),
}
READ_ONLY = frozenset({"env", "files"})
_REQUIRED = {"openbao": ("url",), "env": ("env_prefix",), "files": ("dir",)}
_REFS = ("token", "role_id", "secret_id")
_DEFAULTS = MountConfig(name="", backend="")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_VAR_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = "credd://"


# ---------------------------------------------------------------- validation

def check(config: MountConfig) -> MountConfig:
    """`config` if it is a mount credd can open; else BadRequest naming the mount and why."""
    where = f"mount {config.name!r}"
    if not NAME_RE.fullmatch(config.name):
        raise BadRequest(f"{where}: a mount name is 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    if config.backend not in OPTIONS:
        raise BadRequest(f"{where}: unknown backend {config.backend!r} "
                         f"(one of: {', '.join(OPTIONS)})")
    allowed = OPTIONS[config.backend]
    for option in set(config.__struct_fields__) - {"name", "backend", *allowed}:
        if getattr(config, option) != getattr(_DEFAULTS, option):
            raise BadRequest(f"{where}: {option} is not an option of the {config.backend} "
                             f"backend (it takes: {', '.join(allowed)})")
    for option in _REQUIRED[config.backend]:
        if not getattr(config, option):
            raise BadRequest(f"{where}: the {config.backend} backend needs {option}")
    _CHECKS[config.backend](config, where)
    return config


def _check_openbao(config: MountConfig, where: str) -> None:
    if not config.url.startswith(("http://", "https://")):
        raise BadRequest(f"{where}: url must start with http:// or https://")
    for option in _REFS:
        value = getattr(config, option)
        if value and (not value.startswith(_SCHEME) or len(value) == len(_SCHEME)):
            raise BadRequest(f"{where}: {option} must be a {_SCHEME}NAME reference to an entry of "
                             "the local vault, never the credential itself")
    if bool(config.role_id) != bool(config.secret_id):
        raise BadRequest(f"{where}: AppRole needs both role_id and secret_id")
    if bool(config.token) == bool(config.role_id):
        raise BadRequest(f"{where}: give either token, or role_id and secret_id")
    if not config.engine or config.engine != config.engine.strip("/"):
        raise BadRequest(f"{where}: engine is the KV engine's mount point, e.g. secret")
    if config.prefix.startswith("/") or ".." in config.prefix.split("/"):
        raise BadRequest(f"{where}: prefix is a path under the engine, e.g. team/")
    if not (math.isfinite(config.revalidate) and config.revalidate > 0):
        raise BadRequest(f"{where}: revalidate must be a positive number of seconds")
    if config.ca_cert and not os.path.isabs(config.ca_cert):
        raise BadRequest(f"{where}: ca_cert must be an absolute path")


def _check_env(config: MountConfig, where: str) -> None:
    if not _VAR_PREFIX_RE.fullmatch(config.env_prefix):
        raise BadRequest(f"{where}: env_prefix must be the start of variable names, "
                         "e.g. PLATFORM_CRED_")


def _check_files(config: MountConfig, where: str) -> None:
    if not os.path.isabs(config.dir):
        raise BadRequest(f"{where}: dir must be an absolute path")


_CHECKS = {"openbao": _check_openbao, "env": _check_env, "files": _check_files}


# ---------------------------------------------------------------- reading

def signature(path: str) -> tuple[int, ...] | None:
    """What changes whenever the file is replaced or written (None: no file). The agent
    compares it at every request that routes a name: one stat, no read."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def load(path: str) -> dict[str, MountConfig]:
    """The mount table in `path`, by name ({} when there is no file); BadRequest or
    InsecurePath with the file, the line and what is wrong."""
    text = _read(path)
    return {} if text is None else parse(text, path)


def parse(text: str, path: str = "config.toml") -> dict[str, MountConfig]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest(f"{path}: not valid TOML: {exc}") from None
    return _table(doc, path)


def _table(doc: dict[str, Any], path: str) -> dict[str, MountConfig]:
    mounts = doc.get("mounts", {})
    if not isinstance(mounts, dict):
        raise BadRequest(f"{path}: mounts must be tables, one [mounts.NAME] per mount")
    table = {}
    for name, options in mounts.items():
        if not isinstance(options, dict):
            raise BadRequest(f"{path}: mounts.{name} must be a table ([mounts.{name}])")
        if "name" in options:
            raise BadRequest(f"{path}: mount {name!r}: its name is the table's "
                             "([mounts.NAME]), not a key")
        try:
            config = msgspec.convert({"name": name, **options}, MountConfig)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"{path}: mount {name!r}: {exc}") from None
        table[name] = check(config)
    return table


def _read(path: str) -> str | None:
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


# ---------------------------------------------------------------- editing

def add(path: str, config: MountConfig) -> None:
    """Add one mount to the file (created if missing); Exists if the name is taken."""
    check(config)
    with _editing(path) as (text, table):
        if config.name in table:
            raise Exists(f"a mount named {config.name!r} already exists: "
                         f"`credd mount rm {config.name}` first", names=[config.name])
        new = (text if not text or text.endswith("\n") else text + "\n")
        new += ("\n" if new else "") + to_toml(config)
        _replace(path, new, {**table, config.name: config})


def remove(path: str, name: str) -> MountConfig:
    """Remove one mount's table from the file; NotFound if there is none."""
    with _editing(path) as (text, table):
        if name not in table:
            raise NotFound(f"no mount named {name!r} in {path}", names=[name])
        lines = text.splitlines(keepends=True)
        start = next((i for i, line in enumerate(lines) if _header(line) == name), None)
        if start is None:
            raise BadRequest(f"{path}: mount {name!r} is not written as a [mounts.{name}] "
                             "table: remove it by hand")
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].lstrip().startswith("[")), len(lines))
        while end == len(lines) and start > 0 and not lines[start - 1].strip():
            start -= 1  # the last table: the blank lines that separated it go too
        removed = table.pop(name)
        _replace(path, "".join(lines[:start] + lines[end:]), table)
        return removed


_HEADER_RE = re.compile(r"""\s*\[\s*mounts\s*\.\s*(?:"([^"\\]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]
                            \s*(?:\#.*)?""", re.X)


def _header(line: str) -> str | None:
    """The mount a `[mounts.NAME]` header line opens, or None."""
    match = _HEADER_RE.fullmatch(line.rstrip("\r\n"))
    return next((g for g in match.groups() if g is not None), None) if match else None


@contextlib.contextmanager
def _editing(path: str) -> Iterator[tuple[str, dict[str, MountConfig]]]:
    """The file's text and table, under an exclusive lock on its directory (created 0700)."""
    from credd.paths import ensure_private_dir
    directory = ensure_private_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = _read(path) or ""
        yield text, parse(text, path)
    finally:
        os.close(fd)


def _replace(path: str, text: str, expected: dict[str, MountConfig]) -> None:
    """Write `text` over the file, once it is certain to read back as `expected`."""
    if parse(text, path) != expected:
        raise BadRequest(f"{path}: the mount table is written in a form `credd mount` cannot "
                         "edit safely; edit the file by hand")
    from credd.files import write_private
    write_private(path, text.encode("utf-8"))


def to_toml(config: MountConfig) -> str:
    """One `[mounts.NAME]` table: backend first, then the options that differ from defaults."""
    key = config.name if _BARE_KEY_RE.fullmatch(config.name) else _toml_value(config.name)
    lines = [f"[mounts.{key}]", f"backend = {_toml_value(config.backend)}"]
    for option in OPTIONS.get(config.backend, ()):
        value = getattr(config, option)
        if value != getattr(_DEFAULTS, option):
            lines.append(f"{option} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f"
                                                   else c) for c in value) + '"'


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
