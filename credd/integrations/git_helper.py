"""`git-credential-credd`: git's credential helper protocol over the credd agent.

    git config --global credential.helper credd

git runs `git-credential-credd get|store|erase` with `key=value` lines on
stdin. An entry per (protocol, host, path, username) is kept under

    git/<protocol>/<host>[/<path>]@<username>

with the password as its value, `oauth_refresh_token` as a secret field and
`username`, `protocol`, `host`, `path`, `password_expiry_utc` as plain
fields. `get` without a username picks the most recently stored matching
entry. An expired password (`password_expiry_utc` in the past) is never
returned. Unknown actions are ignored, as git asks of helpers.
"""

from __future__ import annotations

import sys
import time

from credd.integrations import client, complain, segment

PROGRAM = "git-credential-credd"
KEYS = ("protocol", "host", "path", "username")


def read_request(stream) -> dict[str, str]:
    """`key=value` lines up to a blank line or EOF (`key[]` lists keep their last value)."""
    attrs: dict[str, str] = {}
    for line in stream:
        line = line.rstrip("\r\n")
        if not line:
            break
        key, eq, value = line.partition("=")
        if eq:
            attrs[key] = value
    return attrs


def entry_name(attrs: dict[str, str]) -> str:
    path = "/".join(segment(s) for s in attrs.get("path", "").split("/") if s)
    where = "/".join(x for x in (segment(attrs.get("protocol", "")),
                                 segment(attrs.get("host", "")), path) if x)
    return f"git/{where}@{segment(attrs.get('username', '')) if attrs.get('username') else ''}"


def _matches(meta, attrs: dict[str, str]) -> bool:
    keys = KEYS if attrs.get("username") else KEYS[:3]
    return "git" in meta.tags and all(meta.fields.get(k, "") == attrs.get(k, "") for k in keys)


def _expired(meta) -> bool:
    expiry = meta.fields.get("password_expiry_utc", "")
    return expiry.isdigit() and int(expiry) <= time.time()


def get(c, attrs: dict[str, str]) -> str:
    candidates = [m for m in c.list(prefix="git/", tag="git") if _matches(m, attrs)]
    candidates = [m for m in candidates if not _expired(m)]
    if not candidates:
        return ""
    meta = max(candidates, key=lambda m: m.updated)
    revealed = c.reveal(meta.name)
    out = {"username": meta.fields.get("username", ""), "password": revealed.value}
    if meta.fields.get("password_expiry_utc"):
        out["password_expiry_utc"] = meta.fields["password_expiry_utc"]
    if revealed.secret_fields.get("oauth_refresh_token"):
        out["oauth_refresh_token"] = revealed.secret_fields["oauth_refresh_token"]
    return "".join(f"{k}={v}\n" for k, v in out.items() if v)


def store(c, attrs: dict[str, str]) -> None:
    from credd.protocol import Field
    if not attrs.get("host") or not attrs.get("password"):
        return
    fields = [Field(name=k, value=attrs[k], secret=False)
              for k in (*KEYS, "password_expiry_utc") if attrs.get(k)]
    if attrs.get("oauth_refresh_token"):
        fields.append(Field(name="oauth_refresh_token", value=attrs["oauth_refresh_token"]))
    c.set(entry_name(attrs), kind="password", service=attrs["host"], tags=["git"],
          value=attrs["password"], fields=fields)


def erase(c, attrs: dict[str, str]) -> None:
    from credd.errors import NotFound
    for meta in c.list(prefix="git/", tag="git"):
        if _matches(meta, attrs):
            try:
                c.delete(meta.name)
            except NotFound:
                pass


ACTIONS = {"get": get, "store": store, "erase": erase}


def main(argv: list[str] | None = None) -> int:
    from credd.errors import CreddError
    args = sys.argv[1:] if argv is None else argv
    action = ACTIONS.get(args[0] if args else "")
    if action is None:
        return 0
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
