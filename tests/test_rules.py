"""credd.rules: kinds, durations, dates and the due state, and that every layer agrees.

The agreement tests run the real `credd` CLI and a real agent (with TZ in
their environment) and drive credtui's edit form with Pilot in-process (with
TZ set and `time.tzset()`), under UTC and under America/Los_Angeles.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from credd import protocol, rules
from credd.cli.output import rfc3339
from credd.errors import BadRequest
from credd.protocol import EntryMeta
from credd.rules import (
    DEFAULT_KIND,
    EXPIRED,
    EXPIRING_SOON,
    EXPIRING_SOON_WINDOW,
    KINDS,
    MAX_TIME,
    OK,
    ROTATION_DUE,
    entry_state,
    explain,
    format_date,
    format_duration,
    parse_date,
    parse_duration,
)
from tests.conftest import local_zone
from tests.test_import_hygiene import loaded_modules, roots
from tests.tui.conftest import make_app, run, running, screen_is, screen_text, wait_until  # noqa: F401 (fixtures)

ZONES = ["UTC", "America/Los_Angeles"]
DAY = 86400


def end_of(day: date, zone: str) -> float:
    """The instant a bare date means, worked out with zoneinfo rather than credd.rules."""
    after = day + timedelta(days=1)
    return datetime(after.year, after.month, after.day, tzinfo=ZoneInfo(zone)).timestamp()


# ---------------------------------------------------------------- durations

@pytest.mark.parametrize("text,seconds", [
    ("1h30m", 5400), ("90d", 90 * DAY), ("12w", 84 * DAY), ("1y", 365 * DAY), ("36h", 129600),
    ("45m", 2700), ("30s", 30), (" 1H30M ", 5400), ("\t2W\n", 14 * DAY), ("1.5h", 5400),
    ("45", 45), ("1y2w3d4h5m6s", 365 * DAY + 17 * DAY + 4 * 3600 + 306), ("0.5s", 0.5),
])
def test_durations_accept_compounds_units_and_case(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "soon", "0s", "0", "h", "15x", "1h30", "-5m",
                                  "1..5h", "m15", "1 h", "1h 30m", "²h", "1e3s", "nan", "inf",
                                  "99999999999y"])
def test_durations_refuse_garbage_naming_the_forms(text):
    with pytest.raises(BadRequest, match=r"use a number and a unit \(s, m, h, d, w, y\).*1h30m"):
        parse_duration(text)


@pytest.mark.parametrize("seconds,text", [
    (90 * DAY, "90d"), (84 * DAY, "12w"), (365 * DAY, "1y"), (129600, "36h"), (5400, "90m"),
    (2700, "45m"), (30, "30s"), (3601, "1h1s"), (10 * DAY, "10d"), (400 * DAY, "400d"),
    (0, "0s"), (0.5, "0.5s"), (90.5, "90.5s"), (3600.25, "1h0.25s"), (5e-05, "0.00005s"),
])
def test_durations_format_to_the_shortest_exact_text(seconds, text):
    assert format_duration(seconds) == text


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=1, max_value=MAX_TIME))
@example(365 * DAY + 1).via("a year and a second")
def test_whole_durations_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=0, max_value=MAX_TIME, exclude_min=True, allow_nan=False))
@example(1e-300).via("a tiny fraction needs no exponent")
def test_any_duration_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


_term = st.tuples(st.integers(min_value=1, max_value=999), st.sampled_from(list(rules.UNITS)))


@settings(max_examples=300, deadline=None)
@given(st.lists(_term, min_size=1, max_size=4))
def test_formatting_is_never_longer_than_what_was_typed(terms):
    typed = "".join(f"{n}{unit}" for n, unit in terms)
    assert len(format_duration(parse_duration(typed))) <= len(typed)


# ---------------------------------------------------------------- dates

@pytest.mark.parametrize("zone", ZONES)
class TestDates:
    def test_a_bare_date_is_valid_through_that_local_day(self, zone):
        with local_zone(zone):
            assert parse_date("2027-01-31") == end_of(date(2027, 1, 31), zone)
            assert parse_date(" 2027-12-31 ") == end_of(date(2027, 12, 31), zone)
            assert format_date(parse_date("2027-01-31")) == "2027-01-31"

    def test_a_time_with_an_offset_is_the_same_instant_everywhere(self, zone):
        with local_zone(zone):
            assert parse_date("2027-01-31T12:00:00Z") == 1801396800
            assert parse_date("2027-01-31t12:00:00z") == 1801396800
            assert parse_date("2027-01-31T13:30:00.5+01:30") == 1801396800.5

    def test_a_time_without_an_offset_is_local(self, zone):
        with local_zone(zone):
            expected = datetime(2027, 1, 31, 12, 0, tzinfo=ZoneInfo(zone)).timestamp()
            assert parse_date("2027-01-31 12:00") == parse_date("2027-01-31T12:00") == expected
            assert format_date(expected) == "2027-01-31 12:00"

    @pytest.mark.parametrize("text", ["", "soon", "31/01/2027", "2027-1-31", "20270131",
                                      "2027-W05-1", "2027-01-31T12", "2027-02-30", "٢٠٢٧-01-31"])
    def test_garbage_is_refused_naming_the_forms(self, zone, text):
        with local_zone(zone), pytest.raises(BadRequest, match="YYYY-MM-DD.*2027-01-31T12:00"):
            parse_date(text)

    @pytest.mark.parametrize("text", ["1969-12-30", "9999-12-31"])
    def test_dates_outside_what_the_vault_stores_are_refused(self, zone, text):
        with local_zone(zone), pytest.raises(BadRequest, match="between 1970-01-01"):
            parse_date(text)

    @settings(max_examples=300, deadline=None)
    @given(when=st.integers(min_value=0, max_value=MAX_TIME - 2 * DAY))
    @example(when=1793435400).via("01:30 PST on 2026-11-01: that wall time happens twice in LA")
    @example(when=1793431800).via("01:30 PDT, the first time")
    def test_what_is_printed_parses_back_to_the_same_instant(self, zone, when):
        with local_zone(zone):
            assert parse_date(format_date(when)) == when


# ---------------------------------------------------------------- due

NOW = 1_800_000_000.0


def meta(**kwargs) -> EntryMeta:
    return EntryMeta(name="e", updated=NOW - 10 * DAY, **kwargs)


@pytest.mark.parametrize("entry,state", [
    (meta(), OK),
    (meta(expires=NOW), EXPIRED),                                     # expired at that instant
    (meta(expires=NOW + 1), EXPIRING_SOON),
    (meta(expires=NOW + EXPIRING_SOON_WINDOW - 1), EXPIRING_SOON),
    (meta(expires=NOW + EXPIRING_SOON_WINDOW), OK),
    (meta(rotate_after=10 * DAY), ROTATION_DUE),
    (meta(rotate_after=10 * DAY + 1), OK),
    (meta(rotate_after=DAY, expires=NOW - 1), EXPIRED),               # expiry wins
    (meta(rotate_after=DAY, expires=NOW + DAY), ROTATION_DUE),        # rotating fixes it now
])
def test_one_state_per_entry(entry, state):
    assert entry_state(entry, NOW) == explain(entry, NOW)[0] == state
    assert (state in rules.DUE) == (state in (EXPIRED, ROTATION_DUE))


def test_reasons_say_why_in_local_time():
    with local_zone("America/Los_Angeles"):
        expires = parse_date("2027-01-31")
        assert explain(meta(expires=expires), expires) == (
            EXPIRED, "expired (valid through 2027-01-31)")
        assert explain(meta(expires=expires), expires - DAY) == (
            EXPIRING_SOON, "expires soon (valid through 2027-01-31)")
        noon = parse_date("2027-01-31 12:00")
        assert explain(meta(expires=noon), noon)[1] == "expired (valid until 2027-01-31 12:00)"
        state, reason = explain(meta(rotate_after=90 * DAY), NOW + 80 * DAY)
        assert state == ROTATION_DUE and reason.endswith("(every 90d)")
        assert explain(meta(), NOW) == (OK, "")


# ---------------------------------------------------------------- kinds

def test_kinds_have_one_home():
    assert DEFAULT_KIND in KINDS and all(KINDS.values())
    assert protocol.EntryMeta(name="x").kind == DEFAULT_KIND  # the wire's default (no import)
    from credd.vault.model import MetaRecord, check_kind
    assert MetaRecord(name="x").kind == DEFAULT_KIND
    for kind in KINDS:
        assert check_kind(kind) == kind


def test_set_help_and_the_tui_picker_list_every_kind_with_its_purpose(run_credd):
    from credtui.screens.edit import _kind_options
    shown = run_credd("set", "--help").stdout
    for kind, about in KINDS.items():
        assert any(kind in line and about in line for line in shown.splitlines()), kind
        assert any(value == kind and about in prompt for prompt, value in _kind_options("x"))
    assert _kind_options("custom")[0] == ("custom", "custom")


# ---------------------------------------------------------------- cost

def test_importing_the_rules_costs_no_heavy_module(credd_env):
    loaded = roots(loaded_modules("import credd.rules", credd_env, "-S"))
    assert "credd.rules" in loaded
    assert not loaded & {"re", "typing", "enum", "datetime", "credd.errors", "msgspec"}, loaded


# ---------------------------------------------------------------- every layer agrees

@pytest.fixture(params=ZONES)
def zone_agent(request, make_agent, credd_env):
    """An unlocked agent whose process, and the CLI's, run in the zone under test."""
    env = dict(credd_env, TZ=request.param)
    agent = make_agent(env=env)
    agent.init_and_unlock()
    agent.zone = request.param
    return agent


def credd_in(agent, run_credd, *args: str) -> str:
    done = run_credd(*args, env={"TZ": agent.zone})
    assert done.returncode == 0, done.stderr
    return done.stdout


def today_in_zone() -> date:
    """Today's local date, skipping the test in the minute either side of local midnight."""
    now = datetime.now().astimezone()
    if min(now.hour * 3600 + now.minute * 60 + now.second, DAY - now.hour * 3600 - now.minute * 60
           - now.second) < 60:
        pytest.skip("too close to local midnight to say which day it is")
    return now.date()


async def _new_entry(pilot, name: str, rotate: str, expires: str) -> None:
    """Open the edit form with `n`, type the name, period and date as a person would, save."""
    screen = pilot.app.screen
    # until the list has loaded, focus may sit in the search bar, which would take the `n`
    await wait_until(pilot, lambda: screen.entry_list.entries, what="entries")
    await pilot.press("n")
    await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
    for selector, text in (("#edit-name", name), ("#edit-rotate", rotate),
                           ("#edit-expires", expires)):
        pilot.app.screen.query_one(selector).focus()
        await pilot.press(*text)
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: screen.entry_list.get(name) is not None, what=name)


class TestEveryLayerAgrees:
    def test_cli_and_tui_store_the_same_instants_and_periods(self, zone_agent, run_credd,
                                                             make_app, run):
        zone = zone_agent.zone
        expected = end_of(date(2027, 1, 31), zone)
        credd_in(zone_agent, run_credd, "set", "cli", "--generate", "--expires", "2027-01-31",
                 "--rotate-after", "1y")
        credd_in(zone_agent, run_credd, "set", "cli2", "--generate", "--rotate-after", "1h30m")
        shown = json.loads(credd_in(zone_agent, run_credd, "show", "cli", "--json"))
        # --json gives times as RFC 3339 (main's cli), durations as seconds
        assert (shown["expires"], shown["rotate_after"]) == (rfc3339(expected), 365 * DAY)
        assert "expires: 2027-01-31\n" in credd_in(zone_agent, run_credd, "show", "cli")

        async def scenario():
            async with running(make_app(zone_agent), size=(100, 40)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
                await _new_entry(pilot, "tui", "1y", "2027-01-31")
                await _new_entry(pilot, "tui2", "1H30M", "2027-01-31T12:00:00Z")
                screen = pilot.app.screen
                assert screen.entry_list.move_to("cli")
                await pilot.press("e")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                form = pilot.app.screen
                assert form.query_one("#edit-expires").value == "2027-01-31"
                assert form.query_one("#edit-rotate").value == "1y"
                await pilot.press("escape")

        with local_zone(zone):
            run(scenario())
        with zone_agent.client() as c:
            tui, tui2, cli2 = c.describe("tui"), c.describe("tui2"), c.describe("cli2")
        assert (tui.expires, tui.rotate_after) == (expected, 365 * DAY)
        assert (tui2.expires, tui2.rotate_after) == (1801396800, cli2.rotate_after) == (
            1801396800, 5400)

    def test_an_entry_expiring_today_is_not_due_anywhere(self, zone_agent, run_credd,
                                                         make_app, run):
        with local_zone(zone_agent.zone):
            today = today_in_zone()
        yesterday = today - timedelta(days=1)
        for name, day in (("ends-yesterday", yesterday), ("ends-today", today)):
            credd_in(zone_agent, run_credd, "set", name, "--generate", "--expires", str(day))
        listed = json.loads(credd_in(zone_agent, run_credd, "ls", "--due", "--json"))
        assert [e["name"] for e in listed] == ["ends-yesterday"]
        with zone_agent.client() as c:
            assert [m.name for m in c.list(due=True)] == ["ends-yesterday"]
            assert c.describe("ends-today").expires == end_of(today, zone_agent.zone)
        table = credd_in(zone_agent, run_credd, "ls").splitlines()
        assert {row.split()[0]: row.split()[-1] for row in table[1:]} == {
            "ends-today": "expiring", "ends-yesterday": "expired"}

        async def scenario():
            async with running(make_app(zone_agent)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
                entries = pilot.app.screen.entry_list
                await wait_until(pilot, lambda: entries.entries, what="entries")
                await pilot.press("u")
                await wait_until(pilot, lambda: [e.name for e in entries.visible_entries()]
                                 == ["ends-yesterday"], what="only the expired entry")
                row = next(line for line in screen_text(pilot.app).splitlines()
                           if line.startswith(" ends-yesterday"))  # the list, not the detail
                assert "EXPIRED" in row

        with local_zone(zone_agent.zone):
            run(scenario())

