"""`git-credential-credd`: git's credential helper protocol over the credd agent.

    git config --global credential.helper credd

git runs `git-credential-credd get|store|erase` with `key=value` lines on
stdin. It behaves as git's own helpers do (git's t/lib-credential.sh
`helper_test` is the reference):

- A credential is one entry per (protocol, host, path, username), named
  `git/<protocol>/<host>[/<path>]@<username>` (each part escaped by
  `names.segment`, so that distinct credentials never share a name), with
  the password as its value, `oauth_refresh_token` as a secret field and
  `protocol`, `host`, `path`, `username`, `password_expiry_utc` as plain
  fields. Empty usernames and passwords are stored and returned as given.
- Entries are matched by their fields, never by name: an attribute present
  in a request must equal the stored one, an absent one matches any value
  (git's `credential_match`). So `erase` without a path removes the
  credential stored with one; `erase` with a password removes an entry only
  if that password is the stored one (a late `reject` of an old password
  from another git process must not delete the one just stored).
- `get` returns the most recently stored match; an expired password
  (`password_expiry_utc` in the past) is never returned. When nothing the
  helper stored matches, an entry it did not store (no `git` tag, no fields)
  that bears the name it would have (`git/https/github.com@ci`) is returned:
  a file of a mounted secrets directory (docs/mounts.md) can hold nothing else.
- Unknown actions are ignored, as git asks of helpers; an option the helper
  does not know (`credential.helper = "credd --timeout=3600"`, copied from
  credential-cache) is an error on stderr, not silently ignored.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING

from credd.integrations import client, complain
from credd.integrations.names import fit, label, segment, unsegment

if TYPE_CHECKING:
    from credd.client import Client
    from credd.protocol import EntryMeta

PROGRAM = "git-credential-credd"
KEYS = ("protocol", "host", "path", "username")
USAGE = f"usage: {PROGRAM} get|store|erase (git runs it: credential.helper = credd)"
Request = dict[str, str]


def read_request(stream: IO[str]) -> Request:
    """`key=value` lines up to a blank line or EOF (`key[]` lists keep their last value)."""
    attrs: Request = {}
    for raw in stream:
        line = raw.rstrip("\r\n")
        if not line:
            break
        key, eq, value = line.partition("=")
        if eq:
            attrs[key] = value
    return attrs


def entry_name(attrs: Request) -> str:
    """`git/<protocol>/<host>[/<path>]@<username>`; `@` and `/` are escaped inside the
    parts, so the name splits back into them."""
    where = [segment(attrs.get(k, ""), "@") for k in ("protocol", "host")]
    path = attrs.get("path", "")
    if path:
        where += [segment(part, "@") for part in path.split("/")]
    head = "git/" + "/".join(where)
    return fit(f"{head}@{segment(attrs.get('username', ''), '@')}", head)


def _matches(meta: EntryMeta, attrs: Request) -> bool:
    """git's credential_match: each key the request has equals the stored one."""
    return "git" in meta.tags and all(meta.fields.get(k, "") == attrs[k]
                                      for k in KEYS if k in attrs)


def _expired(meta: EntryMeta) -> bool:
    expiry = meta.fields.get("password_expiry_utc", "")
    return expiry.isdigit() and int(expiry) <= time.time()


def _stored(c: Client, attrs: Request) -> list[EntryMeta]:
    return [m for m in c.list(prefix="git/", tag="git") if _matches(m, attrs)]


def _named(c: Client, attrs: Request) -> list[EntryMeta]:
    """Entries the helper did not store, found by the name it would give them."""
    head = entry_name(dict(attrs, username="")).rpartition("@")[0] + "@"
    return [m for m in c.list(prefix=head) if m.has_value and "git" not in m.tags
            and "/" not in m.name[len(head):]
            and ("username" not in attrs or m.name == entry_name(attrs))]


def _username(meta: EntryMeta) -> str:
    if "git" in meta.tags:
        return meta.fields.get("username", "")
    return unsegment(meta.name.rpartition("@")[2])  # "@" inside the parts is escaped


def get(c: Client, attrs: Request) -> str:
    candidates = [m for m in _stored(c, attrs) or _named(c, attrs) if not _expired(m)]
    if not candidates:
        return ""
    meta = max(candidates, key=lambda m: m.updated)
    revealed = c.reveal(meta.name)
    out = {"username": _username(meta), "password": revealed.value}
    if meta.fields.get("password_expiry_utc"):
        out["password_expiry_utc"] = meta.fields["password_expiry_utc"]
    if revealed.secret_fields.get("oauth_refresh_token"):
        out["oauth_refresh_token"] = revealed.secret_fields["oauth_refresh_token"]
    return "".join(f"{k}={v}\n" for k, v in out.items())


def store(c: Client, attrs: Request) -> None:
    """As git's credential-store: nothing without a protocol, a host or path, a username
    and a password (each may be empty); a stored credential with the same keys is replaced."""
    from credd.protocol import Field
    if not ("protocol" in attrs and (attrs.get("host") or attrs.get("path"))
            and "username" in attrs and "password" in attrs):
        return
    fields = [Field(name=k, value=attrs[k], secret=False)
              for k in (*KEYS, "password_expiry_utc") if attrs.get(k)]
    if attrs.get("oauth_refresh_token"):
        fields.append(Field(name="oauth_refresh_token", value=attrs["oauth_refresh_token"]))
    name = entry_name(attrs)
    c.set(name, kind="password", service=label(attrs.get("host", "")), tags=["git"],
          value=attrs["password"], fields=fields)
    same = {k: attrs.get(k, "") for k in KEYS}  # exactly these keys: an older name of it
    for meta in _stored(c, same):
        if meta.name != name:
            _delete(c, meta.name)


def erase(c: Client, attrs: Request) -> None:
    for meta in _stored(c, attrs):
        if "password" in attrs and c.reveal(meta.name).value != attrs["password"]:
            continue
        _delete(c, meta.name)


def _delete(c: Client, name: str) -> None:
    from credd.errors import NotFound
    try:
        c.delete(name)
    except NotFound:  # another git process erased it first
        pass


ACTIONS = {"get": get, "store": store, "erase": erase}


def main(argv: list[str] | None = None) -> int:
    from credd.errors import CreddError
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write(f"{USAGE}\n")
        return 2
    *options, name = args  # git appends the action to the configured command line
    if options:
        sys.stderr.write(f"{PROGRAM}: unknown option {' '.join(options)!r}: credd's helper "
                         f"takes none (credential.helper = credd; the agent's own idle "
                         f"timeout applies)\n")
        return 2
    action = ACTIONS.get(name)
    if action is None:
        return 0  # git's rule: a helper ignores actions it does not know
    attrs = read_request(sys.stdin)
    try:
        with client(PROGRAM) as c:
            out = action(c, attrs)
    except CreddError as exc:
        complain(PROGRAM, exc)
        return 1
    if out:
        sys.stdout.write(out)
    return 0
