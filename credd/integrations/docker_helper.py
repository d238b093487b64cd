"""`docker-credential-credd`: the Docker credential helper protocol over the credd agent.

    ~/.docker/config.json: {"credsStore": "credd"}

The docker CLI runs `docker-credential-credd store|get|erase|list`: `store`
reads `{"ServerURL", "Username", "Secret"}` JSON on stdin; `get` and `erase`
read the server URL; `get` prints the same JSON, `list` prints
`{"<ServerURL>": "<Username>"}`. A miss prints `credentials not found in
native keychain` on stdout and exits 1, which the CLI reads as "no
credentials". An entry per registry is kept as `docker/<host>[/<path>]`
(scheme and trailing `/` dropped, as docker treats them as equal) with the
secret as its value and `username`, `server_url` as plain fields.
"""

from __future__ import annotations

import json
import sys

from credd.integrations import client, complain, segment

PROGRAM = "docker-credential-credd"
NOT_FOUND = "credentials not found in native keychain"


class Miss(Exception):
    pass


def entry_name(server_url: str) -> str:
    url = server_url.strip()
    url = url.split("://", 1)[1] if "://" in url else url
    parts = [segment(p) for p in url.split("/") if p]
    if not parts:
        raise Miss()
    return "docker/" + "/".join(parts)


def store(c, data: str) -> str:
    from credd.protocol import Field
    try:
        creds = json.loads(data)
        url, username, secret = creds["ServerURL"], creds.get("Username", ""), creds["Secret"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("store expects {\"ServerURL\", \"Username\", \"Secret\"} JSON") from None
    fields = [Field(name="server_url", value=url, secret=False)]
    if username:
        fields.append(Field(name="username", value=username, secret=False))
    host = url.split("://", 1)[-1].split("/", 1)[0]
    c.set(entry_name(url), kind="password", service=host, tags=["docker"], value=secret,
          fields=fields)
    return ""


def get(c, data: str) -> str:
    from credd.errors import NotFound
    try:
        revealed = c.reveal(entry_name(data))
    except NotFound:
        raise Miss() from None
    meta = revealed.entry
    return json.dumps({"ServerURL": meta.fields.get("server_url", data.strip()),
                       "Username": meta.fields.get("username", ""), "Secret": revealed.value})


def erase(c, data: str) -> str:
    from credd.errors import NotFound
    try:
        c.delete(entry_name(data))
    except NotFound:
        raise Miss() from None
    return ""


def list_(c, data: str) -> str:
    return json.dumps({m.fields.get("server_url", m.name): m.fields.get("username", "")
                       for m in c.list(prefix="docker/", tag="docker")})


ACTIONS = {"store": store, "get": get, "erase": erase, "list": list_}


def main(argv: list[str] | None = None) -> int:
    from credd.errors import CreddError
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else ""
    if name == "version":
        from credd import __version__
        print(f"{PROGRAM} (credd) {__version__}")
        return 0
    action = ACTIONS.get(name)
    if action is None:
        print(f"unknown action {name!r}: use store, get, erase, list or version")
        return 1
    data = sys.stdin.read() if name != "list" else ""
    try:
        with client(PROGRAM) as c:
            out = action(c, data)
    except Miss:
        print(NOT_FOUND)
        return 1
    except ValueError as exc:
        print(exc)
        return 1
    except CreddError as exc:
        complain(PROGRAM, exc)
        print(NOT_FOUND if name in ("get", "erase") else exc.message)
        return 1
    if out:
        print(out)
    return 0
