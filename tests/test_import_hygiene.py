"""The thin client and the hot commands import only what they need (fresh interpreters).

Heavy modules (cryptography, textual, psutil, keyring, sqlite3, asyncio, the MCP SDK) must
never load for `import credd.client` or any `credd get`. The fast path
(`credd get NAME`, `credd status`) goes further and loads neither msgspec,
argparse, platformdirs, re nor even `socket`: it runs under `python -S`
(no site-packages at all), which also keeps `re`, loaded by the editable
install's path hook, out of the baseline.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"cryptography", "textual", "psutil", "keyring", "sqlite3", "asyncio", "_sqlite3",
         "_asyncio", "mcp", "mcp_types", "pydantic", "anyio", "credd.mcp_server"}
FAST_FORBIDDEN = HEAVY | {"msgspec", "argparse", "platformdirs", "re", "socket", "json",
                          "selectors", "enum", "getpass", "credd.client", "credd.protocol",
                          "credd.rules"}

PROBE = """
import sys
before = set(sys.modules)
try:
{body}
except SystemExit:
    pass
loaded = set(sys.modules) - before
sys.stderr.write("\\nLOADED:" + ",".join(sorted(loaded)) + "\\n")
"""


def loaded_modules(code: str, env: dict, *flags: str) -> set[str]:
    """Modules (top-level and dotted) a fresh interpreter loads while running `code`."""
    body = "\n".join("    " + line for line in code.strip().splitlines())
    proc = subprocess.run([sys.executable, *flags, "-c", PROBE.format(body=body)], env=env,
                          capture_output=True, text=True, timeout=30)
    marker = proc.stderr.rpartition("LOADED:")
    assert marker[1], f"probe failed:\n{proc.stderr}"
    return set(filter(None, marker[2].strip().split(",")))


def roots(modules: set[str]) -> set[str]:
    return modules | {m.split(".")[0] for m in modules}


def test_import_client_stays_light(credd_env):
    loaded = roots(loaded_modules("import credd.client", credd_env))
    assert "msgspec" in loaded  # the probe works: the client does need msgspec
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_get_help_stays_light(credd_env):
    loaded = roots(loaded_modules(
        "from credd.cli import main\nmain(['get', '--help'])", credd_env))
    assert "argparse" in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


@pytest.mark.parametrize("argv", [["--help"], ["mcp", "--help"]])
def test_the_mcp_sdk_loads_only_for_credd_mcp(credd_env, argv):
    """The whole parser tree (and `credd mcp --help`) names `credd mcp` without its SDK."""
    loaded = roots(loaded_modules(f"from credd.cli import main\nmain({argv!r})", credd_env))
    assert "credd.cli.mcp" in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


@pytest.fixture
def stored(unlocked_agent):
    with unlocked_agent.client() as c:
        c.set("hygiene", value="v")
    return unlocked_agent


@pytest.mark.parametrize("argv", [["get", "hygiene"], ["get", "-n", "hygiene/nofield"],
                                  ["status"], ["status", "--json"], ["get", "missing"]])
def test_fast_path_loads_only_the_stdlib_it_needs(stored, credd_env, argv):
    code = f"from credd.cli import main\nrc = main({argv!r})\nassert rc in (0, 5), rc"
    loaded = roots(loaded_modules(code, credd_env, "-S"))
    assert "credd.cli.fast" in loaded
    assert not loaded & FAST_FORBIDDEN, sorted(loaded & FAST_FORBIDDEN)


def test_fast_path_without_agent_stays_light(credd_env):
    code = "from credd.cli import main\nrc = main(['get', 'x'])\nassert rc == 4, rc"
    loaded = roots(loaded_modules(code, credd_env, "-S"))
    assert not loaded & FAST_FORBIDDEN, sorted(loaded & FAST_FORBIDDEN)


@pytest.mark.parametrize("command", ["run", "inject"])
def test_run_and_inject_fetch_without_msgspec(stored, credd_env, tmp_path, command):
    """They need argparse, but fetch through the fast path's get_many (msgspec: ~50 ms).
    (`run --no-mask` execs the program, so the masked run is the one probed.)"""
    template = tmp_path / "t.txt"
    template.write_text("key={{ credd://hygiene }}\n")
    argv = (["run", "--env", "V=credd://hygiene", "--", "true"] if command == "run"
            else ["inject", "-i", str(template), "-o", str(tmp_path / "out.txt")])
    code = f"from credd.cli import main\nrc = main({argv!r})\nassert rc == 0, rc"
    loaded = roots(loaded_modules(code, credd_env))
    forbidden = HEAVY | {"msgspec", "credd.client", "credd.protocol"}
    assert "argparse" in loaded and "credd.cli.fast" in loaded
    assert not loaded & forbidden, sorted(loaded & forbidden)
    if command == "inject":
        assert (tmp_path / "out.txt").read_text() == "key=v\n"


def imports_of(path) -> set[str]:
    """Every module a source file imports, at its top or inside a function."""
    import ast
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_fast_path_and_the_helpers_never_import_the_argparse_cli_output():
    """Hints are the error classes' own and printing is credd.cli.console's, so neither
    the fast path nor the git/docker/keyring helpers import cli/output.py, and output.py
    does not import the fast path back (the two imported each other)."""
    from tests.conftest import REPO
    credd = REPO / "credd"
    for path in (credd / "cli" / "fast.py", credd / "cli" / "console.py",
                 *(credd / "integrations").glob("*.py")):
        assert "credd.cli.output" not in imports_of(path), path
    assert "credd.cli.fast" not in imports_of(credd / "cli" / "output.py")
    assert not {m for m in imports_of(credd / "cli" / "console.py")
                if m.startswith("credd.cli")}
