"""inject, export, import and redact against a real agent: round trips and file modes."""

from __future__ import annotations

import base64
import json
import os
import stat

from credd.envfile import parse_dotenv
from credd.mask import REPLACEMENT
from tests.conftest import SENTINEL
from tests.scripting.conftest import DB_PASSWORD, TOKEN

R = REPLACEMENT.decode()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_inject_stdin_and_file_atomic_0600(stocked, credd_cmd, tmp_path):
    template = "url=postgres://app:{{ credd://prod db/password }}@{{credd://prod db/host}}/x\n"
    r = credd_cmd("inject", input=template.encode())
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"url=postgres://app:{DB_PASSWORD}@db.internal/x\n"

    src, out = tmp_path / "t.tmpl", tmp_path / "config.ini"
    src.write_text(template + "token={{ credd://github/token }}\n")
    assert credd_cmd("inject", "-i", str(src), "-o", str(out)).returncode == 0
    assert mode(out) == 0o600 and f"token={TOKEN}" in out.read_text()

    out.write_text("shared")
    os.chmod(out, 0o644)
    r = credd_cmd("inject", "-i", str(src), "-o", str(out))
    assert r.returncode == 7 and "--force" in r.stderr.decode()
    assert out.read_text() == "shared"
    assert credd_cmd("inject", "-i", str(src), "-o", str(out), "--force").returncode == 0
    assert mode(out) == 0o600 and TOKEN in out.read_text()


def test_inject_missing_refs_writes_nothing(stocked, credd_cmd, tmp_path):
    out = tmp_path / "out"
    r = credd_cmd("inject", "-o", str(out), input=b"{{ credd://x/y }} {{ credd://github/token }} "
                                                    b"{{ credd://z }}")
    assert r.returncode == 5
    assert "credd://x/y" in r.stderr.decode() and "credd://z" in r.stderr.decode()
    assert not out.exists()


def test_export_dotenv_shell_k8s(stocked, credd_cmd, tmp_path):
    r = credd_cmd("export", "--format", "dotenv", "github/token", "prod db")
    assert r.returncode == 0 and TOKEN in r.stdout.decode()  # a pipe is no terminal

    out = tmp_path / "app.env"
    r = credd_cmd("export", "--format", "dotenv", "--tag", "ci", "-o", str(out),
                  "--map", "prod db/password=PGPASSWORD")
    assert r.returncode == 0, r.stderr
    assert mode(out) == 0o600
    assert dict(parse_dotenv(out.read_text())) == {
        "GITHUB_TOKEN": TOKEN, "PROD_DB_HOST": "db.internal", "PGPASSWORD": DB_PASSWORD}

    r = credd_cmd("export", "--format", "shell", "--service", "postgres")
    script = r.stdout.decode() + 'printf "%s|%s" "$PROD_DB_HOST" "$PROD_DB_PASSWORD"'
    import subprocess
    assert subprocess.run(["sh", "-c", script], capture_output=True).stdout.decode() == \
        f"db.internal|{DB_PASSWORD}"

    r = credd_cmd("export", "--format", "k8s-secret", "github/token", "--secret-name", "app")
    manifest = r.stdout.decode()
    assert "kind: Secret" in manifest
    assert f"GITHUB_TOKEN: {base64.b64encode(TOKEN.encode()).decode()}" in manifest

    r = credd_cmd("export", "--format", "shell", "github/token", "nope", "nada")
    assert r.returncode == 5 and "nope, nada" in r.stderr.decode() and not r.stdout


def test_export_docker_secrets_dir(stocked, credd_cmd, tmp_path):
    d = tmp_path / "secrets"
    r = credd_cmd("export", "--format", "docker-secrets", "--tag", "ci", "-o", str(d),
                  "--map", "github/token=GH")
    assert r.returncode == 0, r.stderr
    assert mode(d) == 0o700
    assert sorted(os.listdir(d)) == ["GH", "prod_db_host", "prod_db_password"]
    assert all(mode(d / f) == 0o400 for f in os.listdir(d))
    assert (d / "prod_db_password").read_text() == DB_PASSWORD
    # exporting again replaces the read-only files atomically
    assert credd_cmd("export", "--format", "docker-secrets", "--tag", "ci", "-o", str(d),
                     "--map", "github/token=GH").returncode == 0


def test_json_export_import_round_trip(stocked, credd_cmd, tmp_path):
    from credd.protocol import Field
    stocked.set("rich", kind="password", service="svc", tags=["a", "b"], value="v-123456",
                notes="some notes", fields=[Field(name="user", value="u", secret=False),
                                            Field(name="otp", value="o-98765")])
    out = tmp_path / "backup.json"
    r = credd_cmd("export", "--format", "json", "rich", "github/token", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert mode(out) == 0o600
    before = {n: stocked.reveal(n) for n in ("rich", "github/token")}

    r = credd_cmd("import", "--format", "json", str(out))  # dry run: names only
    assert r.returncode == 0
    assert r.stdout.decode().split() == ["conflict", "rich", "conflict", "github/token"]
    assert "v-123456" not in r.stdout.decode() + r.stderr.decode()
    r = credd_cmd("import", "--format", "json", str(out), "--apply")
    assert r.returncode == 1 and "--overwrite" in r.stderr.decode()

    for name in before:
        stocked.delete(name)
        stocked.purge(name)
    r = credd_cmd("import", "--format", "json", str(out), "--apply")
    assert r.returncode == 0, r.stderr
    for name, old in before.items():
        new = stocked.reveal(name)
        assert (new.value, new.secret_fields, new.notes) == (old.value, old.secret_fields,
                                                             old.notes)
        assert (new.entry.kind, new.entry.service, new.entry.tags, new.entry.fields) == (
            old.entry.kind, old.entry.service, old.entry.tags, old.entry.fields)


def test_import_dotenv_env_aws(stocked, credd_cmd, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("API_KEY=k-1234567\nREF=credd://github/token\n")
    r = credd_cmd("import", "--format", "dotenv", str(env_file), "--into", "app", "--apply")
    assert r.returncode == 0, r.stderr
    assert stocked.get("app/API_KEY") == "k-1234567"

    r = credd_cmd("import", "--format", "env", "--prefix", "PLATFORM_CRED_", "--apply",
                  env={"PLATFORM_CRED_STRIPE": json.dumps({"username": "acct", "key": "sk-999"}),
                       "PLATFORM_CRED_PLAIN": "plain-value"})
    assert r.returncode == 0, r.stderr
    meta = stocked.describe("stripe")
    assert meta.fields == {"username": "acct"} and meta.secret_fields == ("key",)
    assert stocked.get("stripe", "key") == "sk-999" and stocked.get("plain") == "plain-value"

    aws = tmp_path / "credentials"
    aws.write_text("[default]\naws_access_key_id = AKIAXXXX\naws_secret_access_key = s3/abc\n")
    r = credd_cmd("import", "--format", "aws", str(aws), "--apply")
    assert r.returncode == 0, r.stderr
    assert stocked.get("aws/default", "aws_secret_access_key") == "s3/abc"

    r = credd_cmd("import", "--format", "env", "--prefix", "PLATFORM_CRED_", "--apply",
                  "--overwrite", env={"PLATFORM_CRED_PLAIN": "changed-value"})
    assert r.returncode == 0 and stocked.get("plain") == "changed-value"


def test_redact_every_stored_secret(stocked, credd_cmd, tmp_path):
    log = tmp_path / "app.log"
    b64 = base64.b64encode(f"user:{TOKEN}".encode()).decode()
    log.write_text(f"token={TOKEN}\npw={DB_PASSWORD}\nAuthorization: Basic {b64}\n"
                   f"s={SENTINEL}\nhost=db.internal\n")
    r = credd_cmd("redact", "--deep", str(log))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith(f"token={R}\npw={R}\nAuthorization: Basic ")
    assert f"s={R}\nhost=db.internal\n" in out  # a plain field is not a secret
    assert b64 not in out
    r = credd_cmd("redact", "--deep", input=log.read_bytes())
    assert r.stdout.decode() == out
    r = credd_cmd("redact", input=log.read_bytes())  # without --deep: Basic auth stays
    assert b64 in r.stdout.decode() and TOKEN not in r.stdout.decode()


def test_resolve_precedence_with_agent(stocked, monkeypatch, tmp_path):
    import pytest

    import credd
    from credd.errors import LockedError, NotFound
    for var in ("GITHUB_TOKEN", "GITHUB_TOKEN_FILE", "NOPE_X", "NOPE_X_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert credd.resolve("github/token") == TOKEN
    assert credd.resolve("credd://prod db/password") == DB_PASSWORD
    monkeypatch.setenv("GITHUB_TOKEN", "from-env")
    assert credd.resolve("github/token") == "from-env"
    default = tmp_path / "token"
    default.write_text("from-default-file\n")
    assert credd.resolve("nope/x", default_file=str(default)) == "from-default-file"
    with pytest.raises(NotFound):
        credd.resolve("nope/x")
    stocked.lock()
    assert credd.resolve("prod db/password", default_file=str(default)) == "from-default-file"
    with pytest.raises(LockedError):
        credd.resolve("prod db/password")


def test_redacting_filter_loads_stored_secrets(stocked, caplog):
    import logging

    import credd
    log = logging.getLogger("credd-test-filter")
    log.addFilter(credd.RedactingFilter())
    with caplog.at_level(logging.INFO, logger="credd-test-filter"):
        log.info("connecting with %s and %s", DB_PASSWORD, TOKEN)
    assert caplog.records[-1].getMessage() == f"connecting with {R} and {R}"
    assert SENTINEL not in caplog.text
