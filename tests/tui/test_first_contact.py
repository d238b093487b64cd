"""Issue 12, "first contact": what a new user met in an empty vault, driven with Pilot."""

from __future__ import annotations

from tests.tui.conftest import running, screen_is, screen_text, wait_until
from tests.tui.layout import missing


def _line(app, y: int) -> str:
    lines = screen_text(app).splitlines()
    return lines[y] if len(lines) >= -y else ""  # nothing drawn yet mid-switch


def _footer(app) -> str:
    return _line(app, -1)


def _status(app) -> str:
    return _line(app, -2)


async def _empty_browse(pilot):
    await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"), what="browse screen")
    await wait_until(pilot, lambda: "No entries yet" in screen_text(pilot.app), what="empty list")
    return pilot.app.screen


async def _new_entry(pilot, name: str, value: str) -> None:
    await pilot.press("n")
    await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
    form = pilot.app.screen
    form.query_one("#edit-name").value = name
    form.query_one("#edit-value").value = value
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))


class TestEmptyVault:
    def test_says_how_to_add_the_first_entry(self, unlocked_agent, make_app, run):
        async def scenario():
            async with running(make_app(unlocked_agent), size=(80, 24)) as pilot:
                await _empty_browse(pilot)
                await wait_until(pilot, lambda: "n New" in _footer(pilot.app), what="the footer")
                assert not missing(screen_text(pilot.app), [
                    "No entries yet. Press n to add the first one, or ? for help."])
                footer = _footer(pilot.app)
                assert "n New" in footer and "? Help" in footer and "/ Search" in footer
                for nothing_to_act_on in ("Reveal", "Copy", "Edit", "Delete"):
                    assert nothing_to_act_on not in footer
        run(scenario())

    def test_entry_keys_appear_with_the_first_entry(self, unlocked_agent, make_app, run):
        async def scenario():
            async with running(make_app(unlocked_agent), size=(100, 30)) as pilot:
                await _empty_browse(pilot)
                await _new_entry(pilot, "first/key", "v1")
                await wait_until(pilot, lambda: "r Reveal" in _footer(pilot.app), what="entry keys")
                assert "No entries yet" not in screen_text(pilot.app)
                assert "e Edit" in _footer(pilot.app) and "d Delete" in _footer(pilot.app)
        run(scenario())

    def test_a_filter_that_hides_everything_says_so(self, unlocked_agent, make_app, run):
        with unlocked_agent.client() as c:
            c.set("only/one", value="v")

        async def scenario():
            async with running(make_app(unlocked_agent), size=(100, 30)) as pilot:
                await wait_until(pilot, lambda: "only/one" in screen_text(pilot.app))
                await pilot.press("slash", *"zzz")
                await wait_until(pilot, lambda: "Nothing matches “zzz”." in screen_text(pilot.app))
                assert "0/1 entry" in _status(pilot.app)
        run(scenario())


class TestCounts:
    def test_first_saved_entry_counts_one_of_one(self, unlocked_agent, make_app, run):
        """The list owns the count: the agent's count from the last poll is stale."""
        async def scenario():
            app = make_app(unlocked_agent, status_every=30.0)
            async with running(app, size=(100, 30)) as pilot:
                await _empty_browse(pilot)
                assert "0 entries" in _status(pilot.app)
                await _new_entry(pilot, "first/key", "v1")
                await wait_until(pilot, lambda: "1 entry" in _status(pilot.app), what="the count")
                await pilot.pause(1.3)                  # the app repaints the bar every second
                status = _status(pilot.app)
                assert "1 entry" in status and "/" not in status.split("·")[2]
        run(scenario())


class TestFooterBelongsToTheScreenOnTop:
    def test_edit_form_shows_its_own_keys(self, unlocked_agent, make_app, run):
        with unlocked_agent.client() as c:
            c.set("only/one", value="v")

        async def scenario():
            async with running(make_app(unlocked_agent), size=(100, 30)) as pilot:
                await wait_until(pilot, lambda: "r Reveal" in _footer(pilot.app),
                                 what="browse keys")
                await pilot.press("n")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                await wait_until(pilot, lambda: "Save" in _footer(pilot.app),
                                 what="the form's keys")
                footer = _footer(pilot.app)
                assert "^s Save" in footer and "esc Cancel" in footer and "^g Generate" in footer
                for browse_key in ("Reveal", "Copy", "Delete", "Search"):
                    assert browse_key not in footer
                # not an Input: keys reach bindings
                pilot.app.screen.query_one("#edit-save").focus()
                await pilot.press("d", "r")
                assert screen_is(pilot.app, "EditScreen")           # browse's d and r stay below
                await pilot.press("escape")
                await wait_until(pilot, lambda: "r Reveal" in _footer(pilot.app),
                                 what="browse keys back")
        run(scenario())

    def test_every_modal_shows_its_keys(self, unlocked_agent, make_app, run):
        with unlocked_agent.client() as c:
            c.set("only/one", value="v")
        modals = [("d", "ConfirmScreen", "y Yes"), ("h", "HistoryScreen", "r Restore"),
                  ("t", "TrashScreen", "p Purge"), ("C", "PickFieldScreen", "esc Cancel"),
                  ("question_mark", "HelpScreen", "esc Close")]

        async def scenario():
            async with running(make_app(unlocked_agent), size=(100, 30)) as pilot:
                await wait_until(pilot, lambda: "r Reveal" in _footer(pilot.app),
                                 what="browse keys")
                for key, screen, shown in modals:
                    await pilot.press(key)
                    await wait_until(pilot, lambda: screen_is(pilot.app, screen))
                    await wait_until(pilot, lambda: shown in _footer(pilot.app),
                                     what=f"{screen} keys")
                    assert "Reveal" not in _footer(pilot.app)
                    await pilot.press("escape")
                    await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
        run(scenario())

    def test_lock_is_offered_only_while_unlocked(self, browsing, make_app, run):
        with browsing.client() as c:
            c.lock()

        async def scenario():
            async with running(make_app(browsing), size=(100, 30)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "UnlockScreen"))
                await pilot.pause(0.3)
                assert "Lock" not in _footer(pilot.app)
        run(scenario())


class TestCopySaysWhereItWent:
    def test_osc52_does_not_promise_a_clear(self, browsing, make_app, run, osc_log):
        async def scenario():
            async with running(make_app(browsing, clipboard="osc52"), size=(100, 30),
                               notifications=True) as pilot:
                await wait_until(pilot, lambda: "r Reveal" in _footer(pilot.app), what="the list")
                await pilot.press("c")
                await wait_until(pilot, lambda: osc_log, what="the OSC 52 copy")
                await wait_until(pilot, lambda: not missing(screen_text(pilot.app), [
                    "Whether it arrived cannot be checked"]), what="the warning")
                assert "clears in" not in screen_text(pilot.app)
        run(scenario())


class TestFocus:
    def test_the_list_has_the_keys_from_the_first_frame(self, browsing, make_app, run):
        """Typed right after the switch, `n` must open the form, not search for "n"."""
        from credtui.screens.browse import BrowseScreen

        async def scenario():
            async with running(make_app(browsing), size=(100, 30)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
                await pilot.app.show(BrowseScreen())           # as after an unlock
                assert pilot.app.focused is pilot.app.screen.query_one("#entries")
        run(scenario())
