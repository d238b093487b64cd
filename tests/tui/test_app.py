"""credtui driven with Pilot against a real `credd serve` on a temp socket."""

from __future__ import annotations

import base64
import signal
import time

import pytest
from textual import events

from credd.protocol import EntryMeta, Revealed
from credtui.clipboard import CLEAR, osc52
from credtui.screens.browse import BrowseScreen
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.tui.conftest import running, screen_is, screen_text, wait_until


def _lock(agent) -> None:
    with agent.client() as c:
        c.lock()


async def _type(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space", "/": "slash"}.get(ch, ch) for ch in text])


async def _browse(pilot):
    await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"), what="browse screen")
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.entry_list.entries, what="entries loaded")
    return screen


class TestUnlock:
    def test_good_passphrase_opens_the_list(self, browsing, make_app, run):
        _lock(browsing)

        async def scenario():
            async with running(make_app(browsing)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "UnlockScreen"))
                await _type(pilot, TEST_PASSPHRASE)
                await pilot.press("enter")
                screen = await _browse(pilot)
                assert len(screen.entry_list.entries) == 4
                assert "github/work/token" in screen_text(pilot.app)
                assert TEST_PASSPHRASE not in screen_text(pilot.app)
        run(scenario())

    def test_wrong_passphrase_explains_and_keeps_the_field(self, browsing, make_app, run):
        _lock(browsing)

        async def scenario():
            async with running(make_app(browsing)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "UnlockScreen"))
                await _type(pilot, "wrong")
                await pilot.press("enter")
                await wait_until(pilot, lambda: "Wrong passphrase" in screen_text(pilot.app))
                assert screen_is(pilot.app, "UnlockScreen")
                assert pilot.app.screen.query_one("#passphrase").value == "wrong"
                with browsing.client() as c:
                    assert c.status().state == "locked"
        run(scenario())


class TestBrowse:
    def test_filter_substring_fuzzy_enter_and_escape(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                entries = screen.entry_list
                await pilot.press("slash")
                assert pilot.app.focused.id == "search"
                await _type(pilot, "postgres")                      # service, substring
                assert [e.name for e in entries.visible_entries()] == ["db/main"]
                await pilot.press("ctrl+u")
                await _type(pilot, "gwt")                           # fuzzy: github/work/token
                assert entries.highlighted.name == "github/work/token"
                await _type(pilot, "zzz")
                assert entries.visible_count == 0
                await pilot.press("escape")                         # clears, back to the list
                assert entries.visible_count == 4
                assert pilot.app.focused is entries
                await pilot.press("slash")
                await _type(pilot, "prod")                          # a tag
                await pilot.press("enter")
                assert pilot.app.focused is entries
                assert "aws/prod/key" in screen_text(pilot.app)
                # a plain field
                await wait_until(pilot, lambda: "eu-west-1" in screen_text(pilot.app))
                assert "wJalrEXAMPLE" not in screen_text(pilot.app)  # secret field masked
        run(scenario())

    def test_long_list_scrolls_with_the_cursor(self, unlocked_agent, make_app, run):
        with unlocked_agent.client() as c:
            for i in range(60):
                c.set(f"bulk/e{i:02d}", value="v")

        async def scenario():
            async with running(make_app(unlocked_agent), size=(80, 24)) as pilot:
                screen = await _browse(pilot)
                assert "┃" in screen_text(pilot.app)                 # a scrollbar thumb
                await pilot.press("end")
                assert screen.entry_list.highlighted.name == "bulk/e59"
                await wait_until(pilot, lambda: "bulk/e59" in screen_text(pilot.app)
                                 and "bulk/e00" not in screen_text(pilot.app))  # detail follows
                await pilot.press("home", "pagedown")
                await wait_until(pilot, lambda: "bulk/e00" not in screen_text(pilot.app))
                await pilot.press("slash", *"e42", "enter")
                assert screen.entry_list.highlighted.name == "bulk/e42"
        run(scenario())

    def test_due_entries_are_marked_and_filterable(self, browsing, make_app, run):
        time.sleep(1.1)  # db/main rotates every second

        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                assert "ROTATE" in screen_text(pilot.app)           # db/main: rotate every 1 s
                await pilot.press("u")
                assert [e.name for e in screen.entry_list.visible_entries()] == ["db/main"]
                await pilot.press("u")
                assert screen.entry_list.visible_count == 4
        run(scenario())

    def test_folder_tree_scopes_the_list(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                await pilot.press("f")
                tree = screen.query_one("#folders")
                github = next(n for n in tree.root.children if str(n.label) == "github")
                tree.select_node(github)
                await wait_until(pilot, lambda: screen.entry_list.visible_count == 2)
                await pilot.press("f")                              # by service
                assert {str(n.label) for n in tree.root.children} == {
                    "aws", "github.com", "postgres"}
                await pilot.press("f")                              # hidden, unscoped
                assert not tree.display and screen.entry_list.visible_count == 4
        run(scenario())


class TestReachable:
    def test_mouse_click_selects_a_row(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                await pilot.click("#entries", offset=(3, 3))        # header row, then row 2
                assert screen.entry_list.highlighted.name == "github/personal"
        run(scenario())

    def test_palette_offers_actions_but_no_screenshot(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                titles = [c.title for c in pilot.app.get_system_commands(screen)]
                wanted = {"Reveal", "Copy", "New", "Edit", "Delete", "History", "Trash", "Lock"}
                assert wanted <= set(titles)
                assert not [t for t in titles if "screenshot" in t.lower()]
        run(scenario())

    def test_light_theme_and_quit(self, browsing, make_app, run):
        async def scenario():
            app = make_app(browsing)
            async with running(app, size=(80, 24)) as pilot:
                await _browse(pilot)
                app.theme = "textual-light"
                await pilot.pause()
                assert "github/work/token" in screen_text(app)
                await pilot.press("q")
                await pilot.pause()
            assert app.return_code == 0
        run(scenario())


class TestReveal:
    def test_reveal_then_auto_hide(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing, reveal_seconds=0.6)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("github/work/token")
                await pilot.press("r")
                await wait_until(pilot, lambda: SENTINEL in screen_text(pilot.app), what="reveal")
                hidden = await wait_until(pilot, lambda: SENTINEL not in screen_text(pilot.app),
                                          what="auto-hide")
                assert hidden < 5.0  # the 0.6 s timer, not the 30 s default, on a loaded machine
        run(scenario())

    def test_r_again_hides_at_once(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("aws/prod/key")
                await pilot.press("r")
                await wait_until(pilot, lambda: "wJalrEXAMPLE" in screen_text(pilot.app))
                await pilot.press("r")
                assert "wJalrEXAMPLE" not in screen_text(pilot.app)
        run(scenario())


class TestCopy:
    def test_copy_writes_osc52_and_clears_later(self, browsing, make_app, run, osc_log):
        async def scenario():
            async with running(make_app(browsing, clip_seconds=0.5)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("github/work/token")
                await pilot.press("c")
                await wait_until(pilot, lambda: osc_log, what="OSC 52 copy")
                assert osc_log[0] == osc52(SENTINEL)
                assert base64.b64decode(osc_log[0][len("\x1b]52;c;"):-1]).decode() == SENTINEL
                await wait_until(pilot, lambda: len(osc_log) == 2, what="clipboard clear")
                assert osc_log[1] == CLEAR
        run(scenario())

    def test_copy_chosen_field(self, browsing, make_app, run, osc_log):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("aws/prod/key")
                await pilot.press("C")
                await wait_until(pilot, lambda: screen_is(pilot.app, "PickFieldScreen"))
                await pilot.press("down", "enter")                  # value, secret_key, region
                await wait_until(pilot, lambda: osc_log, what="OSC 52 copy")
                assert osc_log[0] == osc52("wJalrEXAMPLE")
        run(scenario())

    def test_a_newer_copy_cancels_the_older_clear(self, browsing, make_app, run, osc_log):
        async def scenario():
            # Timed by what is observed, not by sleeps: on a loaded machine the second
            # copy may land late, but it must land before the first clear is due.
            async with running(make_app(browsing, clip_seconds=1.0)) as pilot:
                await _browse(pilot)
                await pilot.press("c")
                await wait_until(pilot, lambda: len(osc_log) == 1)
                await pilot.pause(0.3)
                await pilot.press("down", "c")
                await wait_until(pilot, lambda: len(osc_log) >= 2)
                assert osc_log[1] != CLEAR, "the second copy came after the first clear was due"
                waited = await wait_until(pilot, lambda: len(osc_log) >= 3, what="one clear")
                # the older copy's clear was due 1.0 s after it, i.e. < 0.7 s after this copy
                assert waited >= 0.8 and osc_log[2] == CLEAR
                await pilot.pause(0.3)
                assert osc_log[2:] == [CLEAR]                        # only the newer copy's clear
        run(scenario())


class TestWrite:
    def test_new_edit_delete_restore(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing), size=(100, 40)) as pilot:
                screen = await _browse(pilot)
                await pilot.press("n")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                await _type(pilot, "new/api")
                form = pilot.app.screen
                form.query_one("#edit-service").value = "example.com"
                form.query_one("#edit-value").value = "first-value"
                form.query_one("#edit-rotate").value = "90d"
                await pilot.press("ctrl+s")
                await wait_until(pilot, lambda: screen.entry_list.get("new/api") is not None)
                with browsing.client() as c:
                    assert c.get("new/api") == "first-value"
                    assert c.describe("new/api").rotate_after == 90 * 86400

                assert screen.entry_list.move_to("new/api")
                await pilot.press("e")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                form = pilot.app.screen
                assert form.query_one("#edit-value").value == "first-value"
                form.query_one("#edit-value").value = "second-value"
                await pilot.press("ctrl+s")
                await wait_until(pilot, lambda: screen.entry_list.get("new/api").version == 2)
                with browsing.client() as c:
                    assert c.get("new/api") == "second-value"
                    assert c.describe("new/api").service == "example.com"

                await pilot.press("d")
                await wait_until(pilot, lambda: screen_is(pilot.app, "ConfirmScreen"))
                await pilot.press("y")
                await wait_until(pilot, lambda: screen.entry_list.get("new/api") is None)
                with browsing.client() as c:
                    assert [m.name for m in c.trash()] == ["new/api"]

                await pilot.press("t")
                await wait_until(pilot, lambda: "new/api" in screen_text(pilot.app))
                await pilot.press("u")
                await wait_until(pilot, lambda: screen.entry_list.get("new/api") is not None)
                with browsing.client() as c:
                    assert c.get("new/api") == "second-value"
        run(scenario())

    def test_rename_in_the_edit_form_keeps_the_history(self, browsing, make_app, run):
        with browsing.client() as c:
            c.set("new/api", value="first-value")
            c.set("new/api", value="second-value")

        async def scenario():
            async with running(make_app(browsing), size=(100, 40)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("new/api")
                await pilot.press("e")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                form = pilot.app.screen
                form.query_one("#edit-name").value = "renamed/api"
                form.query_one("#edit-value").value = "third-value"
                await pilot.press("ctrl+s")
                await wait_until(pilot, lambda: screen.entry_list.get("renamed/api") is not None)
                await wait_until(pilot, lambda: screen.entry_list.get("new/api") is None)
                with browsing.client() as c:
                    assert c.get("renamed/api") == "third-value"
                    assert [m.name for m in c.list(prefix="new/")] == []
                    assert len(c.history("renamed/api").versions) == 2  # history moved too
        run(scenario())

    def test_purge_from_the_trash(self, browsing, make_app, run):
        with browsing.client() as c:
            c.delete("db/main")

        async def scenario():
            async with running(make_app(browsing)) as pilot:
                await _browse(pilot)
                await pilot.press("t")
                await wait_until(pilot, lambda: "db/main" in screen_text(pilot.app))
                await pilot.press("p")
                await wait_until(pilot, lambda: screen_is(pilot.app, "ConfirmScreen"))
                await pilot.press("y")
                await wait_until(pilot, lambda: "The trash is empty" in screen_text(pilot.app))
                with browsing.client() as c:
                    assert c.trash() == []
        run(scenario())

    def test_keys_read_at_once_keep_their_order_across_tab(self, browsing, make_app, run):
        """Tab and the letters after it read in one go (a loaded machine, a typing tool, ssh):
        the letters reach the field Tab moved to, not the one it left."""
        async def scenario():
            async with running(make_app(browsing), size=(100, 40)) as pilot:
                await _browse(pilot)
                await pilot.press("n")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                form = pilot.app.screen
                name, service = form.query_one("#edit-name"), form.query_one("#edit-service")
                await wait_until(pilot, lambda: name.has_focus, what="the name focused")
                for key, character in [("x", "x"), ("tab", "\t"), ("tab", "\t"), ("y", "y"),
                                       ("shift+tab", None), ("shift+tab", None), ("z", "z")]:
                    pilot.app.post_message(events.Key(key, character))  # no wait in between
                await pilot.pause(0.5)
                assert (name.value, service.value) == ("z", "y")  # focus selects a field's text
        run(scenario())

    def test_invalid_form_explains_and_saves_nothing(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing), size=(100, 40)) as pilot:
                await _browse(pilot)
                await pilot.press("n")
                await wait_until(pilot, lambda: screen_is(pilot.app, "EditScreen"))
                await _type(pilot, "x/y")
                pilot.app.screen.query_one("#edit-rotate").value = "soon"
                await pilot.press("ctrl+s")
                assert "rotation period" in screen_text(pilot.app)
                assert screen_is(pilot.app, "EditScreen")
                await pilot.press("ctrl+g")
                assert len(pilot.app.screen.query_one("#edit-value").value) == 24
        run(scenario())

    def test_history_restore(self, browsing, make_app, run):
        with browsing.client() as c:
            c.set("github/personal", kind="password", service="github.com", value="newer-pw")

        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("github/personal")
                await pilot.press("h")
                await wait_until(pilot, lambda: "v1" in screen_text(pilot.app), what="history")
                await pilot.press("enter")
                await wait_until(pilot, lambda: screen_is(pilot.app, "ConfirmScreen"))
                await pilot.press("y")
                await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
                with browsing.client() as c:
                    await wait_until(pilot, lambda: c.get("github/personal") == "p3rsonal-pw")
        run(scenario())


class TestFollowsTheAgent:
    def _lock_from_outside(self, browsing, make_app, run, how):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("github/work/token")
                await pilot.press("r")
                await wait_until(pilot, lambda: SENTINEL in screen_text(pilot.app))
                secret = screen.detail.secret
                how()
                took = await wait_until(pilot, lambda: screen_is(pilot.app, "UnlockScreen"),
                                        timeout=8.0, what="unlock screen after lock")
                assert took < 5.0  # the agent's event, not the 15 s status poll
                assert SENTINEL not in screen_text(pilot.app)
                assert not secret.revealed and SENTINEL not in str(secret.render())
        run(scenario())

    def test_credd_lock_elsewhere(self, browsing, make_app, run):
        self._lock_from_outside(browsing, make_app, run, lambda: _lock(browsing))

    def test_sigusr1(self, browsing, make_app, run):
        self._lock_from_outside(browsing, make_app, run, lambda: browsing.signal(signal.SIGUSR1))

    def test_ctrl_l_locks(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                await _browse(pilot)
                await pilot.press("ctrl+l")
                await wait_until(pilot, lambda: screen_is(pilot.app, "UnlockScreen"))
                with browsing.client() as c:
                    assert c.status().state == "locked"
        run(scenario())

    def test_agent_gone_shows_the_no_agent_screen(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                await _browse(pilot)
                browsing.stop()
                await wait_until(pilot, lambda: screen_is(pilot.app, "NoAgentScreen"))
        run(scenario())

    def test_a_revealed_entry_changed_elsewhere_is_hidden(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                assert screen.entry_list.move_to("github/work/token")
                await pilot.press("r")
                await wait_until(pilot, lambda: SENTINEL in screen_text(pilot.app))
                with browsing.client() as c:
                    c.set("github/work/token", kind="access_token", value="rotated-value")
                await wait_until(pilot, lambda: SENTINEL not in screen_text(pilot.app)
                                 and "v2" in screen_text(pilot.app), what="hidden and refreshed")
                assert "rotated-value" not in screen_text(pilot.app)
        run(scenario())

    def test_entry_changed_elsewhere_refreshes(self, browsing, make_app, run):
        async def scenario():
            async with running(make_app(browsing)) as pilot:
                screen = await _browse(pilot)
                with browsing.client() as c:
                    c.set("zz/added", value="v", service="elsewhere")
                    c.set("db/main", kind="connection_string", service="mysql", value="v2")
                    c.delete("github/personal")
                lst = screen.entry_list
                await wait_until(pilot, lambda: lst.get("zz/added") is not None
                                 and lst.get("db/main").service == "mysql"
                                 and lst.get("github/personal") is None, what="refresh")
        run(scenario())


class TestStart:
    def test_create_vault_shows_recovery_key_once(self, agent, make_app, run, osc_log):
        async def scenario():
            async with running(make_app(agent)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "InitScreen"))
                await _type(pilot, "short")
                await pilot.press("enter", *"short", "enter")
                assert "at least 8" in screen_text(pilot.app)
                screen = pilot.app.screen
                screen.query_one("#new-passphrase").value = TEST_PASSPHRASE
                screen.query_one("#new-passphrase2").value = TEST_PASSPHRASE
                await pilot.click("#create")
                await wait_until(pilot, lambda: screen.created, timeout=15, what="vault created")
                key = screen._recovery_key
                assert key and key in screen_text(pilot.app)
                await pilot.click("#copy-recovery")
                assert osc_log == [osc52(key)]
                await pilot.click("#saved")
                await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"), timeout=15)
                assert key not in screen_text(pilot.app)
        run(scenario())

    def test_no_agent_offers_to_start_one(self, make_agent, make_app, run, credd_env):
        agent = make_agent(start=False)

        async def scenario():
            async with running(make_app(agent)) as pilot:
                await wait_until(pilot, lambda: screen_is(pilot.app, "NoAgentScreen"))
                assert agent.socket in screen_text(pilot.app)
                await pilot.click("#start")
                await wait_until(pilot, lambda: screen_is(pilot.app, "InitScreen"), timeout=15,
                                 what="the started agent")
        try:
            run(scenario())
        finally:
            try:
                with agent.client() as c:
                    c.stop()
            except Exception:
                pass


class TestNoLeaks:
    def test_reprs_hide_values(self):
        from credtui.screens.edit import Draft
        revealed = Revealed(entry=EntryMeta(name="n"), value=SENTINEL, notes=SENTINEL)
        assert SENTINEL not in repr(Draft(name="n", value=SENTINEL, notes=SENTINEL))
        assert SENTINEL not in repr(BrowseScreen.Revealed(revealed))
        assert SENTINEL not in repr(revealed)

    def test_crash_report_shows_no_locals(self, agent, make_app, run, capfd):
        app = make_app(agent)

        def crash() -> None:
            value = SENTINEL  # noqa: F841 - Textual's stock report would print this local
            raise RuntimeError("boom")

        async def scenario():
            async with running(app) as pilot:
                app.call_later(crash)
                await pilot.pause(0.5)
        with pytest.raises(RuntimeError):
            run(scenario())
        report = "".join(capfd.readouterr())
        assert "RuntimeError" in report and "boom" in report
        assert SENTINEL not in report
