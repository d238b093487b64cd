"""Tests keep their files under pytest's tmp paths (tmp_path, tmp_path_factory).

A fixed path in /tmp (the snapshot tests once used /tmp/credtui-snap-{uid}) is shared
by every run on the host, outlives the run, and can be made first by another user;
pytest's tmp paths are private to a run, 0700, and moved by --basetemp. So a test
names no path under /tmp and makes no temp file or dir through `tempfile`, except
the uses listed here with why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

TESTS = REPO / "tests"
TEMPFILE = {"mkdtemp", "mkstemp", "mktemp", "gettempdir", "TemporaryDirectory",
            "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"}
#: (file, what) -> why. `what` is a string literal or `tempfile.NAME`.
ALLOWED = {
    ("conftest.py", "tempfile.mkdtemp"): "runtime dirs root tests open to uid 65534 (see there)",
    ("conftest.py", "/tmp"): "runtime dirs root tests open to uid 65534 (see there)",
    ("daemon/test_socket.py", "/tmp/credd-65534"):
        "the path under test: credd's old fallback, which another user could make first",
    ("daemon/test_socket.py", "tempfile.mkdtemp"): "a home uid 65534 can reach",
    ("daemon/test_socket.py", "/tmp"): "a home uid 65534 can reach (pytest's is 0700 root's)",
    ("test_client.py", "tempfile.mkdtemp"): "a dir uid 65534 can bind a socket in",
    ("grants/test_exfiltration_run.py", "/tmp"):
        "HOME and cwd of a uid 65534 client, which writes nothing there",
    ("grants/test_exfiltration_run.py", "/tmp/evil.so"): "an injected value, never made",
    ("grants/test_exfiltration_run.py", "/tmp/evil.sh"): "an injected value, never made",
    ("test_protocol.py", "/tmp/s"): "a field value in a message, never made",
    ("scripting/test_run.py", "/tmp"): "searched for a leaked secret, never written",
    ("service/test_agent_cmd.py", "/tmp/a dir/it's $HOME `x` \\ \"q\" ! * ;"): "quoting data",
    ("service/test_service_cmd.py", "/tmp/it's a $path with `ticks` and \\ \"quotes\""):
        "quoting data",
    ("service/test_service_cmd.py", "/tmp/elsewhere.sock"): "a value passed on, never made",
    ("test_client.py", "/tmp/"): "a path too long for a socket, never made",
    ("test_paths.py", "/tmp/"): "a path too long for a socket, never made",
    ("test_paths.py", "/tmp/short.sock"): "a path checked for length, never made",
    ("test_paths.py", "/tmp/credd-"): "asserted absent from credd's paths",
    ("tui/test_clipboard.py", "/tmp/x,1,0"): "a $TMUX value, never made",
    ("vault/fixtures/make_format1.py", "tempfile.mkdtemp"): "a script run by hand, not a test",
    ("vault/fixtures/make_format3.py", "tempfile.mkdtemp"): "a script run by hand, not a test",
    ("vault/fixtures/make_format4.py", "tempfile.mkdtemp"): "a script run by hand, not a test",
}


def tmp_uses(tree: ast.AST) -> Iterator[str]:
    """String literals naming /tmp, and `tempfile` calls that make temp files or dirs."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value == "/tmp" or node.value.startswith("/tmp/"):
                yield node.value
        elif (isinstance(node, ast.Attribute) and node.attr in TEMPFILE
              and isinstance(node.value, ast.Name) and node.value.id == "tempfile"):
            yield f"tempfile.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module == "tempfile":
            yield from (f"tempfile.{a.name}" for a in node.names if a.name in TEMPFILE)


def found() -> set[tuple[str, str]]:
    """Every use in tests/ but this file's own examples."""
    return {(str(path.relative_to(TESTS)), use)
            for path in TESTS.rglob("*.py") if path != Path(__file__)
            for use in tmp_uses(ast.parse(path.read_text()))}


def test_no_test_names_a_path_in_tmp():
    unlisted = sorted(found() - ALLOWED.keys())
    assert not unlisted, "use tmp_path / tmp_path_factory instead of:\n" + "\n".join(
        f"tests/{path}: {use!r}" for path, use in unlisted)


def test_every_allowed_use_is_still_there():
    """A listed use that is gone comes off the list (so the list cannot hide a new one)."""
    assert not ALLOWED.keys() - found()


def test_the_check_finds_the_old_snapshot_path():
    old = 'import tempfile\nRUN = f"/tmp/credtui-snap-{uid}"\nd = tempfile.mkdtemp(dir="/tmp")\n'
    assert set(tmp_uses(ast.parse(old))) == {"/tmp/credtui-snap-", "tempfile.mkdtemp", "/tmp"}
    assert not set(tmp_uses(ast.parse("d = tmp_path_factory.mktemp('cr')\nx = '/tmpfoo'")))
