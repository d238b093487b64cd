"""credd.cli.output and credd.cli.console: countdowns, colour, tables, prompts, error
hints and the error boundary (durations and dates are credd.rules: tests/test_rules.py)."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest

from credd import errors
from credd.cli import console, output
from credd.protocol import Field


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (42, "42s"), (900, "15m"),
                                          (3900, "1h 5m"), (28800, "8h"), (273600, "3d 4h")])
def test_format_duration(seconds, text):
    assert output.format_duration(seconds) == text


class TestColour:
    def test_no_color_wins_even_on_a_terminal(self, monkeypatch):
        monkeypatch.setenv("NO_COLOR", "1")
        assert not console.use_color(Tty())

    def test_terminal_without_no_color_gets_colour(self, monkeypatch):
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        assert console.use_color(Tty())
        assert not console.use_color(io.StringIO())  # a pipe never does
        monkeypatch.setenv("TERM", "dumb")
        assert not console.use_color(Tty())

    def test_errors_are_red_only_with_colour(self, monkeypatch, capsys):
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        monkeypatch.setattr(sys, "stderr", Tty())
        console.report_error(errors.LockedError("the vault is locked"))
        assert "\033[31m" in sys.stderr.getvalue()
        monkeypatch.setenv("NO_COLOR", "1")
        monkeypatch.setattr(sys, "stderr", Tty())
        console.report_error(errors.LockedError("the vault is locked"))
        assert "\033[" not in sys.stderr.getvalue()


def test_table_aligns_columns(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.table([["a", "long value"], ["bbbb", ""]], ["NAME", "X"]) == \
        "NAME  X\na     long value\nbbbb"


class TestHints:
    @pytest.mark.parametrize("exc,hint", [
        (errors.LockedError("locked"), "credd unlock"),
        (errors.NoVault("no vault"), "credd init"),
        (errors.NotFound("no entry"), "credd ls"),
        (errors.AgentUnavailable("gone"), "credd serve"),
        (errors.VersionMismatch("old"), "credd stop"),
        (errors.IntegrityError("bad tag"), "credd check"),
        (errors.RateLimited("slow down", retry_after=7), "wait 7s"),
        (errors.InternalError("oops"), "report"),
    ])
    def test_every_error_says_what_to_do_next(self, exc, hint):
        assert hint in exc.next_step()

    def test_a_message_with_its_own_next_step_gets_no_second_hint(self):
        assert errors.LockedError("locked: run `credd unlock`").next_step() == ""


class TestBoundary:
    def test_credd_error_becomes_its_exit_code(self, capsys):
        def fail(ns):
            raise errors.NotFound("no entry 'x'")
        assert console.run_command(fail, None) == 5
        assert "credd: no entry 'x'" in capsys.readouterr().err

    def test_keyboard_interrupt_is_130(self, capsys):
        def interrupted(ns):
            raise KeyboardInterrupt
        assert console.run_command(interrupted, None) == 130

    def test_none_is_success(self):
        assert console.run_command(lambda ns: None, None) == 0

    def test_broken_pipe_is_quiet(self, credd_env, unlocked_agent):
        with unlocked_agent.client() as c:
            for i in range(200):
                c.set(f"entry-{i:03d}", value="v", fields=[Field(name="n", value="x" * 2000,
                                                                 secret=False)])
        # `credd ls --json | head -1` (~400 KiB, more than a pipe holds): the reader
        # leaves early; no traceback, exit 141.
        proc = subprocess.Popen([sys.executable, "-m", "credd", "ls", "--json"], env=credd_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(10) == 141
        assert "Traceback" not in err and "Broken pipe" not in err


class TestReadSecret:
    def test_a_value_from_stdin_drops_one_trailing_newline_only(self, monkeypatch):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"line1\nline2\n\n")))
        assert output.read_secret("x", from_stdin=True, whole=True) == "line1\nline2\n"

    @pytest.mark.parametrize("data,line", [(b"pw\npw\n", "pw"), (b"pw\r\nrest", "pw"),
                                           (b"no newline", "no newline")])
    def test_a_passphrase_from_stdin_is_its_first_line(self, monkeypatch, data, line):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert output.read_secret("x", from_stdin=True) == line

    def test_a_line_longer_than_any_passphrase_is_refused(self, monkeypatch):
        data = b"p" * (output.LINE_MAX + 1) + b"\n"
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        with pytest.raises(errors.BadRequest, match="longer than"):
            output.read_secret("x", from_stdin=True)

    def test_binary_stdin_is_a_clear_error(self, monkeypatch):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe")))
        with pytest.raises(errors.BadRequest, match="UTF-8"):
            output.read_secret("x", from_stdin=True)

    def test_empty_stdin_is_refused(self, monkeypatch):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
        with pytest.raises(errors.BadRequest, match="empty"):
            output.read_secret("x", from_stdin=True)

    def test_no_terminal_fails_at_once(self, monkeypatch):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
        started = time.monotonic()
        with pytest.raises(errors.BadRequest, match="--passphrase-stdin"):
            output.read_secret("passphrase: ", from_stdin=False)
        assert time.monotonic() - started < 0.5


def test_progress_draws_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Tty())
    with output.progress(10, "work") as bar:
        bar(5)
    assert "5/10" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with output.progress(10, "work") as bar:
        bar(5)
    assert sys.stderr.getvalue() == ""
