"""The `credd` commands end to end: a real agent, real subprocesses, real terminals."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

from tests.cli.conftest import ok, run_on_pty
from tests.conftest import FAST_KDF, SENTINEL, TEST_PASSPHRASE


def set_value(cli, name: str, value: str, *args: str) -> None:
    ok(cli("set", name, "--value-stdin", *args, input=value))


class TestSet:
    def test_value_from_stdin_keeps_inner_newlines(self, cli):
        set_value(cli, "cert", "line1\nline2\n")   # only the last newline is dropped
        assert ok(cli("get", "-n", "cert")) == "line1\nline2"

    def test_generate_stores_without_printing(self, cli):
        out = ok(cli("set", "db", "--generate", "40"))
        value = ok(cli("get", "-n", "db"))
        assert len(value) == 40 and value not in out
        ok(cli("set", "db2", "--generate"))
        assert len(ok(cli("get", "-n", "db2"))) == 24

    def test_fields_secret_fields_tags_type_service(self, cli, tmp_path):
        secret_file = tmp_path / "pw"
        secret_file.write_text(SENTINEL + "\n")
        ok(cli("set", "github", "--type", "api_key", "--service", "github.com",
               "--field", "user=alice", "--secret-field", f"password=@{secret_file}",
               "--secret-field", "token", "--tag", "work", "--tag", "ci", input="t0k\n"))
        assert ok(cli("get", "github/user")) == "alice\n"
        assert ok(cli("get", "github/password")) == SENTINEL + "\n"
        assert ok(cli("get", "github/token")) == "t0k\n"
        meta = json.loads(ok(cli("show", "github", "--json")))
        assert (meta["kind"], meta["service"], meta["tags"], meta["fields"]) == \
            ("api_key", "github.com", ["work", "ci"], {"user": "alice"})
        assert sorted(meta["secret_fields"]) == ["password", "token"]

    def test_secret_file_errors_are_clear(self, cli, tmp_path):
        binary = tmp_path / "bin"
        binary.write_bytes(b"\xff\xfe")
        for spec, message in ((f"k=@{binary}", "UTF-8"), (f"k=@{tmp_path}/none", "cannot read")):
            done = cli("set", "x", "--secret-field", spec)
            assert done.returncode == 2 and message in done.stderr
            assert "Traceback" not in done.stderr

    def test_only_one_secret_from_stdin(self, cli):
        done = cli("set", "x", "--value-stdin", "--secret-field", "a", input="v")
        assert done.returncode == 2 and "only one secret can come from stdin" in done.stderr
        assert cli("get", "x").returncode == 5  # nothing was written

    def test_set_changes_only_what_is_given_unless_replace(self, cli):
        ok(cli("set", "x", "--value-stdin", "--field", "a=1", "--tag", "t", input="v"))
        ok(cli("set", "x", "--field", "b=2"))
        meta = json.loads(ok(cli("show", "x", "--json")))
        assert meta["fields"] == {"a": "1", "b": "2"} and meta["tags"] == ["t"]
        assert ok(cli("get", "x")) == "v\n"
        ok(cli("set", "x", "--replace", "--field", "c=3"))
        meta = json.loads(ok(cli("show", "x", "--json")))
        assert meta["fields"] == {"c": "3"} and meta["tags"] == [] and not meta["has_value"]

    def test_create_and_update_modes(self, cli):
        assert cli("set", "x", "--update", "--field", "a=1").returncode == 5
        ok(cli("set", "x", "--create", "--field", "a=1"))
        assert cli("set", "x", "--create", "--field", "a=1").returncode == 1
        ok(cli("set", "x", "--update", "--field", "a=2"))

    def test_prompt_on_a_terminal_does_not_echo(self, unlocked_agent, credd_env, run_credd):
        code, shown = run_on_pty(["set", "x", "--prompt"], credd_env, [SENTINEL, SENTINEL])
        assert code == 0 and SENTINEL not in shown
        assert ok(run_credd("get", "x")) == SENTINEL + "\n"

    def test_value_stdin_on_a_terminal_prompts_without_echo(self, unlocked_agent, credd_env,
                                                            run_credd):
        code, shown = run_on_pty(["set", "x", "--value-stdin"], credd_env, [SENTINEL, SENTINEL])
        assert code == 0 and SENTINEL not in shown
        assert ok(run_credd("get", "x")) == SENTINEL + "\n"

    def test_prompt_mismatch_changes_nothing(self, unlocked_agent, credd_env, run_credd):
        code, shown = run_on_pty(["set", "x", "--prompt"], credd_env, ["one", "two"])
        assert code == 2 and "differ" in shown
        assert run_credd("get", "x").returncode == 5


class TestRead:
    def test_get_newline_flag_and_argparse_path_agree(self, cli):
        set_value(cli, "a/b", "whole")        # an entry whose name holds a slash wins
        set_value(cli, "a", "v", "--field", "b=field")
        assert ok(cli("get", "a/b")) == "whole\n"
        assert ok(cli("get", "-n", "a")) == "v"
        assert ok(cli("get", "--", "a/b")) == "whole\n"   # argparse path, same rule
        ok(cli("rm", "a/b"))
        assert ok(cli("get", "a/b")) == "field\n"

    def test_show_hides_secrets_unless_reveal(self, cli):
        set_value(cli, "x", SENTINEL, "--field", "user=u")
        text = ok(cli("show", "x"))
        assert SENTINEL not in text and "hidden" in text and "user" in text
        assert SENTINEL not in ok(cli("show", "x", "--json"))
        assert SENTINEL in ok(cli("show", "x", "--reveal"))
        revealed = json.loads(ok(cli("show", "x", "--reveal", "--json")))
        assert revealed["value"] == SENTINEL and revealed["entry"]["name"] == "x"

    def test_ls_patterns_filters_and_json(self, cli):
        set_value(cli, "aws/prod", "1", "--service", "aws", "--tag", "prod")
        set_value(cli, "aws/dev", "2", "--service", "aws", "--type", "password")
        set_value(cli, "github", "3")
        def names(*args):
            return [e["name"] for e in json.loads(ok(cli("ls", "--json", *args)))]

        assert names() == ["aws/dev", "aws/prod", "github"]
        assert names("aws/*") == ["aws/dev", "aws/prod"]
        assert names("*/d?v") == ["aws/dev"]
        assert names("hub") == ["github"]                  # substring
        assert names("--service", "aws") == ["aws/dev", "aws/prod"]
        assert names("--type", "password") == ["aws/dev"]
        assert names("--tag", "prod") == ["aws/prod"]
        table = ok(cli("ls")).splitlines()
        assert table[0].split() == ["NAME", "KIND", "SERVICE", "TAGS", "UPDATED", "STATE"]
        assert len(table) == 4

    def test_due_entries(self, cli):
        set_value(cli, "old", "1", "--rotate-after", "1s")
        set_value(cli, "gone", "2", "--expires", "2001-01-01")
        set_value(cli, "fresh", "3", "--rotate-after", "90d")
        set_value(cli, "soon", "4", "--expires", str(date.today() + timedelta(days=3)))
        time.sleep(1.2)
        due = json.loads(ok(cli("ls", "--due", "--json")))
        assert sorted(e["name"] for e in due) == ["gone", "old"]
        rows = [line.split() for line in ok(cli("ls", "--due")).splitlines()[1:]]
        reasons = {row[0]: row[-1] for row in rows}
        assert reasons == {"gone": "expired", "old": "rotate"}
        rows = [line.split() for line in ok(cli("ls", "soon")).splitlines()[1:]]
        assert rows[0][-1] == "expiring"                      # shown, but not due yet
        assert "state:   expired (valid through 2001-01-01)" in ok(cli("show", "gone"))
        assert "rotation due since" in ok(cli("show", "old"))


class TestChange:
    def test_rm_trash_undelete_purge(self, cli):
        set_value(cli, "x", "v")
        assert "credd undelete x" in ok(cli("rm", "x"))
        assert [e["name"] for e in json.loads(ok(cli("trash", "--json")))] == ["x"]
        ok(cli("undelete", "x"))
        assert ok(cli("get", "x")) == "v\n"
        ok(cli("rm", "x"))
        done = cli("purge", "x")          # no terminal, no --yes: refuse, keep it
        assert done.returncode == 2 and "--yes" in done.stderr
        ok(cli("purge", "x", "--yes"))
        assert json.loads(ok(cli("trash", "--json"))) == []

    def test_mv_history_restore(self, cli):
        set_value(cli, "old", "v1")
        set_value(cli, "old", "v2")
        ok(cli("mv", "old", "new"))
        history = json.loads(ok(cli("history", "new", "--json")))
        assert history["current"] == 2 and [v["version"] for v in history["versions"]] == [1]
        assert "VERSION" in ok(cli("history", "new"))
        ok(cli("restore", "new", "1"))
        assert ok(cli("get", "new")) == "v1\n"


class TestVault:
    def test_init_unlock_with_recovery_key(self, agent, run_credd):
        done = run_credd("init", "--passphrase-stdin", "--kdf-memory", "19MiB",
                         "--kdf-iterations", "2", "--kdf-lanes", "1", input=TEST_PASSPHRASE)
        recovery = ok(done).strip()
        assert recovery and "shown only this once" in done.stderr
        ok(run_credd("lock"))
        ok(run_credd("unlock", "--recovery-stdin", input=recovery))
        assert run_credd("status").returncode == 0

    def test_init_prompts_twice_on_a_terminal(self, agent, credd_env):
        code, shown = run_on_pty(["init", "--kdf-memory", "19M", "--kdf-iterations", "2",
                                  "--kdf-lanes", "1"], credd_env, [TEST_PASSPHRASE] * 2)
        assert code == 0 and TEST_PASSPHRASE not in shown and "Recovery key" in shown

    def test_unlock_without_terminal_or_flag_fails_fast(self, cli):
        ok(cli("lock"))
        started = time.monotonic()
        done = cli("unlock", input="")
        assert done.returncode == 2 and "--passphrase-stdin" in done.stderr
        assert time.monotonic() - started < 5
        assert cli("status").returncode == 3   # still locked

    def test_unlock_prompt_on_a_terminal(self, cli, credd_env):
        ok(cli("lock"))
        code, shown = run_on_pty(["unlock"], credd_env, [TEST_PASSPHRASE])
        assert code == 0 and TEST_PASSPHRASE not in shown
        assert cli("status").returncode == 0

    def test_unlock_durations_reach_the_agent(self, cli):
        ok(cli("lock"))
        ok(cli("unlock", "--passphrase-stdin", "--timeout", "90s", "--max-lifetime", "2h",
               input=TEST_PASSPHRASE))
        status = json.loads(ok(cli("status", "--json")))
        assert (status["idle_timeout"], status["max_lifetime"]) == (90, 7200)
        assert 0 < status["idle_left"] <= 90 and 0 < status["lifetime_left"] <= 7200

    def test_passwd(self, cli):
        ok(cli("passwd", "--passphrase-stdin", input=f"{TEST_PASSPHRASE}\nanother passphrase\n"))
        ok(cli("lock"))
        assert cli("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE).returncode == 6
        ok(cli("unlock", "--passphrase-stdin", input="another passphrase"))

    def test_check_and_rekey(self, cli):
        set_value(cli, "x", SENTINEL)
        assert "ok" in ok(cli("check"))
        assert json.loads(ok(cli("check", "--json")))["problems"] == []
        done = cli("rekey", "--passphrase-stdin", input=TEST_PASSPHRASE)
        recovery = ok(done).strip()
        assert "re-encrypted 1 entry" in done.stderr and "recovery key" in done.stderr.lower()
        assert ok(cli("get", "x")) == SENTINEL + "\n"
        ok(cli("lock"))
        ok(cli("unlock", "--recovery-stdin", input=recovery))   # the new key opens it


class TestStatus:
    def test_exit_code_follows_the_state(self, agent, run_credd):
        assert run_credd("status").returncode == 5
        with agent.client() as c:
            c.init(TEST_PASSPHRASE, **FAST_KDF)
            c.lock()
        assert run_credd("status").returncode == 3
        ok(run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE))
        assert "state:    unlocked" in ok(run_credd("status"))

    def test_fast_and_argparse_paths_print_the_same(self, cli, monkeypatch, capsys):
        from credd.cli import full_main, main
        for argv in (["status", "--json"], ["status"]):
            assert main(argv) == 0
            fast = capsys.readouterr().out
            assert full_main(argv) == 0
            full = capsys.readouterr().out
            if argv[-1] == "--json":
                fast_doc, full_doc = json.loads(fast), json.loads(full)
                for moving in ("idle_left", "lifetime_left"):
                    assert abs(fast_doc.pop(moving) - full_doc.pop(moving)) < 5
                assert fast_doc == full_doc
            else:
                assert fast.splitlines()[:4] == full.splitlines()[:4]


class TestColour:
    def test_errors_are_red_on_a_terminal_unless_no_color(self, unlocked_agent, credd_env):
        env = {k: v for k, v in credd_env.items() if k != "NO_COLOR"}
        env["TERM"] = "xterm"
        code, shown = run_on_pty(["get", "missing"], env, [])
        assert code == 5 and "\033[31mcredd: " in shown
        code, shown = run_on_pty(["get", "missing"], {**env, "NO_COLOR": "1"}, [])
        assert code == 5 and "\033[" not in shown and "credd: " in shown

    def test_table_header_is_bold_only_with_colour(self, cli, credd_env):
        set_value(cli, "x", "v")
        env = {k: v for k, v in credd_env.items() if k != "NO_COLOR"}
        env["TERM"] = "xterm"
        assert "\033[1mNAME" in run_on_pty(["ls"], env, [])[1]
        assert "\033[" not in run_on_pty(["ls"], {**env, "NO_COLOR": "1"}, [])[1]


class TestGenerate:
    def test_length_alphabet_and_words(self, run_credd):
        assert len(ok(run_credd("generate")).strip()) == 24
        plain = ok(run_credd("generate", "64", "--no-symbols")).strip()
        assert len(plain) == 64 and plain.isalnum()
        words = ok(run_credd("generate", "--words")).strip().split("-")
        assert len(words) == 5 and all(len(w) == 6 and w.isalpha() for w in words)
        assert run_credd("generate", "4").returncode == 2
