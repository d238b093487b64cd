"""A command builds only its own module's part of the argparse tree, and nothing shows it."""

from __future__ import annotations

import argparse
import importlib

import pytest

from credd.cli import COMMANDS, build_parser, main

EVERY_COMMAND = [command for names in COMMANDS.values() for command in names]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.mark.parametrize("module", list(COMMANDS))
def test_the_table_is_what_each_module_registers(module):
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"credd.cli.{module}").register(sub)
    assert tuple(sub.choices) == COMMANDS[module]


def test_no_command_is_registered_twice():
    assert len(EVERY_COMMAND) == len(set(EVERY_COMMAND))


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_a_commands_own_tree_gives_the_same_help(command):
    full, own = subcommands(build_parser())[command], subcommands(build_parser(command))[command]
    assert own.format_help() == full.format_help()


def test_anything_else_builds_the_whole_tree(capsys):
    assert set(subcommands(build_parser("--help"))) == set(EVERY_COMMAND)
    assert set(subcommands(build_parser())) == set(EVERY_COMMAND)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in EVERY_COMMAND)


def test_an_unknown_command_is_a_usage_error_naming_the_nearest(capsys):
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    assert main(["shwo"]) == 2
    assert "did you mean `credd show`?" in capsys.readouterr().err
