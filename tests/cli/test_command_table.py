"""``skerry COMMAND`` builds only the parser of the module that registers COMMAND: the table that says
which module that is must match what every module registers, or a command would vanish."""

from __future__ import annotations

import importlib

from skerry.cli import COMMAND_MODULES, SERVICE_CLIS, build_parser
from skerry.cli.parser import Parser, subcommands


def registered_by(module: str) -> set[str]:
    parser = Parser(prog="skerry")
    importlib.import_module(module).add_commands(parser.add_subparsers())
    return set(subcommands(parser))


def test_every_command_is_mapped_to_the_module_that_registers_it():
    table = {module: {c for c, m in COMMAND_MODULES.items() if m == module} for module in SERVICE_CLIS}
    assert {module: registered_by(module) for module in SERVICE_CLIS} == table
    assert set(COMMAND_MODULES.values()) <= set(SERVICE_CLIS)


def test_one_commands_parser_parses_as_the_whole_one_does():
    argv = ["render", "some/dir", "-o", "json", "--engine", "binary"]
    whole, one = build_parser().parse_args(argv), build_parser("render").parse_args(argv)
    assert vars(whole) == vars(one)
    assert set(subcommands(build_parser("render"))) == {"render", "version"}
    assert set(subcommands(build_parser("no-such-command"))) == set(COMMAND_MODULES) | {"version"}
