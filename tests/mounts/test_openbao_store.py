"""The openbao mount against a real OpenBao dev server: mapping, cache and revalidation,
check-and-set, versions, the trash, auth (token renewal and expiry, AppRole, a read-only
policy), and a server that is killed or sealed mid-session."""

from __future__ import annotations

import time

import hvac
import pytest

from credd.errors import BadRequest, Conflict, Denied, Exists, LockedError, NotFound, Unavailable
from credd.protocol import Field, Set
from tests.conftest import SENTINEL

pytestmark = pytest.mark.timeout(60)


def kv(server, path: str) -> dict:
    """The secret as the server holds it (data and custom metadata), read as root."""
    answer = server.client().secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=False)["data"]
    return {"data": answer["data"], "custom": answer["metadata"]["custom_metadata"] or {},
            "version": answer["metadata"]["version"]}


def outside_write(server, path: str, data: dict) -> None:
    """A change made elsewhere: another client of the same server."""
    server.client().secrets.kv.v2.create_or_update_secret(path, data, mount_point="secret")


def kv_policy(server, prefix: str, data: str = '"create", "read", "update"',
              metadata: str = '"create", "read", "update", "list"') -> str:
    """A policy on the test's prefix of the `secret` engine; its name."""
    name = "p-" + prefix.strip("/")
    server.client().sys.create_or_update_policy(name, f"""
        path "secret/data/{prefix}*" {{ capabilities = [{data}] }}
        path "secret/metadata/{prefix}*" {{ capabilities = [{metadata}] }}""")
    return name


def audited_requests(server) -> int:
    """How many requests the server's file audit device has seen (one line each way)."""
    return server.audit_log.read_text().count('"type":"request"')


class TestMapping:
    def test_an_entry_is_its_values_in_the_data_map_and_credd_metadata_in_custom(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        store.put(Set(name="team/db", value=SENTINEL, kind="password", service="pg",
                      tags=["prod", "db"], notes="rotate by hand",
                      fields=[Field(name="user", value="bob", secret=False),
                              Field(name="pin", value="1234")], rotate_after=86400.0))
        held = kv(bao, prefix + "db")
        assert held["data"] == {"value": SENTINEL, "notes": "rotate by hand", "user": "bob",
                                "pin": "1234"}
        custom = held["custom"]
        assert custom["credd.kind"] == "password" and custom["credd.service"] == "pg"
        assert custom["credd.tags"] == '["prod","db"]' and custom["credd.plain"] == '["user"]'
        assert float(custom["credd.rotate_after"]) == 86400.0
        assert SENTINEL not in str(custom)

    def test_the_entry_reads_back_through_a_new_session(self, bao, make_store, prefix):
        make_store(bao, prefix).put(Set(name="team/db", value="v", kind="password",
                                        fields=[Field(name="user", value="bob", secret=False),
                                                Field(name="pin", value="1234")]))
        meta = make_store(bao, prefix).describe("team/db")
        assert (meta.kind, meta.fields, meta.secret_fields, meta.has_value, meta.version) == \
            ("password", {"user": "bob"}, ("pin",), True, 1)
        again = make_store(bao, prefix)
        assert again.get("team/db", "pin") == "1234" and again.get("team/db") == "v"

    def test_a_secret_written_by_another_tool_maps_back(self, bao, make_store, prefix):
        bao.bao("kv", "put", "-mount=secret", f"{prefix}app", "value=abc", "username=svc",
                "port=5432")
        store = make_store(bao, prefix)
        entry = store.reveal("team/app")
        assert entry.value == "abc"
        assert entry.secret_fields == {"username": "svc", "port": "5432"}
        assert entry.meta.kind == "secret" and entry.meta.version == 1

    def test_a_field_named_like_a_reserved_key_is_refused_before_anything_is_written(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        with pytest.raises(BadRequest, match="'notes'"):
            store.put(Set(name="team/x", fields=[Field(name="notes", value="n")]))
        with pytest.raises(NotFound):
            make_store(bao, prefix).describe("team/x")

    def test_names_outside_the_mount_are_refused(self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        for name in ("other/db", "team", "team//x"):
            with pytest.raises(BadRequest):
                store.describe(name)


class TestCache:
    def test_a_fresh_cached_read_costs_no_request_and_a_change_elsewhere_is_seen_after_it(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix, revalidate=0.5)
        store.put(Set(name="team/db", value="one"))
        assert store.get("team/db") == "one"
        outside_write(bao, prefix + "db", {"value": "two"})
        before = audited_requests(bao)
        assert store.get("team/db") == "one"  # within the interval: served from memory
        assert audited_requests(bao) == before
        time.sleep(0.6)
        assert store.get("team/db") == "two"
        assert store.describe("team/db").version == 2

    def test_revalidation_of_an_unchanged_entry_reads_only_its_metadata(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix, revalidate=0.001)
        store.put(Set(name="team/db", value="one"))
        before = audited_requests(bao)
        time.sleep(0.01)
        assert store.get("team/db") == "one"
        lines = bao.audit_log.read_text().split("\n")
        new = [ln for ln in lines if '"type":"request"' in ln][before:]
        assert len(new) == 1 and f"secret/metadata/{prefix}db" in new[0]

    def test_revalidate_makes_the_next_read_ask_the_server(self, bao, make_store, prefix):
        store = make_store(bao, prefix, revalidate=3600.0)
        store.put(Set(name="team/db", value="one"))
        outside_write(bao, prefix + "db", {"value": "two"})
        assert store.get("team/db") == "one"  # fresh for an hour: from memory
        store.revalidate("team/db")
        assert store.get("team/db") == "two"

    def test_a_write_just_after_a_read_found_nothing_reads_no_more(self, bao, make_store,
                                                                   prefix):
        store = make_store(bao, prefix, revalidate=3600.0)
        with pytest.raises(NotFound):
            store.get("team/new")
        before = audited_requests(bao)
        store.put(Set(name="team/new", value="v"))
        lines = [ln for ln in bao.audit_log.read_text().split("\n") if '"type":"request"' in ln]
        assert len(lines[before:]) == 2  # the data (cas=0), then credd's metadata
        assert not any('"operation":"read"' in ln for ln in lines[before:])
        with pytest.raises(NotFound):
            store.get("team/other")
        outside_write(bao, prefix + "other", {"value": "theirs"})  # created since
        with pytest.raises(Conflict, match="created on the server"):
            store.put(Set(name="team/other", value="mine"))
        assert kv(bao, prefix + "other")["data"] == {"value": "theirs"}

    def test_fresh_says_when_a_read_needs_no_request_so_the_agent_answers_it_inline(
            self, bao, make_store, prefix):
        from credd.daemon.mounts.openbao import OpenBaoStore
        from credd.daemon.router import Router
        clock = [0.0]
        store = OpenBaoStore(make_store(bao, prefix, revalidate=30.0).config,
                             {"credd://bao/token": "credd-test-root"}.__getitem__,
                             clock=lambda: clock[0])
        router = Router(local=store, mounts={"team": store})
        assert not store.fresh("team/db") and router.remote("team/db")
        store.put(Set(name="team/db", value="v"))
        assert store.fresh("team/db") and not router.remote("team/db")
        clock[0] = 29.5  # within the interval, but not for another second
        assert not store.fresh("team/db") and router.remote("team/db")
        assert not store.fresh("team//bad")
        store.close()

    def test_close_drops_the_cache_and_the_token(self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        store.put(Set(name="team/db", value=SENTINEL))
        assert store.get("team/db") == SENTINEL
        store.close()
        assert store.session._client is None
        assert not store._seen and store._listing is None
        with pytest.raises(LockedError):
            store.get("team/db")

    def test_the_listing_walks_folders_and_shows_unread_entries_by_name(
            self, bao, make_store, prefix):
        for path in ("a", "prod/db", "prod/deep/key"):
            outside_write(bao, prefix + path, {"value": "x"})
        store = make_store(bao, prefix)
        store.get("team/prod/db")
        listed = store.entries()
        assert [m.name for m in listed] == ["team/a", "team/prod/db", "team/prod/deep/key"]
        assert listed[1].has_value and listed[1].version == 1
        assert listed[0].version == 0  # not read yet: known by name only
        assert {m.mount for m in listed} == {"team"}


class TestWrites:
    def test_a_change_made_elsewhere_is_a_conflict_naming_the_mount_not_an_overwrite(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        store.put(Set(name="team/db", value="mine"))
        outside_write(bao, prefix + "db", {"value": "theirs"})
        with pytest.raises(Conflict, match="mount 'team'.*version 1"):
            store.put(Set(name="team/db", value="overwrite"))
        assert kv(bao, prefix + "db")["data"] == {"value": "theirs"}
        assert store.get("team/db") == "theirs"  # the conflict dropped the stale copy
        store.put(Set(name="team/db", value="after reading"))
        assert kv(bao, prefix + "db")["version"] == 3

    def test_set_modes_and_merge_follow_the_protocol(self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        with pytest.raises(NotFound):
            store.put(Set(name="team/db", value="x", mode="update"))
        store.put(Set(name="team/db", value="x", fields=[Field(name="user", value="u")]))
        with pytest.raises(Exists):
            store.put(Set(name="team/db", value="y", mode="create"))
        store.put(Set(name="team/db", value="y", merge=True))
        assert kv(bao, prefix + "db")["data"] == {"value": "y", "user": "u"}

    def test_history_and_restore_are_kv_versions(self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        for value in ("v1", "v2", "v3"):
            store.put(Set(name="team/db", value=value))
        current, older = store.history("team/db")
        assert current == 3 and [v.version for v in older] == [2, 1]
        assert older[0].replaced is not None and older[0].replaced >= older[0].updated
        assert store.reveal("team/db", 1).value == "v1"
        restored = store.restore("team/db", 1)
        assert restored.version == 4 and kv(bao, prefix + "db")["data"] == {"value": "v1"}
        with pytest.raises(BadRequest, match="already current"):
            store.restore("team/db", 4)

    def test_delete_is_a_soft_delete_undelete_brings_it_back_purge_destroys(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        store.put(Set(name="team/db", value="v"))
        with pytest.raises(NotFound, match="not in the trash"):
            store.purge("team/db")
        deleted = store.delete("team/db")
        assert deleted.deleted is not None
        assert kv(bao, prefix + "db")["data"] is None  # soft-deleted on the server
        with pytest.raises(NotFound):
            store.get("team/db")
        assert [m.name for m in store.trash()] == ["team/db"]
        assert [m.name for m in store.entries()] == []
        assert store.undelete("team/db").deleted is None
        assert store.get("team/db") == "v"
        store.delete("team/db")
        store.purge("team/db")
        with pytest.raises(hvac.exceptions.InvalidPath):  # destroyed: no metadata left
            bao.client().secrets.kv.v2.read_secret_metadata(prefix + "db", mount_point="secret")
        assert store.trash() == []

    def test_move_copies_the_current_version_and_trashes_the_old_name(
            self, bao, make_store, prefix):
        store = make_store(bao, prefix)
        store.put(Set(name="team/old", value="v", kind="password"))
        store.put(Set(name="team/taken", value="t"))
        with pytest.raises(Exists):
            store.move("team/old", "team/taken")
        moved = store.move("team/old", "team/new")
        assert moved.name == "team/new" and moved.kind == "password"
        assert store.get("team/new") == "v"
        assert [m.name for m in store.trash()] == ["team/old"]


class TestAuth:
    def test_a_renewable_token_is_renewed_before_it_expires(self, bao, make_store, prefix,
                                                           refs):
        token = bao.client().auth.token.create(policies=["root"], ttl="3s",
                                               explicit_max_ttl="60s", renewable=True)
        refs["credd://bao/short"] = token["auth"]["client_token"]
        store = make_store(bao, prefix, token="credd://bao/short", revalidate=0.001)
        store.put(Set(name="team/db", value="v"))
        time.sleep(4.5)  # past the first TTL: the timer renewed it at 2 s
        assert store.get("team/db") == "v"
        left = bao.client().auth.token.lookup(token["auth"]["client_token"])["data"]["ttl"]
        assert left > 0

    def test_an_expired_token_is_a_clear_error(self, bao, make_store, prefix, refs):
        token = bao.client().auth.token.create(policies=["root"], ttl="2s", renewable=False)
        refs["credd://bao/short"] = token["auth"]["client_token"]
        store = make_store(bao, prefix, token="credd://bao/short", revalidate=0.001)
        store.put(Set(name="team/db", value="v"))
        time.sleep(2.5)
        with pytest.raises(Denied, match="mount 'team'.*expired.*credd://bao/short"):
            store.get("team/db")
        assert store.info().state == "error"

    def _approle_store(self, bao, make_store, prefix, refs, **role: str):
        """A store logged in with an AppRole (`role`: its token settings), team/db written."""
        root = bao.client()
        if "approle/" not in root.sys.list_auth_methods()["data"]:
            root.sys.enable_auth_method("approle")
        root.auth.approle.create_or_update_approle("credd", token_policies=[kv_policy(bao, prefix)],
                                                   **role)
        refs["credd://bao/role"] = root.auth.approle.read_role_id("credd")["data"]["role_id"]
        refs["credd://bao/secret"] = root.auth.approle.generate_secret_id("credd")["data"][
            "secret_id"]
        store = make_store(bao, prefix, token="", role_id="credd://bao/role",
                           secret_id="credd://bao/secret", revalidate=0.001)
        store.put(Set(name="team/db", value="v"))
        return store

    def test_approle_logs_in_from_credd_refs_and_again_when_its_token_runs_out(
            self, bao, make_store, prefix, refs):
        store = self._approle_store(bao, make_store, prefix, refs, token_ttl="2s",
                                    token_max_ttl="3s")
        time.sleep(3.5)  # past the token's max TTL
        assert store.get("team/db") == "v"

    def test_a_revoked_approle_token_is_replaced_by_logging_in_again(
            self, bao, make_store, prefix, refs):
        store = self._approle_store(bao, make_store, prefix, refs, token_ttl="1h",
                                    token_max_ttl="2h")
        bao.client().auth.token.revoke(store.session._client.token)
        assert store.get("team/db") == "v"

    def test_a_read_only_policy_token_reads_and_its_writes_are_refused_clearly(
            self, bao, make_store, prefix, refs):
        policy = kv_policy(bao, prefix, data='"read"', metadata='"read", "list"')
        outside_write(bao, prefix + "db", {"value": "v"})
        refs["credd://bao/ro"] = bao.client().auth.token.create(
            policies=[policy])["auth"]["client_token"]
        store = make_store(bao, prefix, token="credd://bao/ro")
        assert store.get("team/db") == "v"
        with pytest.raises(Denied, match="mount 'team'.*denies the write of 'team/db'"):
            store.put(Set(name="team/db", value="w"))
        assert kv(bao, prefix + "db")["data"] == {"value": "v"}


class TestServerFailures:
    def test_a_killed_server_is_unavailable_naming_the_mount_or_served_from_cache(
            self, fresh_bao, make_store, prefix):
        cached = make_store(fresh_bao, prefix, revalidate=0.001, offline_cache=True)
        strict = make_store(fresh_bao, prefix, revalidate=0.001)
        cached.put(Set(name="team/db", value="v"))
        assert strict.get("team/db") == "v"
        fresh_bao.kill()
        assert cached.get("team/db") == "v"
        with pytest.raises(Unavailable, match="mount 'team'.*cannot be reached"):
            strict.get("team/db")
        assert strict.info().state == "unreachable"
        with pytest.raises(Unavailable):
            cached.put(Set(name="team/db", value="w"))
        with pytest.raises(Unavailable):
            cached.get("team/never-read")

    def test_a_sealed_server_is_unavailable_until_it_is_unsealed(
            self, fresh_bao, make_store, prefix):
        store = make_store(fresh_bao, prefix, revalidate=0.001)
        store.put(Set(name="team/db", value="v"))
        fresh_bao.seal()
        with pytest.raises(Unavailable, match="mount 'team'.*sealed"):
            store.get("team/db")
        assert store.info().state == "sealed"
        fresh_bao.unseal()
        fresh_bao.wait_healthy()
        assert store.get("team/db") == "v"
        assert store.info().state == "ok"
