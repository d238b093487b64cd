"""The helper protocols with their real clients: git, docker's protocol, keyring, botocore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scripting.conftest import BIN, MODERN_GIT, git_version, installed
from tests.tools import need

FUTURE = str(int(time.time()) + 3600)
PAST = str(int(time.time()) - 60)


def git_runner(git_bin: str, env: dict[str, str], config: Path, helper_setting: str,
               extra: str = ""):
    """`git credential ...` with only our helper configured and no way to prompt."""
    config.write_text(f"[credential]\n\thelper = {helper_setting}\n{extra}")
    env = dict(env, GIT_CONFIG_GLOBAL=str(config), GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="")

    def run(action: str, attrs: dict[str, str]) -> subprocess.CompletedProcess:
        text = "".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n"
        return subprocess.run([git_bin, "credential", action], input=text, env=env,
                              capture_output=True, text=True, timeout=30)

    return run


@pytest.fixture
def git(credd_env, tmp_path):
    """The system git, with the helper configured by its absolute path."""
    return git_runner(need("git"), credd_env, tmp_path / "gitconfig",
                      installed("git-credential-credd"))


@pytest.fixture
def new_git(modern_git, credd_env, tmp_path):
    """A git >= 2.41 (built by `make test` when the system's is older), with the helper
    configured as the docs say, `helper = credd`: git finds git-credential-credd on PATH."""
    installed("git-credential-credd")
    env = dict(credd_env, PATH=f"{BIN}{os.pathsep}{credd_env.get('PATH', os.defpath)}")
    return git_runner(modern_git, env, tmp_path / "gitconfig-modern", "credd")


def helper(credd_env, name: str, *args: str, input: str = "", env: dict | None = None):
    return subprocess.run([installed(name), *args], input=input, capture_output=True, text=True,
                          env=dict(credd_env, **(env or {})), timeout=30)


def parse(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_git_approve_fill_reject(client, git):
    attrs = {"protocol": "https", "host": "git.example.com", "username": "alice",
             "password": "gitpw-123456"}
    r = git("approve", attrs)
    assert r.returncode == 0, r.stderr
    meta = client.describe("git/https/git.example.com@alice")
    assert meta.service == "git.example.com" and meta.fields["username"] == "alice"

    r = git("fill", {"protocol": "https", "host": "git.example.com"})
    assert r.returncode == 0, r.stderr
    assert parse(r.stdout)["password"] == "gitpw-123456"
    assert parse(r.stdout)["username"] == "alice"

    assert git("fill", {"protocol": "https", "host": "other.example.com"}).returncode != 0

    assert git("reject", attrs).returncode == 0
    r = git("fill", {"protocol": "https", "host": "git.example.com"})
    assert r.returncode != 0 and "gitpw" not in r.stdout
    # stored again after a reject: the trashed entry does not block it
    assert git("approve", attrs).returncode == 0
    assert parse(git("fill", {"protocol": "https", "host": "git.example.com"}).stdout)[
        "password"] == "gitpw-123456"


def fill(git, attrs: dict[str, str]) -> tuple[str, str] | None:
    """(username, password) git got from the helper, or None (it would have prompted)."""
    r = git("fill", attrs)
    if r.returncode != 0:
        assert "terminal prompts disabled" in r.stderr, r.stderr
        return None
    got = parse(r.stdout)
    return got["username"], got["password"]


def test_git_helper_conformance(client, credd_env, tmp_path):
    """git's own cases for external helpers (t/lib-credential.sh `helper_test`, git 2.45),
    in its order, through the real `git credential`, plus a reject without a path."""
    git = git_runner(need("git"), credd_env, tmp_path / "gitconfig",
                     installed("git-credential-credd"), "\tuseHttpPath = true\n")
    https = {"protocol": "https", "host": "example.com"}
    assert fill(git, https) is None                                           # no data
    git("approve", {**https, "username": "store-user", "password": "store-pass"})
    assert fill(git, https) == ("store-user", "store-pass")
    assert fill(git, {**https, "protocol": "http"}) is None                   # protocol
    assert fill(git, {**https, "host": "other.tld"}) is None                  # host
    assert fill(git, {**https, "username": "other"}) is None                  # username
    path = {"protocol": "http", "host": "path.tld", "path": "foo.git"}
    git("approve", {**path, "username": "user", "password": "pass"})
    assert fill(git, {**path, "path": "bar.git"}) is None                     # path
    assert fill(git, path) == ("user", "pass")

    user8 = {**https, "username": "user-overwrite"}                          # overwrites
    git("approve", {**user8, "password": "pass1"})
    git("approve", {**user8, "password": "pass2"})
    assert fill(git, user8) == ("user-overwrite", "pass2")
    git("reject", {**user8, "password": "pass2"})
    assert fill(git, user8) is None

    git("reject", https)                                                      # forget host
    assert fill(git, https) is None
    for n in (1, 2):                                                          # many users
        git("approve", {**https, "username": f"user{n}", "password": f"pass{n}"})
    assert fill(git, {**https, "username": "user1"}) == ("user1", "pass1")
    assert fill(git, {**https, "username": "user2"}) == ("user2", "pass2")

    distinct = {**https, "username": "user-distinct-pass"}                    # a late reject
    git("approve", {**distinct, "password": "pass1"})
    git("reject", {**distinct, "password": "pass2"})
    assert fill(git, distinct) == ("user-distinct-pass", "pass1")

    git("reject", {**https, "username": "user1"})                            # forget user
    assert fill(git, {**https, "username": "user1"}) is None
    assert fill(git, {**https, "username": "user2"}) == ("user2", "pass2")  # keeps the other

    sso = {"protocol": "https", "host": "sso.tld"}                            # empty ones
    git("approve", {**sso, "username": "", "password": ""})
    r = git("fill", sso)
    assert r.returncode == 0 and "username=\npassword=\n" in r.stdout, r.stdout + r.stderr

    git("reject", {"protocol": "http", "host": "path.tld"})                  # no path: any
    assert fill(git, path) is None


def test_git_helper_refuses_options_it_does_not_know(client, credd_env, tmp_path):
    """`helper = credd --timeout=3600`, copied from credential-cache, is an error the user
    sees, not a helper that silently does nothing."""
    env = dict(credd_env, PATH=f"{BIN}{os.pathsep}{credd_env.get('PATH', os.defpath)}")
    installed("git-credential-credd")
    git = git_runner(need("git"), env, tmp_path / "gitconfig", "credd --timeout=3600")
    r = git("approve", {"protocol": "https", "host": "h.example", "username": "u",
                        "password": "pw-123456"})
    assert "git-credential-credd: unknown option '--timeout=3600'" in r.stderr, r.stderr
    assert client.list(prefix="git/") == []
    r = helper(credd_env, "git-credential-credd", "--timeout=3600", "get",
               input="protocol=https\nhost=h.example\n\n")
    assert (r.returncode, r.stdout) == (2, "") and "unknown option" in r.stderr
    assert helper(credd_env, "git-credential-credd", "frobnicate").returncode == 0  # git's rule


def test_git_helper_expiry_and_refresh_token_lines(client, credd_env):
    """The lines git >= 2.41 writes, fed to the helper directly: this runs whatever git the
    machine has (the real-git test below proves git sends them)."""
    def run(action: str, attrs: dict[str, str]) -> dict[str, str]:
        r = helper(credd_env, "git-credential-credd", action,
                   input="".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n")
        assert r.returncode == 0, r.stderr
        return parse(r.stdout)

    key = {"protocol": "https", "host": "oauth.example", "username": "bob"}
    run("store", {**key, "password": "tok-1234567", "password_expiry_utc": FUTURE,
                  "oauth_refresh_token": "refresh-98765"})
    assert run("get", {"protocol": "https", "host": "oauth.example"}) == {
        "username": "bob", "password": "tok-1234567", "password_expiry_utc": FUTURE,
        "oauth_refresh_token": "refresh-98765"}
    assert "refresh-98765" not in str(client.describe("git/https/oauth.example@bob"))
    run("store", {**key, "password": "old-1234567", "password_expiry_utc": PAST})
    assert run("get", key) == {}
    soon = int(time.time()) + 2
    run("store", {**key, "password": "soon-1234567", "password_expiry_utc": str(soon)})
    assert run("get", key)["password"] == "soon-1234567"
    time.sleep(max(0.0, soon + 1 - time.time()))
    assert run("get", key) == {}


def test_git_path_and_username_keys(client, git):
    base = {"protocol": "https", "host": "h.example"}
    git("approve", {**base, "path": "org/a.git", "username": "u1", "password": "pw-a-1234"})
    git("approve", {**base, "path": "org/b.git", "username": "u2", "password": "pw-b-1234"})
    got = parse(git("fill", {**base, "path": "org/b.git"}).stdout)
    assert (got["username"], got["password"]) == ("u2", "pw-b-1234")
    got = parse(git("fill", {**base, "path": "org/a.git", "username": "u1"}).stdout)
    assert got["password"] == "pw-a-1234"


def test_git_expiry_and_refresh_token(client, new_git, modern_git):
    """Through the real `git credential` of a git >= 2.41: older gits drop both attributes."""
    assert git_version(modern_git) >= MODERN_GIT
    base = {"protocol": "https", "host": "oauth.example", "username": "bob"}
    query = {"protocol": "https", "host": "oauth.example"}
    r = new_git("approve", {**base, "password": "tok-1234567", "password_expiry_utc": FUTURE,
                            "oauth_refresh_token": "refresh-98765"})
    assert r.returncode == 0, r.stderr
    meta = client.describe("git/https/oauth.example@bob")
    assert meta.fields["password_expiry_utc"] == FUTURE  # git passed it on to the helper
    assert "refresh-98765" not in str(meta)               # a secret field, not metadata

    r = new_git("fill", query)
    assert r.returncode == 0, r.stderr
    got = parse(r.stdout)
    assert (got["username"], got["password"]) == ("bob", "tok-1234567")
    assert got["password_expiry_utc"] == FUTURE and got["oauth_refresh_token"] == "refresh-98765"

    # reject erases: git then has nothing, and with prompts off it fails instead of asking
    assert new_git("reject", base).returncode == 0
    r = new_git("fill", query)
    assert r.returncode != 0 and "password=" not in r.stdout
    assert "terminal prompts disabled" in r.stderr

    # an already expired password: git does not even hand it to the helper
    r = new_git("approve", {**base, "password": "old-1234567", "password_expiry_utc": PAST})
    assert r.returncode == 0, r.stderr
    r = new_git("fill", query)
    assert r.returncode != 0 and "old-1234567" not in r.stdout and "password=" not in r.stdout

    # stored while valid, then expired: never returned again
    soon = int(time.time()) + 3
    r = new_git("approve", {**base, "password": "soon-1234567", "password_expiry_utc": str(soon)})
    assert r.returncode == 0, r.stderr
    assert client.describe("git/https/oauth.example@bob").fields["password_expiry_utc"] == str(soon)
    assert parse(new_git("fill", query).stdout)["password"] == "soon-1234567"
    time.sleep(max(0.0, soon + 1 - time.time()))
    r = new_git("fill", query)
    assert r.returncode != 0 and "soon-1234567" not in r.stdout and "password=" not in r.stdout
    assert "terminal prompts disabled" in r.stderr


def test_docker_helper_protocol(client, credd_env):
    name = "docker-credential-credd"
    creds = {"ServerURL": "https://index.docker.io/v1/", "Username": "dockeruser",
             "Secret": "dckr_pat_123456"}
    r = helper(credd_env, name, "store", input=json.dumps(creds))
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    r = helper(credd_env, name, "get", input="https://index.docker.io/v1/")
    assert r.returncode == 0 and json.loads(r.stdout) == creds
    helper(credd_env, name, "store", input=json.dumps(
        {"ServerURL": "registry.example.com:5000", "Username": "u2", "Secret": "s2-123456"}))
    r = helper(credd_env, name, "list")
    assert json.loads(r.stdout) == {"https://index.docker.io/v1/": "dockeruser",
                                    "registry.example.com:5000": "u2"}
    assert "docker/https:/index.docker.io/v1" in [m.name for m in client.list()]
    r = helper(credd_env, name, "erase", input="https://index.docker.io/v1/")
    assert r.returncode == 0
    for action in ("get", "erase"):
        r = helper(credd_env, name, action, input="https://index.docker.io/v1/")
        assert (r.returncode, r.stdout.strip()) == (1, "credentials not found in native keychain")


def test_docker_helper_refuses_as_docker_helpers_do(client, credd_env):
    """docker-credential-helpers' own words (credentials/error.go), checked before the
    agent is asked."""
    def run(action: str, data: str) -> tuple[int, str]:
        r = helper(credd_env, "docker-credential-credd", action, input=data)
        return r.returncode, r.stdout.strip()

    no_url, no_user = (1, "no credentials server URL"), (1, "no credentials username")
    assert run("store", json.dumps({"Username": "u", "Secret": "s"})) == no_url
    assert run("store", json.dumps({"ServerURL": "", "Username": "u", "Secret": "s"})) == no_url
    assert run("store", json.dumps({"ServerURL": "https://r.io", "Secret": "s"})) == no_user
    assert run("store", json.dumps({"ServerURL": "https://r.io", "Username": "",
                                    "Secret": "s"})) == no_user
    for action in ("get", "erase"):
        assert run(action, "") == no_url and run(action, " \n") == no_url
    assert client.list(prefix="docker/") == []
    assert run("frobnicate", "") == (1, "docker-credential-credd: unknown action: frobnicate")


def test_docker_helper_keeps_http_and_https_apart(client, credd_env):
    def run(action: str, data: str) -> subprocess.CompletedProcess:
        return helper(credd_env, "docker-credential-credd", action, input=data)

    run("store", json.dumps({"ServerURL": "https://r.example", "Username": "u1",
                             "Secret": "tls-123456"}))
    missing = run("get", "http://r.example").stdout.strip()
    assert missing == "credentials not found in native keychain"
    run("store", json.dumps({"ServerURL": "http://r.example", "Username": "u2",
                             "Secret": "plain-123456"}))
    assert json.loads(run("get", "https://r.example/").stdout)["Secret"] == "tls-123456"
    assert json.loads(run("get", "http://r.example").stdout)["Secret"] == "plain-123456"
    assert run("get", "r.example").returncode == 1  # no scheme is a third URL
    assert run("erase", "http://r.example").returncode == 0
    assert json.loads(run("get", "https://r.example").stdout)["Username"] == "u1"


def test_docker_entries_of_the_first_naming_are_read_where_unambiguous(client, credd_env):
    """The first naming dropped the scheme: `docker/r.example` holds whichever URL its
    `server_url` field says, and answers for that URL only."""
    from credd.protocol import Field

    def run(action: str, data: str) -> subprocess.CompletedProcess:
        return helper(credd_env, "docker-credential-credd", action, input=data)

    def legacy(name: str, url: str, secret: str) -> None:
        client.set(name, kind="password", service="r.example", tags=["docker"], value=secret,
                   fields=[Field(name="server_url", value=url, secret=False),
                           Field(name="username", value="old", secret=False)])

    legacy("docker/r.example", "https://r.example", "old-tls-123456")
    legacy("docker/bare.example:5000", "bare.example:5000", "old-bare-123456")
    assert json.loads(run("get", "https://r.example").stdout)["Secret"] == "old-tls-123456"
    assert run("get", "http://r.example").returncode == 1
    assert json.loads(run("get", "bare.example:5000").stdout)["Secret"] == "old-bare-123456"
    assert json.loads(run("list", "").stdout)["https://r.example"] == "old"

    run("store", json.dumps({"ServerURL": "https://r.example", "Username": "new",
                             "Secret": "new-tls-123456"}))  # write-new: the old one goes
    assert json.loads(run("get", "https://r.example").stdout)["Secret"] == "new-tls-123456"
    assert [m.name for m in client.trash()] == ["docker/r.example"]
    assert run("erase", "bare.example:5000").returncode == 0
    assert run("get", "bare.example:5000").returncode == 1


KEYRING_SCRIPT = """
import sys, keyring
from keyring.errors import PasswordDeleteError
k = keyring.get_keyring()
print("backend", type(k).__module__, type(k).__name__)
if sys.argv[1] == "set":
    keyring.set_password("my service", "alice", sys.stdin.read())
elif sys.argv[1] == "get":
    print("password", keyring.get_password("my service", "alice"))
    c = keyring.get_credential("my service", None)
    print("credential", c.username, c.password)
elif sys.argv[1] == "delete":
    keyring.delete_password("my service", "alice")
    print("after", keyring.get_password("my service", "alice"))
    try:
        keyring.delete_password("my service", "alice")
    except PasswordDeleteError:
        print("second delete refused")
"""


def test_keyring_chooses_credd_by_itself(client, credd_env, run_credd, tmp_path):
    def kr(action: str, input: str = "", env: dict | None = None):
        return subprocess.run([sys.executable, "-c", KEYRING_SCRIPT, action], input=input,
                              capture_output=True, text=True, timeout=30,
                              env=dict(credd_env, **(env or {})))

    r = kr("set", "kr-pass-123456")
    assert r.returncode == 0, r.stderr
    assert "backend credd.integrations.keyring_backend CreddKeyring" in r.stdout
    ls = run_credd("ls")
    assert "keyring/my service/alice" in ls.stdout and "my service" in ls.stdout
    out = kr("get").stdout
    assert "password kr-pass-123456" in out and "credential alice kr-pass-123456" in out
    out = kr("delete").stdout
    assert "after None" in out and "second delete refused" in out

    start = time.monotonic()
    r = kr("get", env={"CREDD_SOCK": str(tmp_path / "no-agent.sock")})
    assert "CreddKeyring" not in r.stdout and time.monotonic() - start < 10


def test_keyring_locked_vault_raises_keyring_locked(client, credd_env):
    client.lock()
    r = subprocess.run([sys.executable, "-c", "import keyring\nfrom keyring.errors import "
                        "KeyringLocked\ntry:\n keyring.get_password('s', 'u')\nexcept KeyringLocked"
                        " as e:\n print('locked', e)"], capture_output=True, text=True,
                       env=credd_env, timeout=30)
    assert r.stdout.startswith("locked"), r.stdout + r.stderr


def test_aws_credential_process_with_botocore(client, credd_env, monkeypatch, tmp_path):
    botocore_session = pytest.importorskip("botocore.session")
    from credd.protocol import Field
    client.set("aws/dev", kind="aws", expires=time.time() + 3600,
               fields=[Field(name="aws_access_key_id", value="AKIADEVEXAMPLE"),
                       Field(name="aws_secret_access_key", value="dev/secret+key"),
                       Field(name="aws_session_token", value="session-tok-1")])
    r = subprocess.run([installed("credd"), "aws-credential-process", "aws/dev"],
                       capture_output=True, text=True, env=credd_env, timeout=30)
    out = json.loads(r.stdout)
    assert out["Version"] == 1 and out["AccessKeyId"] == "AKIADEVEXAMPLE"
    assert out["SessionToken"] == "session-tok-1" and out["Expiration"].endswith("Z")

    config = tmp_path / "aws-config"
    config.write_text(f"[profile dev]\ncredential_process = {installed('credd')} "
                      f"aws-credential-process aws/dev\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    creds = botocore_session.Session(profile="dev").get_credentials().get_frozen_credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == (
        "AKIADEVEXAMPLE", "dev/secret+key", "session-tok-1")


def test_helpers_fail_fast_when_locked_or_absent(client, credd_env, credd_cmd, tmp_path):
    client.set("github/token", value="tok-1234567")
    client.lock()
    absent = {"CREDD_SOCK": str(tmp_path / "absent.sock")}
    for env, word, code in ((None, "locked", 3), (absent, "no credd agent", 4)):
        start = time.monotonic()
        r = helper(credd_env, "git-credential-credd", "get", env=env,
                   input="protocol=https\nhost=x\n\n")
        assert (r.returncode, r.stdout) == (1, "") and word in r.stderr
        r = helper(credd_env, "docker-credential-credd", "get", input="x.io", env=env)
        assert r.returncode == 1 and r.stdout.strip() == "credentials not found in native keychain"
        assert word in r.stderr
        r = credd_cmd("aws-credential-process", "aws/dev", env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == code and r.stdout == b"" and word.encode() in r.stderr
        r = credd_cmd("run", "--env", "T=credd://github/token", "--", "true", env=env)
        assert r.returncode == code and word.encode() in r.stderr
        assert time.monotonic() - start < 15
