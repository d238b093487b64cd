"""Rotation periods: the defaults by kind, config.toml's [rotation], per-entry overrides,
`never`, and the clock that restarts only when the value changes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from credd import config, paths, protocol, rules
from credd.errors import BadRequest
from credd.protocol import EntryMeta
from credd.rules import DAY, NEVER

NOW = 1_800_000_000.0


def meta(**kwargs) -> EntryMeta:
    return EntryMeta(name="e", updated=NOW - DAY, value_changed=NOW - DAY, **kwargs)


class TestRules:
    @pytest.mark.parametrize("kind, period", [
        ("password", 90 * DAY), ("api_key", 180 * DAY), ("access_token", 180 * DAY),
        ("certificate", None), ("ssh_key", None), ("secret", None), ("note", None)])
    def test_default_periods_by_kind(self, kind, period):
        assert rules.rotation_period(meta(kind=kind)) == period

    def test_an_entry_s_own_period_wins_and_never_opts_out(self):
        assert rules.rotation_period(meta(kind="password", rotate_after=7 * DAY)) == 7 * DAY
        assert rules.rotation_period(meta(kind="password", rotate_after=NEVER)) is None
        assert rules.rotation_period(meta(kind="secret", rotate_after=DAY)) == DAY
        periods = {"secret": 2 * DAY}
        assert rules.rotation_period(meta(kind="secret"), periods) == 2 * DAY
        assert rules.rotation_period(meta(kind="password"), periods) is None

    def test_the_clock_runs_from_the_value_s_change(self):
        entry = EntryMeta(name="e", kind="password", updated=NOW, value_changed=NOW - 91 * DAY)
        assert rules.entry_state(entry, NOW) == rules.ROTATION_DUE  # a tag edit: still due
        old = EntryMeta(name="e", kind="password", updated=NOW - 91 * DAY)  # before the field
        assert rules.entry_state(old, NOW) == rules.ROTATION_DUE
        assert rules.entry_state(old, NOW, {}) == rules.OK

    @pytest.mark.parametrize("text, seconds", [
        ("90d", 90 * DAY), ("1y", 365 * DAY), ("never", NEVER), ("Never", NEVER), ("off", NEVER),
        ("default", 0.0)])
    def test_periods_parse(self, text, seconds):
        assert rules.parse_period(text) == seconds

    def test_a_bad_period_names_the_forms(self):
        with pytest.raises(BadRequest, match="never; or default"):
            rules.parse_period("soon")

    def test_texts(self):
        assert rules.format_period(NEVER) == "never" and rules.format_period(DAY) == "1d"
        text = rules.rotation_text(meta(kind="password"))
        assert text.startswith("every 90d (the password default), next ")
        assert rules.rotation_text(meta(kind="password", rotate_after=NEVER)) == "never"
        assert rules.rotation_text(meta(kind="secret")) == ""

    def test_the_wire_defaults_are_the_rules(self):
        """protocol.py imports nothing of credd: its Due defaults are written twice."""
        assert protocol.Due().within == rules.DUE_WITHIN
        assert protocol.Due().unused == rules.UNUSED_AFTER


class TestConfigFile:
    def write(self, text: str) -> Path:
        path = Path(paths.config_path())
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)
        return path

    def test_the_rotation_table_changes_the_defaults(self):
        path = self.write('[rotation]\npassword = "30d"\napi_key = "never"\nsecret = "1y"\n'
                          '[mounts.x]\nbackend = "env"\nenv_prefix = "X_"\n')
        periods = config.rotation(config.read(str(path)), str(path))
        assert periods == {"password": 30 * DAY, "access_token": 180 * DAY, "secret": 365 * DAY}

    @pytest.mark.parametrize("text, why", [
        ('[rotation]\npassword = "soon"\n', "[rotation] password: invalid rotation period"),
        ('[rotation]\nPassword = "1d"\n', "is not an entry type"),
        ("[rotation]\npassword = 90\n", 'must be text such as "90d"'),
        ("rotation = 3\n", "rotation must be a table"),
    ])
    def test_a_bad_table_says_where_and_why(self, text, why):
        path = self.write(text)
        with pytest.raises(BadRequest, match=None) as raised:
            config.rotation(config.read(str(path)), str(path))
        assert raised.value.message.startswith(str(path)) and why in raised.value.message

    def test_watched_keeps_the_last_good_value(self):
        path = self.write('[rotation]\npassword = "30d"\n')
        watched = config.Watched(str(path), config.rotation, {}, "rotation periods")
        assert watched.current()["password"] == 30 * DAY and watched.error == ""
        self.write('[rotation]\npassword = "thirty"\n')
        assert watched.current()["password"] == 30 * DAY
        assert "invalid rotation period" in watched.error
        self.write('[rotation]\npassword = "7d"\n')
        assert watched.current()["password"] == 7 * DAY and watched.error == ""


class TestAgent:
    def test_default_periods_make_entries_due(self, client):
        for kind in ("password", "api_key", "access_token", "certificate", "secret"):
            client.set(kind, kind=kind, value=f"value of {kind}")
        now = time.time()

        def due_at(days: float) -> set[str]:
            report = client.due(now=now + days * DAY, unused=0.0, within=0.0, values=False)
            return {e.name for e in report.entries}

        assert due_at(89) == set()
        assert due_at(91) == {"password"}
        assert due_at(181) == {"password", "api_key", "access_token"}
        reason = client.due(now=now + 91 * DAY, unused=0.0, values=False).entries[0].reasons[0]
        assert (reason.reason, reason.period) == ("rotation_due", 90 * DAY)

    def test_overrides_never_and_back_to_the_default(self, client, run_credd):
        client.set("pw", kind="password", value="a-long-enough-password-value")
        assert run_credd("set", "pw", "--rotate-after", "7d").returncode == 0
        assert client.describe("pw").rotate_after == 7 * DAY
        assert run_credd("set", "pw", "--rotate-after", "never").returncode == 0
        assert client.describe("pw").rotate_after == NEVER
        assert client.due(now=time.time() + 10 * 365 * DAY, unused=0.0).entries == []
        assert "\nrotate:  never\n" in run_credd("show", "pw").stdout
        assert run_credd("set", "pw", "--rotate-after", "default").returncode == 0
        assert client.describe("pw").rotate_after is None
        assert "every 90d (the password default)" in run_credd("show", "pw").stdout

    def test_the_clock_restarts_only_when_the_value_changes(self, client):
        first = client.set("pw", kind="password", value="first-value-of-this-password")
        time.sleep(0.05)
        tagged = client.set("pw", tags=["ops"], merge=True)
        assert tagged.updated > first.updated and tagged.value_changed == first.value_changed
        same = client.set("pw", kind="password", value="first-value-of-this-password")
        assert same.value_changed == first.value_changed  # rewritten, but not changed
        changed = client.set("pw", value="second-value-of-this-password", merge=True)
        assert changed.value_changed == changed.updated > first.value_changed
        restored = client.restore("pw", 1)
        assert restored.value_changed == restored.updated  # the value changed back

    def test_config_file_periods_apply_without_a_restart(self, client, run_credd):
        client.set("pw", kind="password", value="a-long-enough-password-value")
        client.set("tok", kind="access_token", value="a-long-enough-token-value")
        assert [e.name for e in client.list(due=True)] == []
        TestConfigFile().write('[rotation]\npassword = "1s"\n')
        time.sleep(1.2)
        assert client.policy().rotation["password"] == 1.0
        assert [e.name for e in client.list(due=True)] == ["pw"]
        listed = json.loads(run_credd("ls", "--due", "--json").stdout)
        assert [e["name"] for e in listed] == ["pw"]
        rows = {row.split()[0]: row.split()[-1] for row in run_credd("ls").stdout.splitlines()[1:]}
        assert rows["pw"] == "rotate" and rows["tok"] != "rotate"  # the agent's periods
        TestConfigFile().write('[rotation]\npassword = "one second"\n')
        policy = client.policy()
        assert policy.rotation["password"] == 1.0 and "invalid rotation period" in \
            policy.config_error
        done = run_credd("due", "--no-values", "--unused", "never")
        assert "the last good periods are in force" in done.stderr
