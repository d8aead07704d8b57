"""Every command of ``skerry``: help works, and bad input gives one line, a documented code, no traceback.

The commands are found by walking the real parser, so a new command is covered the day it is
added. For each: ``--help`` (exit 0); ``--help`` into a closed pipe (exit 141, one line); a bad
value for a flag with choices, or an unknown flag (exit 2, one line); every file flag pointing
at a missing file with the required arguments filled in (a documented non-zero code, one line).
A missing extra is shown by hiding the Python module the command needs.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

import pytest

from skerry.cli import build_parser
from skerry.cli.errors import EXTRA_OF_MODULE, ExitCode
from skerry.cli.parser import leaves, subcommands

from .helpers import DOCUMENTED_FAILURES, error_line, skerry

pytestmark = pytest.mark.timeout(900)  # each test starts ~32 processes; slow on a loaded machine

COMMANDS = {" ".join(words): parser for words, parser in leaves(build_parser())}
# Commands that, given only missing files, would still do real work (start a whole demo stack).
NOT_RUN_WITH_PLACEHOLDERS = {"demo"}
MISSING = "/dev/null/missing"  # cannot exist and cannot be created, even by root


def _is_file_flag(action: argparse.Action) -> bool:
    metavar = str(action.metavar or "")
    return action.option_strings != [] and action.nargs != 0 and (
        "FILE" in metavar or "DIR" in metavar or action.type is not None and getattr(action.type, "__name__", "")
        in ("Path", "PosixPath"))


def _placeholder(action: argparse.Action) -> list[str]:
    if action.choices:
        return [str(next(iter(action.choices)))]
    if _is_file_flag(action):
        return [MISSING]
    if "PORT" in str(action.metavar or ""):
        return ["127.0.0.1:1"]  # nothing listens on port 1
    if action.type in (int, float):
        return ["1"]
    return ["x"]


def bad_file_args(parser: argparse.ArgumentParser) -> list[str]:
    """Required arguments filled with placeholders, every file flag pointing at a missing file."""
    args: list[str] = []
    group_done: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == argparse.SUPPRESS:
            continue
        if not action.option_strings:
            if action.nargs in (None, 1, "+") or (action.nargs == "?" and action.dest != "help"):
                args += _placeholder(action)
            continue
        groups = [g for g in parser._mutually_exclusive_groups if action in g._group_actions]
        if groups and id(groups[0]) in group_done:
            continue
        if action.required or _is_file_flag(action):
            if groups:
                group_done.add(id(groups[0]))
            if action.nargs == 0:
                args.append(action.option_strings[0])
            else:
                args += [action.option_strings[-1], *_placeholder(action)]
    return args


def command_line(name: str) -> list[str]:
    """The words of ``name`` with each level's required arguments and missing files after its word."""
    parser, argv = build_parser(), []
    for word in name.split():
        parser = subcommands(parser)[word]
        argv += [word, *bad_file_args(parser)]
    return argv


def _bad_value_args(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if action.option_strings and action.choices and action.nargs != 0:
            return [action.option_strings[-1], "no-such-choice"]
    return ["--no-such-flag"]


def _each(fn):
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(COMMANDS, pool.map(fn, COMMANDS), strict=True))


def test_the_walk_finds_every_service_command():
    assert {"hub serve", "agent run", "sealer serve", "render", "status", "promote", "freight", "seal",
            "keys sign", "cluster add", "completion", "version"} <= set(COMMANDS)


def test_every_command_has_help():
    results = _each(lambda name: skerry(*name.split(), "--help"))
    for name, proc in results.items():
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout.startswith(f"usage: skerry {name}"), (name, proc.stdout[:200])
        assert proc.stderr == "", (name, proc.stderr)


def test_every_command_into_a_closed_pipe_says_so_in_one_line():
    results = _each(lambda name: skerry(*name.split(), "--help", closed_stdout=True))
    for name, proc in results.items():
        line = error_line(proc)
        assert proc.returncode == ExitCode.OUTPUT_CLOSED, (name, proc.returncode, line)
        assert "stdout was closed" in line, (name, line)


def test_every_command_refuses_a_bad_value_in_one_line():
    results = _each(lambda name: skerry(*name.split(), *_bad_value_args(COMMANDS[name])))
    for name, proc in results.items():
        line = error_line(proc)
        assert proc.returncode == ExitCode.USAGE, (name, proc.returncode, line)
        named = line.split(": error: ")[0]
        assert f"{name} ".startswith(named.removeprefix("skerry ") + " "), (name, line)  # it or a parent


def test_every_command_given_missing_files_fails_in_one_line_with_a_documented_code():
    def attempt(name):
        if name in NOT_RUN_WITH_PLACEHOLDERS:
            return None
        return skerry(*command_line(name), env={"HOME": MISSING, "KUBECONFIG": MISSING})

    succeeded = []
    for name, proc in _each(attempt).items():
        if proc is None or proc.returncode == 0:
            succeeded.append(name)
            continue
        line = error_line(proc)
        assert proc.returncode in DOCUMENTED_FAILURES, (name, proc.returncode, line)
        assert line.startswith("skerry "), (name, line)
    assert set(succeeded) <= {"demo", "version", "completion"}, succeeded  # they read no file


@pytest.mark.parametrize(
    "argv, hidden, extra",
    [
        (["suspend", "--cluster", "x"], "kubernetes", "agent"),
        (["diff", "--cluster", "x", "-f", "/dev/null"], "kubernetes", "agent"),
        (["render", "--repo", "x", "--cluster", "y"], "git", "hub"),
    ],
)
def test_a_missing_extra_is_named_with_the_pip_command(argv, hidden, extra):
    # None in sys.modules makes `import kubernetes` raise ModuleNotFoundError, as if it were not installed.
    proc = skerry(*argv, prelude=f"import sys; sys.modules[{hidden!r}] = None")
    line = error_line(proc)
    assert proc.returncode == ExitCode.MISSING_EXTRA, line
    assert f"pip install 'skerry[{extra}]'" in line
    assert EXTRA_OF_MODULE[hidden] == extra


@pytest.mark.parametrize("argv", [["completion", "bash"], ["version"], ["render", "examples/fleet/overlays/dev"]])
def test_a_commands_own_output_into_a_closed_pipe_is_one_line_and_141(argv):
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    proc = skerry(*argv, closed_stdout=True, cwd=root)
    line = error_line(proc)
    assert proc.returncode == ExitCode.OUTPUT_CLOSED, line
    assert line == f"skerry {argv[0]}: error: stdout was closed before all output was written"
