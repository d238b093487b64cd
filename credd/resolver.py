"""`credd.resolve()` (defined here, exported by the package): one call that finds a secret
wherever this deployment keeps it.

Precedence, first hit wins:

1. the environment variable `env_var` (default: derived from `name` as in
   `credd export`, e.g. `github/token` → `GITHUB_TOKEN`), if set and non-empty;
2. the file named by `<env_var>_FILE` (the Docker/Kubernetes `_FILE`
   convention; one trailing newline is dropped);
3. the credd agent (`name` may be `NAME`, `NAME/FIELD` or a `credd://` reference);
4. the tool's default file `default_file`, if given: the whole file, or with
   `default_key="SECTION.KEY"` that key of an INI file such as
   `~/.aws/credentials` (`default.aws_access_key_id`).

So a container that sets `API_TOKEN` or `API_TOKEN_FILE` overrides the
vault, and a laptop without an agent still finds the tool's own file. When
nothing has it, the agent's error is raised (NotFound, LockedError,
AgentUnavailable): it says what to do next.
"""

from __future__ import annotations

import configparser
import os

from credd.envfile import var_name
from credd.errors import AgentUnavailable, LockedError, NotFound
from credd.refs import SCHEME


def resolve(name: str, *, env_var: str | None = None, default_file: str | None = None,
            default_key: str | None = None, client=None) -> str:
    """The secret `name`, by the precedence above."""
    path = name[len(SCHEME):] if name.startswith(SCHEME) else name
    var = env_var or var_name(path)
    value = os.environ.get(var)
    if value:
        return value
    file_path = os.environ.get(f"{var}_FILE")
    if file_path:
        return _read_file(file_path)
    try:
        return _from_agent(path, client)
    except (NotFound, LockedError, AgentUnavailable) as exc:
        if default_file is None:
            raise
        found = _from_default(os.path.expanduser(default_file), default_key)
        if found is None:
            raise exc
        return found


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        data = f.read()
    return data[:-1] if data.endswith("\n") else data


def _from_agent(path: str, client) -> str:
    if client is not None:
        return client.get_many([path])[path]
    from credd.client import Client
    with Client(client_name="credd-resolve", timeout=10.0) as own:
        return own.get_many([path])[path]


def _from_default(path: str, key: str | None) -> str | None:
    """The default file's secret, or None when it is absent, unreadable or lacks the key."""
    try:
        if key is None:
            return _read_file(path).strip() or None
        parser = configparser.RawConfigParser()
        parser.read(path, encoding="utf-8")
        section, _, option = key.rpartition(".")
        return parser.get(section or "default", option, fallback=None)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
