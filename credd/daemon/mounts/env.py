"""The env backend: the agent's environment variables with one prefix, read-only.

    credd mount add platform --backend env --env-prefix PLATFORM_CRED_

`PLATFORM_CRED_DB={"username": "app", "password": "..."}` is the entry
`platform/db` with a field per key (identifiers such as `username` and `host`
in clear, the rest secret, as `credd import --format env` makes them:
`credd.formats.env_draft`), and `PLATFORM_CRED_API_KEY=abc` the entry
`platform/api_key` with that value. Names are the variable's key lower-cased;
two variables whose keys differ only in case would make one name, so neither
is served (a warning says which) and every name leads back to one variable.

The variables are the agent's own, as it started: the mount lists them when
it opens (unlock, or a table change) and reads a value from the environment
when it is asked for, copying nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from credd.formats import env_draft, env_entries
from credd.protocol import EntryMeta

from . import Resolve
from .config import MountConfig
from .readonly import ReadOnlyMount, not_found


class EnvMount(ReadOnlyMount):
    backend = "env"

    def __init__(self, config: MountConfig, resolve: Resolve) -> None:
        super().__init__(config.name, f"${config.env_prefix}*")
        self._warnings: list[str] = []
        found: dict[str, list[tuple[str, str]]] = {}
        for var, key, value in env_entries(os.environ, config.env_prefix):
            if _good_key(key):
                found.setdefault(f"{self.name}/{key}", []).append((var, value))
            else:
                self._warnings.append(f"${var} is not served: {key!r} is not an entry name")
        self._vars: dict[str, str] = {}  # entry name -> its variable
        self._by_name: dict[str, EntryMeta] = {}
        for name, pairs in found.items():
            if len(pairs) > 1:
                self._warnings.append(f"{', '.join('$' + var for var, _ in pairs)} all map to "
                                      f"{name}: none is served (rename all but one)")
                continue
            self._vars[name] = pairs[0][0]
            self._by_name[name] = _meta(name, pairs[0][1], self.name)
        self._entries = [self._by_name[name] for name in sorted(self._by_name)]

    def entries(self) -> Sequence[EntryMeta]:
        return self._entries

    def describe(self, name: str) -> EntryMeta:
        meta = self._by_name.get(name)
        if meta is None or self._vars[name] not in os.environ:
            raise not_found(name, self.name)
        return meta

    def _secrets(self, meta: EntryMeta) -> tuple[str, dict[str, str]]:
        value = os.environ.get(self._vars[meta.name], "")
        fields = env_draft(meta.name, value).fields
        secrets = {f.name: f.value for f in fields.get("fields", []) if f.secret}
        return fields.get("value", ""), secrets

    def warnings(self) -> list[str]:
        return list(self._warnings)


def _meta(name: str, value: str, mount: str) -> EntryMeta:
    fields = env_draft(name, value).fields.get("fields")
    if fields is None:
        return EntryMeta(name=name, has_value=True, mount=mount)
    return EntryMeta(name=name, mount=mount,
                     fields={f.name: f.value for f in fields if not f.secret},
                     secret_fields=tuple(f.name for f in fields if f.secret))


def _good_key(key: str) -> bool:
    """A key that makes a valid entry name: segments not empty, not . or .., no control
    characters (environment names can hold almost anything)."""
    return all(s and s == s.strip() and s not in (".", "..") for s in key.split("/")) \
        and key.isprintable()
