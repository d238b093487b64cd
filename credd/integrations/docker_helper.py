"""`docker-credential-credd`: the Docker credential helper protocol over the credd agent.

    ~/.docker/config.json: {"credsStore": "credd"}

The docker CLI runs `docker-credential-credd store|get|erase|list`: `store`
reads `{"ServerURL", "Username", "Secret"}` JSON on stdin; `get` and `erase`
read the server URL; `get` prints the same JSON, `list` prints
`{"<ServerURL>": "<Username>"}`. Failures print docker's own words on stdout
and exit 1, as docker/docker-credential-helpers' `credentials` package does:
`credentials not found in native keychain` (which the CLI reads as "no
credentials"), `no credentials server URL`, `no credentials username`.

An entry per server URL is kept as `docker/<scheme>:/<host>[/<path>]`
(`docker/<host>[/<path>]` for a URL without a scheme; every part escaped by
`names.segment`, trailing `/` dropped as docker treats `…/v1` and `…/v1/` as
one registry), with the secret as its value and `username`, `server_url` as
plain fields. `https://host` and `http://host` are two credentials.

The first naming dropped the scheme (`docker/<host>[/<path>]` for both): such
an entry is still found when its `server_url` field names the very URL asked
for, and the next store of that URL replaces it (read-old, write-new).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from credd.integrations import client, complain, legacy_segment
from credd.integrations.names import fit, label, segment

if TYPE_CHECKING:
    from credd.client import Client
    from credd.protocol import EntryMeta

PROGRAM = "docker-credential-credd"
NOT_FOUND = "credentials not found in native keychain"
NO_SERVER_URL = "no credentials server URL"
NO_USERNAME = "no credentials username"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)


class Refused(Exception):
    """An answer the docker CLI understands, printed on stdout with exit status 1."""


def entry_name(server_url: str) -> str:
    """The entry of `server_url`: its scheme is kept (as `https:`), so no two URLs that
    differ beyond trailing slashes share an entry."""
    url = server_url.strip().rstrip("/")
    scheme = _SCHEME.fullmatch(url)
    if scheme:
        parts = [segment(scheme[1] + ":")] + [segment(p) for p in scheme[2].split("/")]
    else:
        parts = [segment(p) for p in url.split("/")]
        if parts[0].endswith(":"):  # `host:/x` must not read as a scheme
            parts[0] = parts[0][:-1] + "%3A"
    return fit("docker/" + "/".join(parts), "docker/" + "/".join(parts[:2]))


def legacy_name(server_url: str) -> str | None:
    """Where the first naming kept `server_url` (scheme and empty parts dropped)."""
    url = server_url.strip()
    url = url.split("://", 1)[1] if "://" in url else url
    parts = [legacy_segment(p) for p in url.split("/") if p]
    return "docker/" + "/".join(parts) if parts else None


def _find(c: Client, url: str) -> EntryMeta | None:
    """The entry of `url`: under its name, or under the first naming when that entry's
    `server_url` is this very URL (the old name is shared by http:// and https://)."""
    from credd.errors import BadRequest, NotFound
    try:
        return c.describe(entry_name(url))
    except NotFound:
        pass
    old = legacy_name(url)
    try:
        meta = c.describe(old) if old else None
    except (NotFound, BadRequest):
        return None
    same = meta is not None and entry_name(meta.fields.get("server_url", "")) == entry_name(url)
    return meta if same else None


def _server_url(text: str) -> str:
    """`get` and `erase` read a server URL, as docker trims it."""
    url = text.strip()
    if not url:
        raise Refused(NO_SERVER_URL)
    return url


def _credentials(text: str) -> tuple[str, str, str]:
    """`store` reads (ServerURL, Username, Secret); docker refuses the first two empty."""
    try:
        creds = json.loads(text)
        found = (creds.get("ServerURL", ""), creds.get("Username", ""), creds.get("Secret", ""))
    except (ValueError, AttributeError):
        found = None
    if found is None or not all(isinstance(x, str) for x in found):
        raise Refused('store expects {"ServerURL", "Username", "Secret"} JSON')
    if not found[0]:
        raise Refused(NO_SERVER_URL)
    if not found[1]:
        raise Refused(NO_USERNAME)
    return found


def store(c: Client, creds: tuple[str, str, str]) -> str:
    from credd.protocol import Field
    url, username, secret = creds
    old, name = _find(c, url), entry_name(url)
    host = url.strip().split("://", 1)[-1].split("/", 1)[0]
    c.set(name, kind="password", service=label(host), tags=["docker"], value=secret,
          fields=[Field(name="server_url", value=url, secret=False),
                  Field(name="username", value=username, secret=False)])
    if old is not None and old.name != name:
        c.delete(old.name)
    return ""


def get(c: Client, url: str) -> str:
    from credd.errors import NotFound
    meta = _find(c, url)
    if meta is None:
        raise Refused(NOT_FOUND)
    try:
        secret = c.reveal(meta.name).value
    except NotFound:
        raise Refused(NOT_FOUND) from None
    return json.dumps({"ServerURL": url, "Username": meta.fields.get("username", ""),
                       "Secret": secret})


def erase(c: Client, url: str) -> str:
    from credd.errors import NotFound
    meta = _find(c, url)
    if meta is None:
        raise Refused(NOT_FOUND)
    try:
        c.delete(meta.name)
    except NotFound:
        raise Refused(NOT_FOUND) from None
    return ""


def list_(c: Client, _: None) -> str:
    return json.dumps({m.fields.get("server_url", m.name): m.fields.get("username", "")
                       for m in c.list(prefix="docker/", tag="docker")})


#: action → (how it reads stdin, what it does); input is checked before the agent is asked
ACTIONS: dict[str, tuple[Callable[[str], Any] | None, Callable[[Client, Any], str]]] = {
    "store": (_credentials, store), "get": (_server_url, get), "erase": (_server_url, erase),
    "list": (None, list_)}


def main(argv: list[str] | None = None) -> int:
    from credd.errors import CreddError
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else ""
    if name in ("version", "--version", "-v"):
        from credd import __version__
        print(f"{PROGRAM} (credd) {__version__}")
        return 0
    if name not in ACTIONS:
        print(f"{PROGRAM}: unknown action: {name}" if name else
              f"Usage: {PROGRAM} <store|get|erase|list|version>")
        return 1
    read, action = ACTIONS[name]
    try:
        arg = read(sys.stdin.read()) if read else None
        with client(PROGRAM) as c:
            out = action(c, arg)
    except Refused as exc:
        print(exc)
        return 1
    except CreddError as exc:
        complain(PROGRAM, exc)
        print(NOT_FOUND if name in ("get", "erase") else exc.message)
        return 1
    if out:
        print(out)
    return 0
