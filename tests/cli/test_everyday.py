"""Issue 12, everyday commands: what a user of pass, rbw or op types without reading further.

Piped values, not-found messages that say one thing and guess the rest, one reference rule
for the CLI, the Python client and `credd://`, notes from stdin or a prompt, `--json` on
every data command with RFC 3339 times, and export that never prints secrets to a terminal.
"""

from __future__ import annotations

import json
import re

import pytest

import credd
from credd.envfile import parse_dotenv
from credd.errors import NotFound
from credd.protocol import EntryMeta, Field
from tests.cli.conftest import ok, run_on_pty
from tests.conftest import SENTINEL


@pytest.fixture
def stocked(client):
    """github/token (with fields user and token), s3/prod (fields only), a/b and a (field b)."""
    client.set("github", value="gh-value", fields=[Field(name="user", value="octo", secret=False),
                                                    Field(name="token", value="gh-token")])
    client.set("s3/prod", fields=[Field(name="access_key_id", value="AKIA", secret=False),
                                  Field(name="secret_access_key", value="s3-secret")])
    client.set("a/b", value="the entry a/b")
    client.set("a", fields=[Field(name="b", value="field b of a")])
    return client


class TestSetFromAPipe:
    def test_piped_stdin_is_the_value(self, cli):
        done = cli("set", "plain/one", input="hello\n")
        assert "stored plain/one" in ok(done)
        assert ok(cli("get", "plain/one")) == "hello\n"
        ok(cli("set", "cert", input="line1\nline2\n"))  # as --value-stdin: to EOF
        assert ok(cli("get", "-n", "cert")) == "line1\nline2"

    def test_nothing_to_store_is_a_usage_error_not_an_empty_entry(self, cli):
        for stdin in ("", None):  # an empty pipe, and /dev/null
            done = cli("set", "empty", input=stdin)
            assert done.returncode == 2 and "nothing to store" in done.stderr, done.stderr
        assert cli("show", "empty").returncode == 5
        ok(cli("set", "meta", "--field", "a=1"))  # metadata alone is a change: no stdin needed
        assert json.loads(ok(cli("show", "meta", "--json")))["has_value"] is False

    def test_notes_come_from_stdin_or_a_prompt_never_argv(self, cli, credd_env):
        ok(cli("set", "n1", "--value-stdin", input="v"))
        ok(cli("set", "n1", "--notes-stdin", input=f"{SENTINEL}\nsecond line\n"))
        shown = json.loads(ok(cli("show", "n1", "--reveal", "--json")))
        assert shown["notes"] == f"{SENTINEL}\nsecond line" and shown["value"] == "v"
        assert SENTINEL not in ok(cli("show", "n1"))
        code, screen = run_on_pty(["set", "n2", "--generate", "--notes"], credd_env, [SENTINEL])
        assert code == 0 and SENTINEL not in screen, screen
        assert json.loads(ok(cli("show", "n2", "--reveal", "--json")))["notes"] == SENTINEL
        done = cli("set", "n3", "--value-stdin", "--notes-stdin", input="x")
        assert done.returncode == 2 and "only one secret can come from stdin" in done.stderr
        assert cli("set", "n3", "--notes=x").returncode == 2  # no value on the command line


class TestNotFound:
    def test_one_sentence_and_a_guess(self, stocked, cli):
        done = cli("get", "githb/token")
        assert done.returncode == 5
        first = done.stderr.splitlines()[0]  # the typo is in the entry, the field exists
        assert first == "credd: no entry named 'githb/token'; did you mean 'github/token'?"
        assert done.stderr.count("no entry named") == 1
        done = cli("get", "githb")
        assert "no entry named 'githb'; did you mean 'github'?" in done.stderr

    def test_a_missing_field_lists_the_fields_and_guesses(self, stocked, cli):
        done = cli("get", "github/tokn")
        assert done.returncode == 5
        assert "'github' has no field 'tokn' (its fields: token, user)" in done.stderr
        assert "did you mean 'github/token'?" in done.stderr

    def test_an_entry_with_fields_only(self, stocked, cli):
        done = cli("get", "s3/prod")
        assert done.returncode == 5
        assert "'s3/prod' has no value, only the fields access_key_id, secret_access_key" \
            in done.stderr
        assert "no entry named" not in done.stderr  # no second lookup reported
        assert ok(cli("get", "s3/prod/secret_access_key")) == "s3-secret\n"

    def test_nothing_close_no_guess_and_show_guesses_too(self, stocked, cli):
        done = cli("get", "zzzzzz")
        assert done.returncode == 5 and "did you mean" not in done.stderr
        assert "did you mean 'github'?" in cli("show", "githib").stderr
        assert "did you mean 'github'?" in cli("history", "githib").stderr

    def test_the_python_client_gets_the_same_sentence(self, stocked):
        with pytest.raises(NotFound, match="did you mean 'github/token'"):
            stocked.get("github/tokn")


class TestOneReferenceRule:
    def test_cli_python_and_references_agree(self, stocked, cli, tmp_path):
        assert stocked.get("s3/prod/secret_access_key") == "s3-secret"
        assert stocked.get("credd://s3/prod/secret_access_key") == "s3-secret"
        assert stocked.get("s3/prod", "secret_access_key") == "s3-secret"
        assert stocked.get("github/user") == "octo"
        # a name that is also an entry's field: the entry of that whole name, everywhere
        assert stocked.get("a/b") == "the entry a/b"
        assert stocked.get("a", "b") == "field b of a"
        assert stocked.get_many(["credd://a/b"]) == {"credd://a/b": "the entry a/b"}
        assert ok(cli("get", "a/b")) == "the entry a/b\n"
        assert ok(cli("get", "--", "a/b")) == "the entry a/b\n"  # the argparse path
        assert ok(cli("inject", input="{{ credd://a/b }}")) == "the entry a/b"
        assert credd.resolve("a/b", client=stocked) == "the entry a/b"
        secret = json.loads(ok(cli("get", "--json", "s3/prod/secret_access_key")))
        assert secret == {"name": "s3/prod", "value": "s3-secret", "field": "secret_access_key"}

    def test_bulk_readers_reach_a_shadowed_field(self, stocked, cli):
        """`a/b` names the entry, so export and redact must ask for field b of a alone."""
        out = ok(cli("export", "--format", "dotenv", "a"))
        assert parse_dotenv(out) == [("A_B", "field b of a")]
        out = ok(cli("export", "--format", "dotenv", "a/b"))
        assert parse_dotenv(out) == [("A_B", "the entry a/b")]
        masked = ok(cli("redact", input="field b of a / the entry a/b"))
        assert "field b of a" not in masked and "the entry a/b" not in masked

    def test_dir_lists_the_lazy_names(self):
        assert {"Client", "resolve", "RedactingFilter", "__version__"} <= set(dir(credd))


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
TIMES = {"created", "updated", "expires", "deleted", "replaced", "time"}


def _walk(value, path=""):
    """(path, key, value) of every key of every object in a JSON document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield path, key, inner
            yield from _walk(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{i}]")


class TestJson:
    def test_every_data_command_takes_json_with_rfc3339_times_and_flag_named_keys(
            self, stocked, cli, tmp_path):
        ok(cli("set", "old", "--value-stdin", "--expires", "2031-01-31T12:00:00Z",
               "--rotate-after", "90d", "--kind", "password", input="v1"))
        ok(cli("set", "old", "--value-stdin", input="v2"))
        ok(cli("set", "gone", "--value-stdin", input="x"))
        ok(cli("rm", "gone"))
        env_file = tmp_path / "app.env"
        env_file.write_text("GH=credd://github/token\nPLAIN=1\n")
        commands = [["get", "github/token"], ["show", "old"], ["show", "old", "--reveal"],
                    ["ls"], ["ls", "--kind", "password"], ["trash"], ["history", "old"],
                    ["status"], ["check"], ["audit"], ["mount", "ls"],
                    ["set", "old", "--tag", "t"],
                    ["run", "--dry-run", "--env-file", str(env_file), "--", "true"]]
        seen_times = set()
        for command in commands:
            at = 2 if command[0] == "mount" else 1
            doc = json.loads(ok(cli(*command[:at], "--json", *command[at:])))
            for where, key, value in _walk(doc):
                assert key not in ("type",), (command, where)  # the flag is --kind: `kind`
                if key in TIMES and command[0] != "run":
                    assert value is None or RFC3339.match(value), (command, where, key, value)
                    if value:
                        seen_times.add(key)
        assert {"created", "updated", "expires", "deleted", "replaced", "time"} <= seen_times
        listed = json.loads(ok(cli("ls", "--json", "--type", "password")))  # --type: an alias
        assert [(e["name"], e["kind"], e["state"]) for e in listed] == [("old", "password", "ok")]
        assert listed[0]["expires"] == "2031-01-31T12:00:00Z"
        assert listed[0]["rotate_after"] == 90 * 86400  # a duration: seconds
        assert "KIND" in ok(cli("ls")).splitlines()[0]
        plan = json.loads(ok(cli("run", "--dry-run", "--json", "--env-file", str(env_file),
                                 "--", "deploy", "--now")))
        assert plan == {"command": ["deploy", "--now"], "only": False, "mask": True,
                        "files": False, "variables": [{"name": "GH", "ref": "credd://github/token"},
                                                      {"name": "PLAIN", "ref": None}]}
        text = ok(cli("run", "--dry-run", "--env-file", str(env_file), "--", "deploy"))
        assert "credd://github/token" in text and "gh-token" not in text


class TestExportToATerminal:
    @pytest.mark.parametrize("fmt", ["dotenv", "shell", "json", "k8s-secret"])
    def test_one_rule_for_every_format(self, stocked, cli, credd_env, fmt):
        code, shown = run_on_pty(["export", "--format", fmt, "github"], credd_env, [])
        assert code == 2 and "gh-token" not in shown and "-o -" in shown, shown
        code, shown = run_on_pty(["export", "--format", fmt, "github", "-o", "-"], credd_env, [])
        assert code == 0 and ("gh-token" in shown or "Z2gtdG9rZW4=" in shown), shown
        assert "gh-token" in ok(cli("export", "--format", fmt, "github")) or fmt == "k8s-secret"


class TestImportExport:
    def test_a_dotenv_file_comes_back_as_it_was(self, client, cli, tmp_path):
        original = ("OPENAI_API_KEY=sk-123\nEMPTY=\nlower_case='has spaces'\n"
                    "REF=credd://elsewhere/x\nDB_URL=\"postgres://u:p@h/db\"\nZZZ_LAST=z\n")
        env_file = tmp_path / ".env"
        env_file.write_text(original)
        dry = cli("import", "--format", "dotenv", str(env_file), "--into", "myapp")
        out = ok(dry)
        assert "skip     REF: a credd:// reference" in out
        assert "dry run: 5 entries, 0 existing, 1 skipped" in dry.stderr
        assert "create   myapp/OPENAI_API_KEY" in out and "create   myapp/EMPTY" in out
        ok(cli("import", "--format", "dotenv", str(env_file), "--into", "myapp", "--apply"))
        back = ok(cli("export", "--format", "dotenv", "--from", "myapp"))
        expected = [pair for pair in parse_dotenv(original) if pair[0] != "REF"]
        assert parse_dotenv(back) == expected  # names, empty values and order
        assert client.get("myapp/EMPTY") == ""

    def test_json_import_honours_into(self, client, cli, tmp_path):
        client.set("one", value="1", fields=[Field(name="f", value="x")])
        backup = tmp_path / "backup.json"
        ok(cli("export", "--format", "json", "one", "-o", str(backup)))
        done = cli("import", "--format", "json", str(backup), "--into", "copy", "--apply")
        assert ok(done) == "create   copy/one\n"
        assert client.get("copy/one") == "1" and client.get("copy/one", "f") == "x"


def test_suggestions_look_at_a_bounded_window():
    """A miss in a 100,000-entry vault compares WINDOW names, not all (a miss must be cheap:
    helpers miss on purpose); the window is where the typo'd name sorts."""
    from credd.daemon import suggest
    entries = [EntryMeta(name=f"team{i:06d}/token") for i in range(100_000)]
    near = suggest.near_names(entries, "team054321/tokn")
    assert len(near) == suggest.WINDOW and "team054321/token" in near
    assert suggest.closest("team054321/tokn", near) == "team054321/token"
    assert suggest.near_names(entries[:10], "x") == [e.name for e in entries[:10]]
    assert suggest.closest("abc", ["xyz", "abc"]) is None  # never the name itself
