"""Scoped tokens minted on a real OpenBao dev server: what they may and may not do."""

from __future__ import annotations

import hvac.exceptions
import pytest

from credd.daemon.mounts import openbao_tokens as tokens
from credd.errors import BadRequest, NotFound
from credd.protocol import Set

pytestmark = pytest.mark.timeout(60)


def mint(store, **options):
    given = {"paths": [], "policy": None, "ttl": 600.0, "read_only": False, "uses": 0,
             "wrap": None, **options}
    return tokens.create(store, **given)


def kv_as(bao, token: str):
    return bao.client(token).secrets.kv.v2


def test_a_read_only_token_reads_its_paths_and_nothing_else(bao, make_store, prefix):
    store = make_store(bao, prefix)
    for name in ("team/prod/db", "team/dev/db"):
        store.put(Set(name=name, value="v"))
    token, info, wrapped = mint(store, paths=["prod/*"], read_only=True)
    assert not wrapped and info.policies[0].startswith("credd-") and info.read_only
    kv = kv_as(bao, token)
    read = kv.read_secret_version(f"{prefix}prod/db", mount_point="secret",
                                  raise_on_deleted_version=True)
    assert read["data"]["data"] == {"value": "v"}
    assert kv.list_secrets(f"{prefix}prod", mount_point="secret")["data"]["keys"] == ["db"]
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_version(f"{prefix}dev/db", mount_point="secret",
                               raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret(f"{prefix}prod/db", {"value": "w"}, mount_point="secret")


def test_a_read_write_token_writes_its_paths_only(bao, make_store, prefix):
    store = make_store(bao, prefix)
    token, _, _ = mint(store, paths=["prod/*"])
    kv = kv_as(bao, token)
    kv.create_or_update_secret(f"{prefix}prod/new", {"value": "w"}, mount_point="secret")
    assert store.get("team/prod/new") == "w"
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret(f"{prefix}dev/new", {"value": "w"}, mount_point="secret")


def test_the_same_scope_reuses_one_policy(bao, make_store, prefix):
    store = make_store(bao, prefix)
    _, first, _ = mint(store, paths=["prod/*", "ci/*"], read_only=True)
    _, again, _ = mint(store, paths=["ci/*", "prod/*"], read_only=True)
    _, other, _ = mint(store, paths=["prod/*", "ci/*"])
    assert first.policies == again.policies != other.policies


def test_uses_limit_the_token(bao, make_store, prefix):
    store = make_store(bao, prefix)
    store.put(Set(name="team/prod/db", value="v"))
    token, info, _ = mint(store, paths=["prod/*"], read_only=True, uses=1)
    assert info.uses_left == 1
    kv = kv_as(bao, token)
    kv.read_secret_version(f"{prefix}prod/db", mount_point="secret", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_version(f"{prefix}prod/db", mount_point="secret",
                               raise_on_deleted_version=True)


def test_a_wrapped_token_unwraps_once_into_the_listed_token(bao, make_store, prefix):
    store = make_store(bao, prefix)
    wrapping, info, wrapped = mint(store, paths=["prod/*"], wrap=60.0)
    assert wrapped
    real = bao.client(wrapping).sys.unwrap()["auth"]
    assert real["accessor"] == info.accessor
    assert tokens.lookup(store, info) is not None
    with pytest.raises(hvac.exceptions.VaultError):
        bao.client(wrapping).sys.unwrap()


def test_lookup_sees_ttl_and_revoke_ends_the_token(bao, make_store, prefix):
    store = make_store(bao, prefix)
    token, info, _ = mint(store, paths=["prod/*"], ttl=3600.0)
    seen = tokens.lookup(store, info)
    assert seen is not None and seen.expires is not None
    assert 3500 < seen.expires - info.created <= 3601
    tokens.revoke(store, info.accessor)
    assert tokens.lookup(store, info) is None
    with pytest.raises(hvac.exceptions.Forbidden):
        bao.client(token).auth.token.lookup_self()
    with pytest.raises(NotFound):
        tokens.revoke(store, info.accessor)


def test_an_existing_policy_can_be_named_instead(bao, make_store, prefix):
    store = make_store(bao, prefix)
    _, info, _ = mint(store, policy="default")
    assert info.policies == ("default",) and info.paths == ()


@pytest.mark.parametrize("paths", [[], ["a/../b"], ['x" } path "*'], ["a/*/b"], ["/abs"],
                                   ["./x"]])
def test_paths_that_could_escape_the_prefix_or_the_policy_are_refused(bao, make_store, prefix,
                                                                      paths):
    with pytest.raises(BadRequest):
        mint(make_store(bao, prefix), paths=paths)
