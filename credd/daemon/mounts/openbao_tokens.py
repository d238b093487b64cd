"""Scoped tokens: child tokens minted on an openbao mount's server for helpers elsewhere.

credd writes a policy named from what it allows (`credd-<hash>`: the same paths
and mode give the same policy, so minting again does not pile up policies),
with `read`/`list` on the KV data and metadata paths of the mount's prefix,
plus writes unless read-only; then it creates a child token of the mount's own
token with that policy. OpenBao enforces everything: credd only asks. A child
token dies with its parent, and OpenBao lets a token grant only policies it
holds unless it is privileged, so the mount's token needs the rights to write
policies and create tokens (docs/openbao.md says which).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from credd.errors import BadRequest, NotFound
from credd.protocol import TokenInfo

from .openbao import OpenBaoStore

_PATH = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*/?\*?|\*")
_READ = {"data": ["read"], "metadata": ["read", "list"]}
_WRITE = {"data": ["create", "read", "update", "delete"],
          "metadata": ["read", "list", "update", "delete"],
          "delete": ["update"], "undelete": ["update"], "destroy": ["update"]}


def check_paths(paths: list[str]) -> list[str]:
    """Paths under the mount's prefix, `*` only at the end; never '..' or quotes (they
    are written into a policy)."""
    if not paths:
        raise BadRequest("give --paths (e.g. 'prod/*') or --policy")
    for path in paths:
        if not _PATH.fullmatch(path) or ".." in path.split("/") or "." in path.split("/"):
            raise BadRequest(f"path {path!r}: letters, digits and . _ + - between '/', "
                             "with '*' only at the end (e.g. prod/*)")
    return sorted(set(paths))


def policy_for(store: OpenBaoStore, paths: list[str], read_only: bool) -> tuple[str, str]:
    """(name, HCL) of the policy allowing `paths` of the mount, read-only or not."""
    rules = _READ if read_only else _WRITE
    stanzas = [f'path "{store.engine}/{kind}/{store.kv_prefix}{path}" '
               f'{{ capabilities = [{", ".join(_quoted(c) for c in caps)}] }}'
               for path in paths for kind, caps in rules.items()]
    hcl = "\n".join(stanzas) + "\n"
    return f"credd-{hashlib.sha256(hcl.encode()).hexdigest()[:16]}", hcl


def _quoted(text: str) -> str:
    return f'"{text}"'


def create(store: OpenBaoStore, *, paths: list[str], policy: str | None, ttl: float,
           read_only: bool, uses: int, wrap: float | None) -> tuple[str, TokenInfo, bool]:
    """(token or wrapping token, its info, wrapped) for a new child token."""
    if (policy is None) == (not paths):
        raise BadRequest("give either --paths or --policy")
    if ttl <= 0 or uses < 0 or (wrap is not None and wrap <= 0):
        raise BadRequest("ttl and wrap must be positive, uses zero or more")
    scoped = check_paths(paths) if policy is None else []
    if policy is None:
        policy, hcl = policy_for(store, scoped, read_only)
        store.session.call(f"writing the policy {policy}", lambda c: c.sys.create_or_update_policy(
            policy, hcl))
    answer: dict[str, Any] = store.session.call("creating a token", lambda c: c.auth.token.create(
        policies=[policy], ttl=f"{int(ttl)}s", num_uses=uses, renewable=True,
        display_name=f"credd-{store.name}", meta={"credd_mount": store.name},
        wrap_ttl=f"{int(wrap)}s" if wrap else None))
    if wrap:
        info = answer["wrap_info"]
        token, accessor = info["token"], info["wrapped_accessor"]
    else:
        token, accessor = answer["auth"]["client_token"], answer["auth"]["accessor"]
    now = time.time()
    return token, TokenInfo(mount=store.name, accessor=accessor, policies=(policy,),
                            created=now, expires=now + ttl, uses_left=uses,
                            paths=tuple(scoped), read_only=read_only), wrap is not None


def lookup(store: OpenBaoStore, known: TokenInfo) -> TokenInfo | None:
    """`known` as the server sees it now; None when the server no longer knows it."""
    try:
        data = store.session.call("looking up a token",
                                  lambda c: c.auth.token.lookup_accessor(known.accessor))["data"]
    except (BadRequest, NotFound):  # "invalid accessor": expired or revoked
        return None
    ttl = float(data.get("ttl") or 0)
    return TokenInfo(mount=known.mount, accessor=known.accessor,
                     policies=tuple(p for p in data.get("policies") or () if p != "default"),
                     created=known.created, expires=time.time() + ttl if ttl else None,
                     uses_left=int(data.get("num_uses") or 0), paths=known.paths,
                     read_only=known.read_only)


def revoke(store: OpenBaoStore, accessor: str) -> None:
    """Revoke the token (and its children); `NotFound` when the server does not know it
    (revoking an unknown accessor succeeds silently on the server)."""
    if lookup(store, TokenInfo(mount=store.name, accessor=accessor)) is None:
        raise NotFound(f"mount {store.name!r} has no live token with accessor {accessor!r}",
                       names=[accessor])
    store.session.call("revoking a token", lambda c: c.auth.token.revoke_accessor(accessor))
