"""`credd migrate` through the real agent and the real `credd` command: the local vault,
an openbao mount on a real server, and the env and files mounts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import hvac.exceptions
import pytest

from credd.daemon.mounts.config import MountConfig, add
from credd.protocol import Field
from tests.conftest import SENTINEL
from tests.mounts.bao import ROOT_TOKEN, BaoServer, PersistentBaoServer

pytestmark = pytest.mark.timeout(120)

DAY = 86400.0
#: Entries under local/, with everything a migration carries (SENTINEL marks the secrets).
ENTRIES = {
    "db": dict(kind="password", service="postgres.internal", tags=["prod", "db", "ops"],
               value=f"{SENTINEL}-db", notes=f"rotated by ops\n{SENTINEL}-note",
               fields=[Field(name="user", value="app", secret=False),
                       Field(name="password", value=f"{SENTINEL}-pw"),
                       Field(name="empty", value="", secret=False)],
               rotate_after=90 * DAY, expires=1_900_000_000.5),
    "api": dict(kind="api_key", value=f"ключ-🔑\n  {SENTINEL} \t\n"),
    "fields-only": dict(fields=[Field(name="token", value=f"{SENTINEL}-t"),
                                Field(name="host", value="h.example", secret=False)]),
    "deep/nested/token": dict(value=f"{SENTINEL}-nested", tags=["ci"]),
    "blank": dict(value="", notes=""),
}


@pytest.fixture
def mounted(bao, prefix, unlocked_agent):
    """An unlocked agent with ENTRIES under local/ and the mount `team` on the test's prefix."""
    return mount_team(unlocked_agent, bao, prefix)


def mount_team(agent, server: BaoServer, prefix: str):
    from credd.paths import config_path
    with agent.client() as c:
        c.set("openbao/token", value=ROOT_TOKEN)
        for name, fields in ENTRIES.items():
            c.set(f"local/{name}", **fields)
    add(config_path(), MountConfig(name="team", backend="openbao", url=server.url,
                                   prefix=prefix, token="credd://openbao/token"))
    return agent


@pytest.fixture
def migrate(run_credd):
    """`credd migrate ARGS`, checked to print no secret."""
    def run(*args: str) -> subprocess.CompletedProcess:
        done = run_credd("migrate", *args, timeout=90)
        assert SENTINEL not in done.stdout + done.stderr
        return done
    return run


def held(client, prefix: str) -> dict[str, tuple]:
    """Everything a migration must carry of each entry under `prefix`, by the rest of its name."""
    found = {}
    for meta in client.list(prefix=prefix):
        entry = client.reveal(meta.name)
        m = entry.entry
        found[meta.name[len(prefix):]] = (
            entry.value, entry.secret_fields, entry.notes, m.kind, m.service, m.tags, m.fields,
            m.secret_fields, m.has_value, m.has_notes, m.rotate_after, m.expires)
    return found


def kv_data(server: BaoServer, path: str) -> dict:
    return server.client().secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True)["data"]


def report(done: subprocess.CompletedProcess) -> dict:
    out = json.loads(done.stdout)
    return {key: sorted(i["name"] for i in out[key]) for key in
            ("copied", "overwritten", "already_there", "conflicts", "skipped")} | {
        "deleted": sorted(out["deleted"]), "stopped": out["stopped"]}


class TestOpenBao:
    def test_local_to_openbao_and_back_is_byte_identical(self, mounted, migrate, bao, prefix):
        there = migrate("local/", "team/moved/")
        assert there.returncode == 0, there.stderr
        assert there.stdout.count("copied") == len(ENTRIES)
        assert "current values only" in there.stderr
        data = kv_data(bao, f"{prefix}moved/db")
        assert data["data"] == {"value": f"{SENTINEL}-db", "user": "app",
                                "password": f"{SENTINEL}-pw", "empty": "",
                                "notes": f"rotated by ops\n{SENTINEL}-note"}
        assert data["metadata"]["custom_metadata"]["credd.tags"] == '["prod","db","ops"]'
        back = migrate("team/moved/", "back/")
        assert back.returncode == 0, back.stderr
        with mounted.client() as c:
            original = held(c, "local/")
            assert len(original) == len(ENTRIES)
            assert held(c, "team/moved/") == original
            assert held(c, "back/") == original

    def test_a_rerun_finds_everything_already_there_and_writes_nothing(self, mounted, migrate,
                                                                       bao, prefix):
        assert migrate("local/", "team/moved/").returncode == 0
        again = migrate("local/", "team/moved/", "--json")
        assert again.returncode == 0, again.stderr
        assert report(again)["already_there"] == sorted(f"local/{n}" for n in ENTRIES)
        assert report(again)["copied"] == []
        versions = bao.client().secrets.kv.v2.read_secret_metadata(
            f"{prefix}moved/db", mount_point="secret")["data"]["current_version"]
        assert versions == 1
        text = migrate("local/", "team/moved/")
        assert text.stdout == "" and f"{len(ENTRIES)} already there" in text.stderr

    def test_dry_run_changes_nothing(self, mounted, migrate, bao, prefix):
        done = migrate("local/", "team/moved/", "--dry-run", "--delete-source")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("would copy") == len(ENTRIES)
        assert "source would go to the trash" in done.stdout
        assert "nothing was changed" in done.stderr
        with pytest.raises(hvac.exceptions.InvalidPath):
            bao.client().secrets.kv.v2.list_secrets(prefix, mount_point="secret")
        with mounted.client() as c:
            assert len(c.list(prefix="local/")) == len(ENTRIES) and c.trash() == []

    def test_conflicts_are_listed_and_left_unless_overwrite(self, mounted, migrate, bao,
                                                             prefix):
        kv = bao.client().secrets.kv.v2
        kv.create_or_update_secret(f"{prefix}moved/db", {"value": "theirs"}, mount_point="secret")
        done = migrate("local/", "team/moved/", "--delete-source")
        assert done.returncode == 1
        line = next(x for x in done.stdout.splitlines() if x.startswith("conflict"))
        assert "local/db -> team/moved/db" in line and "different value" in line
        assert "--overwrite" in done.stderr
        assert kv_data(bao, f"{prefix}moved/db")["data"] == {"value": "theirs"}
        with mounted.client() as c:
            assert [e.name for e in c.list(prefix="local/")] == ["local/db"]  # the rest trashed
            assert {e.name for e in c.trash()} == {f"local/{n}" for n in ENTRIES} - {"local/db"}
        forced = migrate("local/", "team/moved/", "--overwrite", "--json")
        assert forced.returncode == 0, forced.stderr
        assert report(forced)["overwritten"] == ["local/db"]
        assert kv_data(bao, f"{prefix}moved/db")["data"]["value"] == f"{SENTINEL}-db"

    def test_a_copy_changed_on_the_server_since_credd_read_it_is_not_already_there(
            self, mounted, migrate, bao, prefix):
        """The mount caches reads for 30 s; a migration asks the server again, so a copy
        changed elsewhere is a conflict and its source is kept."""
        assert migrate("local/", "team/moved/").returncode == 0
        with mounted.client() as c:
            assert c.get("team/moved/db") == f"{SENTINEL}-db"  # cached in the agent
        bao.client().secrets.kv.v2.create_or_update_secret(f"{prefix}moved/db",
                                                           {"value": "theirs"},
                                                           mount_point="secret")
        done = migrate("local/", "team/moved/", "--delete-source", "--json")
        assert done.returncode == 1
        out = report(done)
        assert out["conflicts"] == ["local/db"] and "local/db" not in out["deleted"]
        with mounted.client() as c:
            assert c.describe("local/db").deleted is None

    def test_a_field_openbao_cannot_hold_is_skipped_and_the_run_goes_on(self, mounted, migrate,
                                                                         bao, prefix):
        with mounted.client() as c:
            c.set("local/odd", value="v", fields=[Field(name="notes", value="n")])
        done = migrate("local/", "team/moved/", "--json")
        assert done.returncode == 1
        out = json.loads(done.stdout)
        assert [(i["name"], "cannot be named 'notes'" in i["reason"]) for i in out["skipped"]] \
            == [("local/odd", True)]
        assert len(out["copied"]) == len(ENTRIES)

    def test_openbao_to_local_skips_a_key_the_vault_cannot_hold(self, mounted, migrate, bao,
                                                                prefix):
        kv = bao.client().secrets.kv.v2
        kv.create_or_update_secret(f"{prefix}ext/a", {"value": "1"}, mount_point="secret")
        kv.create_or_update_secret(f"{prefix}ext/b", {"k" * 200: "2"}, mount_point="secret")
        kv.create_or_update_secret(f"{prefix}ext/c", {"port": 5432}, mount_point="secret")
        done = migrate("team/ext/", "imported/", "--json")
        assert done.returncode == 1
        out = report(done)
        assert out["copied"] == ["team/ext/a", "team/ext/c"] and out["skipped"] == ["team/ext/b"]
        with mounted.client() as c:
            assert c.get("imported/a") == "1" and c.get("imported/c", "port") == "5432"

    def test_audit_names_both_sides_as_hmacs_with_their_mounts(self, mounted, migrate):
        assert migrate("local/", "team/moved/", "--delete-source").returncode == 0
        with mounted.client() as c:
            records = [r for r in c.audit(limit=200) if r.op.startswith("migrate")]
        assert {(r.op, r.outcome, r.mount) for r in records} == {
            ("migrate", "copied", ""), ("migrate_to", "copied", "team"),
            ("migrate_delete", "ok", "")}
        sides = {op: {r.name_hmac for r in records if r.op == op}
                 for op in ("migrate", "migrate_to", "migrate_delete")}
        assert len(sides["migrate"]) == len(sides["migrate_to"]) == len(ENTRIES)
        assert sides["migrate_delete"] == sides["migrate"]  # the same names: the sources
        assert not sides["migrate"] & sides["migrate_to"]
        assert all(h.startswith("hmac-sha256:") for hs in sides.values() for h in hs)

    def test_a_copy_another_client_changed_meanwhile_is_a_conflict(self, bao, prefix, tmp_path):
        """Check-and-set: the destination changes between the agent's read and its write."""
        from credd import protocol as p
        from credd.daemon.mounts.openbao import OpenBaoStore
        from credd.daemon.router import Router
        from tests.daemon.memory_store import MemoryStore
        from tests.mounts.doubles import MemoryMount, Served

        kv = bao.client().secrets.kv.v2
        kv.create_or_update_secret(f"{prefix}to/a", {"value": "old"}, mount_point="secret")

        class Meddling(MemoryMount):
            """A source whose second entry, when read, has someone else write the first's copy."""

            def reveal(self, name, version=None):
                if name == "src/b":
                    kv.create_or_update_secret(f"{prefix}to/a", {"value": "theirs"},
                                               mount_point="secret")
                return super().reveal(name, version)

        source = Meddling("src")
        for name in ("src/a", "src/b"):
            source.put(p.Set(name=name, value=f"{SENTINEL}-{name}"))
        team = OpenBaoStore(MountConfig(name="team", backend="openbao", url=bao.url,
                                        prefix=prefix, token="credd://t"),
                            {"credd://t": ROOT_TOKEN}.__getitem__)
        served = Served(tmp_path, Router(MemoryStore(), {"team": team, "src": source}))
        try:
            reply = served(p.Migrate(src="src/", dst="team/to/", overwrite=True,
                                     delete_source=True))
        finally:
            served.close()
            team.close()
        assert isinstance(reply, p.Migrated), reply
        first, second = reply.items
        assert (first.outcome, first.deleted) == ("conflict", False)
        assert "changed on the server of mount 'team'" in first.reason
        assert (second.outcome, second.deleted) == ("copied", True)
        assert kv_data(bao, f"{prefix}to/a")["data"] == {"value": "theirs"}
        assert source.describe("src/a").name == "src/a"  # still there, not in the trash


def test_a_server_killed_mid_run_loses_nothing_and_a_rerun_finishes(unlocked_agent, migrate,
                                                                     run_credd, tmp_path):
    """Only sources whose copy the server confirmed go to the trash; after a restart the
    same command finishes the job."""
    server = PersistentBaoServer(tmp_path / "bao").start()
    try:
        mount_team(unlocked_agent, server, "kill/")
        with unlocked_agent.client() as c:
            for i in range(600):
                c.set(f"local/bulk/{i:04d}", value=f"{SENTINEL}-{i}")
        kv = server.client().secrets.kv.v2
        killer = threading.Thread(target=_kill_when_written, args=(server, kv, 40))
        killer.start()
        first = migrate("local/bulk/", "team/bulk/", "--delete-source", "--json")
        killer.join()
        assert first.returncode == 1
        out = json.loads(first.stdout)
        assert "cannot be reached" in out["stopped"]
        deleted = set(out["deleted"])
        assert 0 < len(out["copied"]) < 600
        server.start()  # the same data, on the same port
        with unlocked_agent.client() as c:
            trashed = {e.name for e in c.trash()}
        assert trashed == deleted
        for name in trashed:  # every source gone to the trash is on the server, intact
            i = int(name.rsplit("/", 1)[1])
            assert kv_data(server, f"kill/bulk/{i:04d}")["data"] == {"value": f"{SENTINEL}-{i}"}
        again = migrate("local/bulk/", "team/bulk/", "--delete-source")
        assert again.returncode == 0, again.stderr
        with unlocked_agent.client() as c:
            assert c.list(prefix="local/bulk/") == [] and len(c.trash()) == 600
        assert len(kv.list_secrets("kill/bulk/", mount_point="secret")["data"]["keys"]) == 600
    finally:
        server.stop()


def _kill_when_written(server: PersistentBaoServer, kv, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if len(kv.list_secrets("kill/bulk/", mount_point="secret")["data"]["keys"]) >= count:
                break
        except hvac.exceptions.InvalidPath:
            pass
        time.sleep(0.01)
    server.kill()


class TestReadOnlyMounts:
    @pytest.fixture
    def env_agent(self, make_agent, credd_env, run_credd):
        env = dict(credd_env, PLATFORM_CRED_DB=json.dumps(
            {"username": "app", "host": "db.internal", "password": f"{SENTINEL}-pg", "port": 5432}),
            PLATFORM_CRED_API_KEY=SENTINEL)
        assert run_credd("mount", "add", "platform", "--backend", "env", "--prefix",
                         "PLATFORM_CRED_").returncode == 0
        agent = make_agent(env=env)
        agent.init_and_unlock()
        return agent

    def test_env_to_local(self, env_agent, migrate):
        done = migrate("platform/", "imported/")
        assert done.returncode == 0, done.stderr
        assert "current values only" not in done.stderr  # the environment keeps no history
        with env_agent.client() as c:
            db = c.describe("imported/db")
            assert db.fields == {"username": "app", "host": "db.internal", "port": "5432"}
            assert db.secret_fields == ("password",) and not db.has_value
            assert c.get("imported/db", "password") == f"{SENTINEL}-pg"
            assert c.get("imported/api_key") == SENTINEL
        assert migrate("platform/", "imported/").stderr.count("2 already there") == 1

    def test_delete_source_from_a_read_only_mount_is_refused_before_copying(self, env_agent,
                                                                           migrate):
        done = migrate("platform/", "imported/", "--delete-source")
        assert done.returncode == 7
        assert "platform is a read-only mount (backend env); nothing was copied" in done.stderr
        with env_agent.client() as c:
            assert c.list(prefix="imported/") == []

    def test_into_a_read_only_mount_is_refused(self, env_agent, migrate):
        with env_agent.client() as c:
            c.set("mine/x", value="v")
        done = migrate("mine/", "platform/x/")
        assert done.returncode == 7 and "cannot migrate into 'platform/x/'" in done.stderr

    def test_files_to_local(self, unlocked_agent, migrate, run_credd, tmp_path):
        secrets = tmp_path / "secrets"
        (secrets / "sub").mkdir(parents=True, mode=0o700)
        (secrets / "db_password").write_text(f"{SENTINEL}-file\n")
        (secrets / "sub" / "token").write_text("t\n")
        for path in (secrets / "db_password", secrets / "sub" / "token"):
            path.chmod(0o600)
        assert run_credd("mount", "add", "run", "--backend", "files", "--dir",
                         str(secrets)).returncode == 0
        done = migrate("run/", "imported/", "--json")
        assert done.returncode == 0, done.stderr
        assert report(done)["copied"] == ["run/db_password", "run/sub/token"]
        with unlocked_agent.client() as c:
            assert c.get("imported/db_password") == f"{SENTINEL}-file"
            assert c.get("imported/sub/token") == "t"


class TestRefusals:
    def test_overlapping_prefixes_and_a_bare_source_into_a_folder(self, unlocked_agent, migrate):
        for src, dst, said in (("a/", "a/b/", "overlap"), ("a/b", "a", "overlap"),
                               ("a", "b/", "write DST 'b'"), ("/", "b/", "must name")):
            done = migrate(src, dst)
            assert done.returncode == 2 and said in done.stderr, (src, dst, done.stderr)

    def test_a_lock_stops_nothing_silently(self, unlocked_agent, migrate, run_credd):
        run_credd("lock", check=True)
        assert migrate("a/", "b/").returncode == 3


def test_the_progress_bar_moves_on_a_terminal(mounted, credd_env):
    """On a terminal the bar goes to stderr and ends at the total; nothing secret shows."""
    import os
    import pty
    out_fd, err_fd = pty.openpty()
    done = subprocess.run([sys.executable, "-m", "credd", "migrate", "local/", "team/moved/"],
                          env=credd_env, stdout=subprocess.PIPE, stderr=err_fd, timeout=60)
    os.close(err_fd)
    shown = b""
    while True:
        try:
            chunk = os.read(out_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(out_fd)
    assert done.returncode == 0
    text = shown.decode()
    assert f"migrating [{'#' * 30}] {len(ENTRIES)}/{len(ENTRIES)}" in text
    assert SENTINEL not in text + done.stdout.decode()
