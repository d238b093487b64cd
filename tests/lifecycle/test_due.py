"""`credd due`: every reason, by the Python client and the CLI, and never a value."""

from __future__ import annotations

import json
import time

from credd.protocol import Field
from credd.rules import DAY, parse_date
from tests.conftest import SENTINEL, TEST_PASSPHRASE


def seed(c) -> float:
    """One entry per reason; returns the time they were written."""
    c.set("gone", value="expired-token-value", expires=parse_date("2001-01-01"))
    c.set("soon", value="soon-token-value", expires=time.time() + 3 * DAY)
    c.set("old", value="an-old-value-rotated-daily", rotate_after=1.0)
    c.set("pw/short", kind="password", value="hunter2!")
    c.set("pw/long", kind="password", value="x" * 24)
    c.set("ci/token", kind="api_key", value=SENTINEL)
    c.set("db", fields=[Field(name="password", value=SENTINEL)])
    c.set("staged", value="the-current-value-here")
    c.rotate("staged", "the-next-value-here")
    c.set("checked", value="a-value-with-a-check")
    c.record_verification("checked", "failed", exit_status=22, seconds=0.2)
    c.set("fine", value="nothing-wrong-here")
    return time.time()


def reasons_of(report) -> dict[str, list[str]]:
    return {e.name: [r.reason for r in e.reasons] for e in report.entries}


def test_every_reason_is_named(client):
    seed(client)
    time.sleep(1.1)  # `old` rotates every second
    report = client.due(unused=0.0)
    assert reasons_of(report) == {
        "gone": ["expired"], "soon": ["expiring"], "old": ["rotation_due"],
        "staged": ["pending"], "checked": ["check_failed"],
        "ci/token": ["duplicate"], "db": ["duplicate"], "pw/short": ["short"]}
    by_name = {e.name: e.reasons[0] for e in report.entries}
    assert by_name["ci/token"].names == ["db/password"] and by_name["ci/token"].field == ""
    assert by_name["db"].names == ["ci/token"] and by_name["db"].field == "password"
    assert by_name["pw/short"].length == 8
    assert by_name["checked"].note == "failed, exit 22"
    assert report.checked == report.values == 10


def test_unused_goes_by_the_change_time_until_a_use_is_recorded(client):
    client.set("idle", value="an-idle-value-here")
    written = client.describe("idle").value_changed
    report = client.due(now=written + 181 * DAY, values=False, within=0.0)
    (reason,) = report.entries[0].reasons
    assert (reason.reason, reason.when, reason.note) == ("unused", written, "changed")
    assert client.due(now=written + 179 * DAY, values=False, within=0.0).entries == []
    time.sleep(0.05)
    client.get("idle")  # a use: the agent's last-used time takes over from the change
    used = client.describe("idle").last_used
    assert used is not None and used > written
    (reason,) = client.due(now=used + 181 * DAY, values=False, within=0.0).entries[0].reasons
    assert (reason.reason, reason.when, reason.note) == ("unused", used, "")


def test_without_values_nothing_is_decrypted(client):
    seed(client)
    report = client.due(values=False, unused=0.0)
    assert report.values == 0
    assert not {"duplicate", "short"} & {r for rs in reasons_of(report).values() for r in rs}


def test_the_cli_report_text_json_and_exit_codes(client, run_credd):
    seed(client)
    done = run_credd("due", "--unused", "never")
    assert done.returncode == 1 and SENTINEL not in done.stdout + done.stderr
    rows = done.stdout.splitlines()
    assert rows[0].split() == ["NAME", "REASON", "DETAIL"]
    text = done.stdout
    assert "expired (valid through 2001-01-01)" in text
    assert "value same as db/password" in text and "field password same as ci/token" in text
    assert "8 characters (credd generates 24)" in text
    assert "a new value pending since" in text and "check failed" in text
    assert "need attention" in done.stderr and "values compared" in done.stderr
    data = json.loads(run_credd("due", "--json", "--unused", "never").stdout)
    assert SENTINEL not in json.dumps(data)
    entry = next(e for e in data["entries"] if e["name"] == "pw/short")
    assert entry["reasons"] == [{"reason": "short", "when": None, "period": None, "field": "",
                                 "names": [], "length": 8, "note": "",
                                 "detail": "8 characters (credd generates 24)"}]
    for name in {e["name"] for e in data["entries"]} | {"old"}:
        client.purge(client.delete(name).name)
    done = run_credd("due")
    assert done.returncode == 0 and "nothing due among 2 entries" in done.stderr


def test_the_within_window(client, run_credd):
    client.set("in-20-days", value="a-value-expiring-later", expires=time.time() + 20 * DAY)
    assert run_credd("due", "--unused", "never").returncode == 0
    done = run_credd("due", "--within", "30d", "--unused", "never")
    assert done.returncode == 1 and "in-20-days" in done.stdout


def test_unlock_says_when_something_is_due(unlocked_agent, run_credd):
    with unlocked_agent.client() as c:
        c.set("gone", value="expired-token-value", expires=parse_date("2001-01-01"))
        c.set("short", kind="password", value="hunter2!")  # a value finding: not counted
        c.lock()
    done = run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1 entry due: credd due"
    with unlocked_agent.client() as c:
        c.purge(c.delete("gone").name)
        c.lock()
    done = run_credd("unlock", "--passphrase-stdin", input=TEST_PASSPHRASE)
    assert "due" not in done.stdout


def test_a_report_on_a_locked_vault_is_refused(unlocked_agent, run_credd):
    with unlocked_agent.client() as c:
        c.lock()
    assert run_credd("due").returncode == 3
