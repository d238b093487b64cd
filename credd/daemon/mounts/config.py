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
table, and replace the file (credd/config.py: reading with its permission
checks, the lock, the atomic replace).

Standard library (tomllib) and msgspec only: `credd mount` needs no agent.
"""

from __future__ import annotations

import math
import os
import re

import msgspec

from credd import config as settings
from credd.config import toml_value
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

def load(path: str) -> dict[str, MountConfig]:
    """The mount table in `path`, by name ({} when there is no file); BadRequest or
    InsecurePath with the file, the line and what is wrong."""
    return table(settings.read(path), path)


def parse(text: str, path: str = "config.toml") -> dict[str, MountConfig]:
    return table(settings.parse(text, path), path)


def table(doc: settings.Document, path: str) -> dict[str, MountConfig]:
    """The [mounts.NAME] tables of a parsed config file, each checked."""
    mounts = settings.section(doc, "mounts", path, "one [mounts.NAME] per mount")
    found = {}
    for name, options in mounts.items():
        if not isinstance(options, dict):
            raise BadRequest(f"{path}: mounts.{name} must be a table ([mounts.{name}])")
        if "name" in options:
            raise BadRequest(f"{path}: mount {name!r}: its name is the table's "
                             "([mounts.NAME]), not a key")
        try:
            found[name] = check(msgspec.convert({"name": name, **options}, MountConfig))
        except msgspec.ValidationError as exc:
            raise BadRequest(f"{path}: mount {name!r}: {exc}") from None
        except BadRequest as exc:
            raise BadRequest(f"{path}: {exc.message}") from None
    return found


# ---------------------------------------------------------------- editing

def add(path: str, config: MountConfig) -> None:
    """Add one mount to the file (created if missing); Exists if the name is taken."""
    check(config)
    with settings.editing(path) as text:
        mounts = parse(text, path)
        if config.name in mounts:
            raise Exists(f"a mount named {config.name!r} already exists: "
                         f"`credd mount rm {config.name}` first", names=[config.name])
        new = (text if not text or text.endswith("\n") else text + "\n")
        new += ("\n" if new else "") + to_toml(config)
        _replace(path, new, {**mounts, config.name: config})


def remove(path: str, name: str) -> MountConfig:
    """Remove one mount's table from the file; NotFound if there is none."""
    with settings.editing(path) as text:
        mounts = parse(text, path)
        if name not in mounts:
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
        removed = mounts.pop(name)
        _replace(path, "".join(lines[:start] + lines[end:]), mounts)
        return removed


_HEADER_RE = re.compile(r"""\s*\[\s*mounts\s*\.\s*(?:"([^"\\]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]
                            \s*(?:\#.*)?""", re.X)


def _header(line: str) -> str | None:
    """The mount a `[mounts.NAME]` header line opens, or None."""
    match = _HEADER_RE.fullmatch(line.rstrip("\r\n"))
    return next((g for g in match.groups() if g is not None), None) if match else None


def _replace(path: str, text: str, expected: dict[str, MountConfig]) -> None:
    """Write `text` over the file, once it is certain to read back as `expected`."""
    if parse(text, path) != expected:
        raise BadRequest(f"{path}: the mount table is written in a form `credd mount` cannot "
                         "edit safely; edit the file by hand")
    settings.replace(path, text)


def to_toml(config: MountConfig) -> str:
    """One `[mounts.NAME]` table: backend first, then the options that differ from defaults."""
    key = config.name if _BARE_KEY_RE.fullmatch(config.name) else toml_value(config.name)
    lines = [f"[mounts.{key}]", f"backend = {toml_value(config.backend)}"]
    for option in OPTIONS.get(config.backend, ()):
        value = getattr(config, option)
        if value != getattr(_DEFAULTS, option):
            lines.append(f"{option} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
