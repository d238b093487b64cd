"""Every documented exit code of `credd`, produced for real, with a next-step hint."""

from __future__ import annotations

import sqlite3

import pytest

from tests.cli.conftest import assert_hint, needs_root
from tests.conftest import SENTINEL, TEST_PASSPHRASE


def test_0_ok(cli):
    assert cli("set", "x", "--value-stdin", input=SENTINEL).returncode == 0
    done = cli("get", "x")
    assert (done.returncode, done.stdout) == (0, SENTINEL + "\n")


def test_1_exists(cli):
    cli("set", "x", "--value-stdin", input="v", check=True)
    done = cli("set", "x", "--create", "--value-stdin", input="w")
    assert done.returncode == 1
    assert_hint(done, "credd set")


@pytest.mark.parametrize("args", [["get"], ["unlock", "--timeout", "soon"],
                                  ["set", "x", "--expires", "someday"]])
def test_2_usage(cli, args):
    done = cli(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_2_unknown_command_names_the_nearest_one(cli):
    done = cli("gte", "x")
    assert done.returncode == 2
    assert "unknown command 'gte'; did you mean `credd get`?" in done.stderr
    assert "choose from" not in done.stderr and "Traceback" not in done.stderr
    far = cli("frobnicate")
    assert far.returncode == 2 and "did you mean" not in far.stderr
    assert "`credd --help`" in far.stderr


def test_2_secret_on_the_command_line_is_refused(cli):
    done = cli("set", "x", "--secret-field", f"password={SENTINEL}")
    assert done.returncode == 2
    assert "command line" in done.stderr and "--secret-field password=@FILE" in done.stderr


@pytest.mark.parametrize("args", [["get", "x"], ["ls"], ["show", "x"]])
def test_3_locked(cli, args):
    cli("lock", check=True)
    done = cli(*args)
    assert done.returncode == 3
    assert_hint(done, "credd unlock")


@pytest.mark.parametrize("args", [["get", "x"], ["status"], ["ls"], ["lock"]])
def test_4_no_agent(run_credd, args):
    done = run_credd(*args)
    assert done.returncode == 4
    assert_hint(done, "credd serve")


@pytest.mark.parametrize("args", [["get", "nope"], ["get", "nope/field"], ["show", "nope"],
                                  ["rm", "nope"], ["history", "nope"]])
def test_5_not_found(cli, args):
    done = cli(*args)
    assert done.returncode == 5
    assert_hint(done, "credd ls")


def test_5_no_vault(agent, run_credd):
    done = run_credd("get", "x")
    assert done.returncode == 5
    assert_hint(done, "credd init")


def test_6_bad_passphrase(cli):
    cli("lock", check=True)
    done = cli("unlock", "--passphrase-stdin", input="not " + TEST_PASSPHRASE)
    assert done.returncode == 6
    assert_hint(done, "try again")


@needs_root
def test_7_denied(foreign_socket, run_credd):
    path, received = foreign_socket
    done = run_credd("get", "x", env={"CREDD_SOCK": path})
    assert done.returncode == 7
    assert "uid 65534" in done.stderr
    assert received() == 0


def test_8_integrity(cli, unlocked_agent, make_agent):
    cli("set", "x", "--value-stdin", input=SENTINEL, check=True)
    unlocked_agent.stop()
    with sqlite3.connect(unlocked_agent.vault) as db:  # flip one bit of the sealed value
        (blob,) = db.execute("SELECT secret FROM entries").fetchone()
        db.execute("UPDATE entries SET secret = ?", (bytes([blob[0] ^ 1]) + blob[1:],))
    agent = make_agent()
    with agent.client() as c:
        c.unlock(TEST_PASSPHRASE)
    done = cli("get", "x")
    assert done.returncode == 8
    assert SENTINEL not in done.stdout + done.stderr
    assert_hint(done, "credd check")
