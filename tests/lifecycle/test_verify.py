"""`credd verify`: checks run in the client, in parallel where safe, with a time limit."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

from credd import verify
from credd.errors import BadRequest
from credd.protocol import EntryMeta
from tests.conftest import SENTINEL

PY = shlex.quote(sys.executable)


def py(code: str, env: str = "") -> str:
    """A check running `code` in Python, with `env` assignments before it."""
    return f"{env} {PY} -c {shlex.quote(code)}".strip()


class TestParse:
    def test_assignments_arguments_and_references(self):
        check = verify.parse_check("TOKEN=credd://gh/token MODE=fast curl -H 'A: credd://x/y' "
                                   "--user {{ credd://db/user }}:{{credd://db/pass}} https://h")
        assert check.env == {"TOKEN": "credd://gh/token", "MODE": "fast"}
        assert check.argv[0] == "curl" and check.refs == [
            "credd://gh/token", "credd://x/y", "credd://db/user", "credd://db/pass"]
        assert check.argv_refs() == ["credd://x/y", "credd://db/user", "credd://db/pass"]

    @pytest.mark.parametrize("text, why", [
        ("", "no command"), ("A=credd://x", "no command"), ("curl 'unclosed", "cannot be split"),
        ("echo credd://", "needs a name")])
    def test_bad_checks_say_why(self, text, why):
        with pytest.raises(BadRequest, match=why):
            verify.parse_check(text)

    def test_the_check_is_the_plain_verify_field(self):
        assert verify.command_of(EntryMeta(name="x", fields={"verify": "true"})) == "true"
        assert verify.command_of(EntryMeta(name="x", secret_fields=("verify",))) is None


class TestRun:
    def test_values_go_where_the_check_says_and_output_is_masked(self):
        check = verify.parse_check(py("import os, sys; print(os.environ['T'], sys.argv[1:])",
                                      "T=credd://a") + " arg=credd://b")
        result = verify.run_check(check, {"credd://a": SENTINEL, "credd://b": "b-value-9f"})
        assert result.outcome == "ok" and result.exit_status == 0
        assert result.output == "<concealed by credd> ['arg=<concealed by credd>']\n"

    def test_a_failure_keeps_the_end_of_its_output(self):
        check = verify.parse_check(py("import sys; print('x' * 10000); print('why'); "
                                      "sys.exit(3)"))
        result = verify.run_check(check, {})
        assert (result.outcome, result.exit_status) == ("failed", 3)
        assert result.output.endswith("why\n") and len(result.output) == verify.KEPT_OUTPUT

    def test_a_check_past_its_time_is_killed_with_its_children(self, tmp_path):
        pid_file = tmp_path / "pid"
        code = (f"import os, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
                f"'import time; time.sleep(60)']); open({str(pid_file)!r}, 'w').write("
                f"str(p.pid)); time.sleep(60)")
        started = time.monotonic()
        result = verify.run_check(verify.parse_check(py(code)), {}, timeout=1.0)
        assert result.outcome == "timeout" and time.monotonic() - started < 10
        grandchild = int(pid_file.read_text())
        for _ in range(50):
            if not Path(f"/proc/{grandchild}").exists() or _zombie(grandchild):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the check's child outlived the time limit")

    def test_a_missing_command_is_an_error_result(self):
        result = verify.run_check(verify.parse_check("/nonexistent/checker"), {})
        assert result.outcome == "error" and "cannot run" in result.output


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def add_check(run_credd, name: str, check: str, *, service: str = "") -> None:
    args = ["--service", service] if service else []
    done = run_credd("set", name, "--verify-cmd", check, *args)
    assert done.returncode == 0, done.stderr


class TestCommand:
    def test_ok_failed_no_check_and_json(self, client, run_credd):
        client.set("good", value="good-value-123")
        client.set("bad", value=SENTINEL)
        client.set("none", value="no-check-here")
        add_check(run_credd, "good", py("print('fine')"))
        add_check(run_credd, "bad", py("import os, sys; print(os.environ['V']); sys.exit(1)",
                                       "V=credd://bad"))
        done = run_credd("verify", "good")
        assert done.returncode == 0 and done.stdout.startswith("ok        good")
        done = run_credd("verify", "good", "bad", "none")
        assert done.returncode == 1 and SENTINEL not in done.stdout + done.stderr
        assert "FAILED    bad  (exit 1" in done.stdout and "  | <concealed by credd>" in done.stdout
        assert "no check  none" in done.stdout
        assert "1 failed, 1 ok, 1 without a check" in done.stderr
        data = json.loads(run_credd("verify", "good", "none", "--json").stdout)
        assert [(d["name"], d["outcome"]) for d in data] == [("good", "ok"), ("none", "no_check")]
        seen = client.inspect("bad")
        assert seen.verification.outcome == "failed" and seen.verification.exit_status == 1
        assert re.search(r"^checked: +failed .*, exit 1 \(", run_credd("show", "bad").stdout,
                         re.M)
        assert "check_failed" in [r.reason for e in client.due().entries for r in e.reasons]

    def test_all_with_a_timeout_and_a_missing_reference(self, client, run_credd):
        for name in ("fast", "slow", "broken"):
            client.set(name, value=f"{name}-value-1234")
        client.set("unchecked", value="nothing to run")
        add_check(run_credd, "fast", py("pass"))
        add_check(run_credd, "slow", py("import time; time.sleep(30)"))
        add_check(run_credd, "broken", "X=credd://does/not/exist true")
        started = time.monotonic()
        done = run_credd("verify", "--all", "--timeout", "1s", "--json")
        assert done.returncode == 1 and time.monotonic() - started < 15
        outcomes = {d["name"]: d["outcome"] for d in json.loads(done.stdout)}
        assert outcomes == {"broken": "error", "fast": "ok", "slow": "timeout"}
        assert client.inspect("slow").verification.outcome == "timeout"
        assert client.inspect("broken").verification.outcome == "error"
        assert client.inspect("unchecked").verification is None

    def test_one_service_s_checks_run_one_at_a_time(self, client, run_credd, tmp_path):
        """Different services overlap (--jobs); the same service's never do."""
        log = tmp_path / "log"
        code = ("import os, sys, time; f = open(sys.argv[1], 'a'); "
                "f.write(f'start {sys.argv[2]} {time.monotonic()}\\n'); f.flush(); "
                "time.sleep(0.6); f.write(f'end {sys.argv[2]} {time.monotonic()}\\n')")
        for name, service in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta")):
            client.set(name, value=f"{name}-value-xyz")
            add_check(run_credd, name, f"{py(code)} {shlex.quote(str(log))} {name}",
                      service=service)
        assert run_credd("verify", "--all", "--jobs", "3").returncode == 0
        spans: dict[str, list[float]] = {}
        for line in log.read_text().splitlines():
            _, name, when = line.split()
            spans.setdefault(name, []).append(float(when))

        def overlap(x: str, y: str) -> bool:
            return spans[x][0] < spans[y][1] and spans[y][0] < spans[x][1]

        assert not overlap("a1", "a2")
        assert overlap("b1", "a1") or overlap("b1", "a2")

    def test_usage(self, client, run_credd):
        assert run_credd("verify").returncode == 2
        assert run_credd("verify", "x", "--all").returncode == 2
        assert run_credd("verify", "missing").returncode == 5
        client.set("x", value="some-value-here")
        assert run_credd("set", "x", "--verify-cmd", "'unclosed").returncode == 2
        add_check(run_credd, "x", py("pass"))
        assert run_credd("set", "x", "--verify-cmd", "").returncode == 0
        assert "verify" not in client.describe("x").fields


def test_the_agent_keeps_results_without_output_or_names(client, unlocked_agent, run_credd):
    client.set("private/name", value=SENTINEL)
    add_check(run_credd, "private/name", py("import os; print(os.environ['V']); exit(2)",
                                            "V=credd://private/name"))
    run_credd("verify", "private/name")
    book = Path(unlocked_agent.state_dir) / "checks.json"
    text = book.read_text()
    assert "private/name" not in text and SENTINEL not in text and "concealed" not in text
    assert json.loads(text) and oct(os.stat(book).st_mode & 0o777) == "0o600"
