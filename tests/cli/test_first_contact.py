"""Issue 12, first contact: what a new user types first, through the real CLI and agent.

`init` checks before it prompts and starts an agent; every `--passphrase-stdin` reads one
line; a short passphrase is refused by the CLI and by the agent alike; `unlock` of an
unlocked vault is a no-op; a rolled-back vault says so at unlock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from credd.errors import BadRequest
from tests.cli.conftest import ok, run_on_pty
from tests.conftest import FAST_KDF, TEST_PASSPHRASE

KDF_ARGS = ["--kdf-memory", "19MiB", "--kdf-iterations", "2", "--kdf-lanes", "1"]


@pytest.fixture
def stop_started(run_credd):
    """Stops the agent a command started on its own (by its pid, from `credd status`)."""
    yield
    status = run_credd("status", "--json")
    if status.returncode in (0, 3, 5):
        os.kill(json.loads(status.stdout)["pid"], signal.SIGTERM)


class TestInit:
    def test_an_existing_vault_is_found_before_any_prompt(self, unlocked_agent, credd_env):
        code, shown = run_on_pty(["init", *KDF_ARGS], credd_env, [TEST_PASSPHRASE] * 2)
        assert code == 1, shown
        assert "passphrase" not in shown.lower(), shown  # nothing was asked
        assert "already exists" in shown and "`credd unlock`" in shown
        assert "credd set" not in shown  # the hint of a taken entry name, not of a vault

    def test_init_starts_an_agent_when_none_answers(self, run_credd, stop_started):
        assert run_credd("status").returncode == 4
        done = run_credd("init", "--passphrase-stdin", *KDF_ARGS, input=TEST_PASSPHRASE + "\n")
        recovery = ok(done).strip()
        assert recovery and "started an agent" in done.stderr and "credd stop" in done.stderr
        assert json.loads(ok(run_credd("status", "--json")))["state"] == "unlocked"

    def test_the_prompt_says_the_minimum_and_refuses_a_short_one_before_again(self, agent,
                                                                              credd_env,
                                                                              run_credd):
        code, shown = run_on_pty(["init", *KDF_ARGS], credd_env, ["short", "short"])
        assert "at least 8 characters" in shown and "again:" not in shown, shown
        assert code == 2 and "this one has 5" in shown
        assert run_credd("status").returncode == 5  # no vault was made

    def test_a_short_passphrase_only_when_asked_for_by_name(self, agent, run_credd):
        done = run_credd("init", "--passphrase-stdin", *KDF_ARGS, input="short\n")
        assert done.returncode == 2 and "at least 8 characters" in done.stderr
        assert run_credd("status").returncode == 5
        ok(run_credd("init", "--passphrase-stdin", "--insecure-short-passphrase", *KDF_ARGS,
                     input="short\n"))
        ok(run_credd("lock"))
        ok(run_credd("unlock", "--passphrase-stdin", input="short\n"))

    def test_the_agent_holds_every_client_to_the_same_rule(self, agent):
        with agent.client() as c:
            with pytest.raises(BadRequest, match="at least 8 characters"):
                c.init("1234567", **FAST_KDF)
            assert c.status().state == "no_vault"
            c.init("12345678", **FAST_KDF)
            with pytest.raises(BadRequest, match="at least 8 characters"):
                c.change_passphrase("12345678", "short")
            c.change_passphrase("12345678", "short", allow_short=True)
            c.lock()
            assert c.unlock("short").state == "unlocked"


class TestPassphraseStdin:
    def test_the_first_newline_ends_the_passphrase(self, agent, run_credd):
        ok(run_credd("init", "--passphrase-stdin", *KDF_ARGS,
                     input=f"{TEST_PASSPHRASE}\n{TEST_PASSPHRASE}\n"))
        ok(run_credd("lock"))
        wrong = run_credd("unlock", "--passphrase-stdin",
                          input=f"{TEST_PASSPHRASE}\n{TEST_PASSPHRASE}")
        assert wrong.returncode == 0, wrong.stderr  # the first line, not both
        ok(run_credd("lock"))
        assert run_credd("unlock", "--passphrase-stdin",
                         input=f"{TEST_PASSPHRASE}\r\n").returncode == 0

    def test_passwd_reads_the_old_then_the_new_line(self, unlocked_agent, run_credd):
        done = run_credd("passwd", "--passphrase-stdin", input=f"{TEST_PASSPHRASE}\nshort\n")
        assert done.returncode == 2 and "at least 8 characters" in done.stderr
        ok(run_credd("passwd", "--passphrase-stdin",
                     input=f"{TEST_PASSPHRASE}\nanother passphrase\nignored\n"))
        ok(run_credd("lock"))
        assert run_credd("unlock", "--passphrase-stdin",
                         input="another passphrase\n").returncode == 0

    def test_every_flag_says_the_rule_in_its_help(self, run_credd):
        for command in ("init", "unlock", "passwd"):
            text = " ".join(ok(run_credd(command, "--help")).split())
            rule = "old passphrase on the first, the new one on the second" if command == \
                "passwd" else "its first line: the first newline ends it"
            assert rule in text, (command, text)


class TestUnlockWhenUnlocked:
    def test_is_a_noop_that_says_so_without_a_prompt_or_a_try(self, unlocked_agent, credd_env,
                                                             run_credd):
        code, shown = run_on_pty(["unlock"], credd_env, ["never typed"])
        assert code == 0 and "already unlocked" in shown, shown
        assert "passphrase" not in shown.split("already")[0].lower()  # no prompt came first
        # a wrong passphrase on stdin is not even sent: nothing was tried, nothing throttled
        done = run_credd("unlock", "--passphrase-stdin", input="wrong passphrase\n")
        assert done.returncode == 0 and "already unlocked" in done.stdout
        audit = json.loads(ok(run_credd("audit", "--json")))
        assert [r["outcome"] for r in audit if r["op"] == "unlock"] == ["ok"]  # the fixture's

    def test_force_or_a_new_window_checks_the_passphrase_again(self, unlocked_agent, run_credd):
        wrong = run_credd("unlock", "--force", "--passphrase-stdin", input="wrong passphrase\n")
        assert wrong.returncode == 6
        ok(run_credd("unlock", "--timeout", "2h", "--passphrase-stdin",
                     input=TEST_PASSPHRASE + "\n"))
        assert json.loads(ok(run_credd("status", "--json")))["idle_timeout"] == 7200


class TestRollback:
    def test_a_rolled_back_vault_says_so_at_unlock_and_a_restore_on_purpose_works(
            self, make_agent, run_credd, tmp_path):
        agent = make_agent()
        agent.init_and_unlock()
        ok(run_credd("set", "x", "--value-stdin", input="old value"))
        agent.stop()
        files = [s for s in ("", "-wal", "-shm") if os.path.exists(agent.vault + s)]
        for suffix in files:
            shutil.copy(agent.vault + suffix, tmp_path / f"copy{suffix}")
        agent = make_agent()
        ok(run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE))
        ok(run_credd("set", "x", "--value-stdin", input="new value"))
        agent.stop()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(agent.vault + suffix):
                os.unlink(agent.vault + suffix)
        for suffix in files:
            shutil.copy(tmp_path / f"copy{suffix}", agent.vault + suffix)
        make_agent()

        done = run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE)
        assert done.returncode == 8, done.stderr
        assert "rolled back" in done.stderr and "credd check" in done.stderr
        assert "docs/vault.md" in done.stderr  # where restoring a copy on purpose is told
        status = run_credd("status")
        assert status.returncode == 0 and "damaged:" in status.stdout
        assert json.loads(ok(run_credd("status", "--json")))["damage"]
        assert run_credd("get", "x").returncode == 8
        again = run_credd("unlock")  # already unlocked: still said
        assert again.returncode == 8 and "rolled back" in again.stderr

        # restored on purpose (docs/vault.md): forget the remembered generation, unlock again
        for name in os.listdir(agent.state_dir):
            if name.endswith(".generation"):
                os.unlink(os.path.join(agent.state_dir, name))
        ok(run_credd("lock"))
        ok(run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE))
        assert ok(run_credd("get", "x")) == "old value\n"
        assert json.loads(ok(run_credd("status", "--json")))["damage"] == []
