"""Shell completion, driven through real bash and fish against a real agent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.tools import needs


@pytest.fixture
def shell_env(credd_env, tmp_path):
    """PATH with a `credd` that runs this checkout, as an installed one would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "credd"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m credd \"$@\"\n")
    launcher.chmod(0o755)
    return dict(credd_env, PATH=f"{bin_dir}:{credd_env['PATH']}", PYTHONPATH=str(REPO))


@pytest.fixture
def entries(client):
    for name in ("github/token", "github/work", "aws/prod"):
        client.set(name, value="v")
    client.set("old/thing", value="v")
    client.delete("old/thing")


def bash_complete(env, line: str) -> list[str]:
    script = subprocess.run(["credd", "completion", "bash"], env=env, capture_output=True,
                            text=True, check=True).stdout
    words = line.split(" ")
    program = (f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
               f"COMP_CWORD={len(words) - 1}\n_credd_complete\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", program], env=env, capture_output=True, text=True,
                         timeout=30).stdout
    return [w for w in out.splitlines() if w]


def test_subcommands_and_options_complete(shell_env):
    assert {"get", "generate"} <= set(bash_complete(shell_env, "credd ge"))
    assert "--value-stdin" in bash_complete(shell_env, "credd set x --val")
    assert bash_complete(shell_env, "credd keyring e") == ["enroll"]


def test_entry_names_come_from_the_agent_by_prefix(shell_env, entries):
    assert bash_complete(shell_env, "credd get git") == ["github/token", "github/work"]
    assert bash_complete(shell_env, "credd mv a") == ["aws/prod"]
    assert bash_complete(shell_env, "credd undelete ") == ["old/thing"]  # from the trash


def test_no_names_when_the_agent_is_locked_or_absent(shell_env, unlocked_agent, entries):
    with unlocked_agent.client() as c:
        c.lock()
    assert bash_complete(shell_env, "credd get git") == []
    unlocked_agent.stop()
    assert bash_complete(shell_env, "credd get git") == []
    assert "get" in bash_complete(shell_env, "credd g")  # commands still complete


def test_option_values_and_child_commands_are_left_to_the_shell(shell_env, entries):
    assert bash_complete(shell_env, "credd run --env-file ") == []
    assert bash_complete(shell_env, "credd run -- gi") == []


@needs("fish")
def test_fish_script(shell_env, entries):
    script = subprocess.run(["credd", "completion", "fish"], env=shell_env, capture_output=True,
                            text=True, check=True).stdout
    out = subprocess.run(["fish", "--no-config", "-c", f"{script}\ncomplete -C 'credd get git'"],
                         env=shell_env, capture_output=True, text=True, timeout=30).stdout
    assert [line.split("\t")[0] for line in out.splitlines()] == ["github/token", "github/work"]


@needs("zsh")
def test_zsh_script_parses(shell_env):
    script = subprocess.run(["credd", "completion", "zsh"], env=shell_env, capture_output=True,
                            text=True, check=True).stdout
    assert subprocess.run(["zsh", "-n", "-c", script], timeout=30).returncode == 0
