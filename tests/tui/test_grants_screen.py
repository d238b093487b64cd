"""The grants screen (`g`) and access requests, with Pilot against a real agent; grants are
checked through the real CLI, and a waiting requester is a real `credd session`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.tui.conftest import running, screen_is, screen_text, wait_until

VALUE = "sk_live_tui_grant"


@pytest.fixture
def owner(browsing, run_credd):
    """An unlocked agent with stripe/key, as the CLI stores it."""
    assert run_credd("set", "stripe/key", input=VALUE).returncode == 0
    return browsing


def cli_grants(run_credd, *args: str) -> dict:
    done = run_credd("grant", "ls", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli_create(run_credd, *args: str) -> str:
    done = run_credd("grant", "create", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def open_grants(pilot) -> None:
    await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
    await wait_until(pilot, lambda: pilot.app.screen.entry_list.entries, what="entries")
    await pilot.press("g")
    await wait_until(pilot, lambda: screen_is(pilot.app, "GrantsScreen"))
    await wait_until(pilot, lambda: "Loading" not in screen_text(pilot.app), what="the grants")


def asking(credd_env, gid: str) -> subprocess.Popen:
    """A real program bound to `gid` through `credd session`, reading stripe/key."""
    return subprocess.Popen(
        [sys.executable, "-m", "credd", "session", "--grant", gid, "--",
         sys.executable, "-m", "credd", "get", "stripe/key"],
        env=credd_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_lists_grants_made_by_the_cli(owner, make_app, run, run_credd, credd_env):
    session = cli_create(run_credd, "--names", "stripe/*", "--names", "github/token",
                         "--mode", "read", "--ttl", "2h", "--label", "claude", "--uses", "3")
    sandbox = cli_create(run_credd, "--names", "stripe/key", "--mode", "use", "--uid", "nobody",
                         "--command", "/bin/true")
    used = subprocess.run(
        [sys.executable, "-m", "credd", "session", "--grant", session, "--",
         sys.executable, "-m", "credd", "get", "stripe/key"],
        env=credd_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert used.stdout.strip() == VALUE, used.stderr
    socket = next(g["socket"] for g in cli_grants(run_credd)["grants"] if g["id"] == sandbox)

    async def scenario():
        async with running(make_app(owner), size=(200, 60)) as pilot:
            await open_grants(pilot)
            await wait_until(pilot, lambda: sandbox in screen_text(pilot.app), what="both")
            text = screen_text(pilot.app)
            assert f"{session}  read  claude" in text
            assert "stripe/*, github/token" in text
            assert "in 1h59m · " in text or "in 2h · " in text, text
            assert re.search(r"2 left of 3 · last used \d+s ago by credd get", text), text
            assert "credd session" in text
            assert f"uid 65534 on {socket}" in text and "/bin/true" in text
            assert "no limit, 0 so far · no recent use" in text
            assert "2 grants in force" in text
            assert VALUE not in text
    run(scenario())


def test_create_checks_like_the_cli_and_makes_a_grant_the_cli_sees(owner, make_app, run,
                                                                      run_credd):
    async def type_into(pilot, selector: str, text: str) -> None:
        widget = pilot.app.screen.query_one(selector)
        widget.value = text
        await pilot.pause()

    async def scenario():
        async with running(make_app(owner), size=(100, 40)) as pilot:
            await open_grants(pilot)
            assert "No grants in force. Press n" in screen_text(pilot.app)
            await pilot.press("n")
            await wait_until(pilot, lambda: screen_is(pilot.app, "GrantFormScreen"))
            error = pilot.app.screen.query_one("#grant-error")
            for names, ttl, uses, says in (
                    ("", "", "", "a grant names 1-64 entries or patterns"),
                    ("'stripe/*", "", "", "names: No closing quotation"),
                    ("stripe//x", "", "", "has an empty segment"),
                    ("stripe/*", "31d", "", "at most 30 days"),
                    ("stripe/*", "soon", "", "lasts: invalid duration"),
                    ("stripe/*", "2h", "x", "uses must be a whole number"),
                    ("stripe/*", "2h", "0", "--uses must be a positive number")):
                await type_into(pilot, "#grant-names", names)
                await type_into(pilot, "#grant-ttl", ttl)
                await type_into(pilot, "#grant-uses", uses)
                await pilot.press("ctrl+s")
                await wait_until(pilot, lambda: says in str(error.render()), what=says)
            assert cli_grants(run_credd)["grants"] == []  # nothing was sent

            await type_into(pilot, "#grant-uses", "5")
            await type_into(pilot, "#grant-label", "ci job")
            pilot.app.screen.query_one("#grant-commands").text = "make deploy\ngit push **\n"
            pilot.app.screen.query_one("#grant-confirm").value = True
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: screen_is(pilot.app, "GrantsScreen"))
            await wait_until(pilot, lambda: "ci job" in screen_text(pilot.app), what="listed")
        (grant,) = cli_grants(run_credd)["grants"]
        assert (grant["names"], grant["mode"], grant["label"], grant["uses"], grant["commands"],
                grant["confirm"]) == (["stripe/*"], "use", "ci job", 5,
                                      ["make deploy", "git push **"], True)
    run(scenario())


def test_revoke_asks_then_revokes(owner, make_app, run, run_credd):
    gid = cli_create(run_credd, "--names", "stripe/*", "--mode", "use")

    async def scenario():
        async with running(make_app(owner)) as pilot:
            await open_grants(pilot)
            await wait_until(pilot, lambda: gid in screen_text(pilot.app))
            await pilot.press("d")
            await wait_until(pilot, lambda: screen_is(pilot.app, "ConfirmScreen"))
            await pilot.press("n")  # no: nothing happens
            await wait_until(pilot, lambda: screen_is(pilot.app, "GrantsScreen"))
            assert [g["id"] for g in cli_grants(run_credd)["grants"]] == [gid]
            await pilot.press("d")
            await wait_until(pilot, lambda: screen_is(pilot.app, "ConfirmScreen"))
            await pilot.press("y")
            await wait_until(pilot, lambda: "No grants in force" in screen_text(pilot.app),
                             what="the list without it")
            await pilot.press("a")  # ended ones too
            await wait_until(pilot, lambda: "revoked " in screen_text(pilot.app))
        assert cli_grants(run_credd)["grants"] == []
        (gone,) = cli_grants(run_credd, "--all")["grants"]
        assert gone["id"] == gid and gone["revoked"] is not None
    run(scenario())


@pytest.mark.parametrize("key, exit_code", [("y", 0), ("n", 7)])
def test_a_waiting_request_is_answered_with_one_key(owner, make_app, run, run_credd,
                                                    credd_env, key, exit_code, monkeypatch):
    monkeypatch.setattr("credtui.screens.access.ARM_SECONDS", 4.0)  # a loaded machine is slow
    gid = cli_create(run_credd, "--names", "stripe/*", "--mode", "read", "--confirm")
    waiting = None

    async def scenario():
        nonlocal waiting
        async with running(make_app(owner)) as pilot:
            await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
            waiting = asking(credd_env, gid)
            await wait_until(pilot, lambda: "asks to" in screen_text(pilot.app),
                             timeout=20, what="the access request")
            assert screen_is(pilot.app, "AccessRequestScreen")
            text = screen_text(pilot.app)
            assert "credd get" in text and "asks to get stripe/key" in text and gid in text
            assert not pilot.app.screen.armed
            await pilot.press(key)  # pressed at once: not armed yet, ignored
            await pilot.pause(0.1)
            assert screen_is(pilot.app, "AccessRequestScreen") and waiting.poll() is None
            await wait_until(pilot, lambda: "y Approve" in screen_text(pilot.app), what="armed")
            await pilot.press(key)
            await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
            out, err = waiting.communicate(timeout=20)
            assert waiting.returncode == exit_code, err
            assert (out.strip() == VALUE) is (key == "y")
            assert VALUE not in screen_text(pilot.app)
    try:
        run(scenario())
    finally:
        if waiting is not None and waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert cli_grants(run_credd)["pending"] == []


def test_a_request_answered_elsewhere_leaves_the_screen(owner, make_app, run, run_credd,
                                                       credd_env):
    """Escape leaves it for the grants screen; approved by the CLI, it goes away there too."""
    gid = cli_create(run_credd, "--names", "stripe/*", "--mode", "read", "--confirm")
    waiting = asking(credd_env, gid)
    try:
        deadline = time.monotonic() + 20
        while not (pending := cli_grants(run_credd)["pending"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        (request,) = pending

        async def scenario():
            async with running(make_app(owner)) as pilot:  # started after the request
                await wait_until(pilot, lambda: screen_is(pilot.app, "AccessRequestScreen"),
                                 what="the request that began before the app")
                await pilot.press("escape")
                await open_grants(pilot)
                await wait_until(pilot, lambda: request["id"] in screen_text(pilot.app))
                assert "waiting" in screen_text(pilot.app)
                await pilot.press("enter")
                await wait_until(pilot, lambda: screen_is(pilot.app, "AccessRequestScreen"))
                assert run_credd("grant", "approve", request["id"]).returncode == 0
                await wait_until(pilot, lambda: screen_is(pilot.app, "GrantsScreen"),
                                 what="the answered request gone")
                await wait_until(pilot, lambda: request["id"] not in screen_text(pilot.app))
        run(scenario())
        out, _ = waiting.communicate(timeout=20)
        assert out.strip() == VALUE
    finally:
        waiting.kill()
        waiting.wait()


def test_who_read_it_names_the_grant(owner, make_app, run, run_credd, credd_env):
    """The entry detail's `w`: a read under a grant is listed with the grant that made it."""
    gid = cli_create(run_credd, "--names", "stripe/*", "--mode", "read")
    used = subprocess.run(
        [sys.executable, "-m", "credd", "session", "--grant", gid, "--",
         sys.executable, "-m", "credd", "get", "stripe/key"],
        env=credd_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert used.returncode == 0, used.stderr

    async def scenario():
        async with running(make_app(owner)) as pilot:
            await wait_until(pilot, lambda: screen_is(pilot.app, "BrowseScreen"))
            screen = pilot.app.screen
            await wait_until(pilot, lambda: screen.entry_list.move_to("stripe/key"))
            await wait_until(pilot, lambda: "last used" in screen_text(pilot.app))
            await pilot.press("w")
            await wait_until(pilot, lambda: gid in screen_text(pilot.app), what="the grant")
            assert "credd get" in screen_text(pilot.app)
    run(scenario())


def test_a_request_for_more_access_says_the_mode_and_the_reason():
    """`request_access` asks for a wider grant: the owner sees how wide, and why."""
    from credd import protocol as proto
    from credtui.screens.access import describe
    text = describe(proto.AccessRequest(
        id="r_aaaaaaaaaa", grant="g_bbbbbbbbbb", op="request_access", names=("stripe/key",),
        program="credd mcp", pid=7, mode="read", reason="deploy the billing fix")).plain
    assert "asks for read access to stripe/key under grant g_bbbbbbbbbb" in text
    assert "deploy the billing fix" in text and "request_access" not in text
