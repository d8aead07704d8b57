"""The argument parser every ``skerry`` command is built with.

Why not plain ``argparse.ArgumentParser``: its errors print the usage block and then the error
(several lines); ours print one line naming the command, and point at ``--help``. It also
records which command was parsed (``args.command_name``: ``"skerry cluster add"``) so the
error wrapper can name it.
"""

from __future__ import annotations

import argparse
import sys

from skerry.cli.errors import ExitCode, fail


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse's hook; never returns
        sys.exit(fail(self.prog, f"{message} (see {self.prog} --help)", ExitCode.USAGE))

    def _print_message(self, message, file=None):
        # argparse swallows OSError here; a closed stdout must reach the error wrapper instead.
        if message:
            (file or sys.stderr).write(message)

    def parse_args(self, args=None, namespace=None):
        namespace, rest = self.parse_known_args(args, namespace)
        if rest:  # name the command that did not take them, not just "skerry"
            self.prog = getattr(namespace, "command_name", None) or self.prog
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        return namespace

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        if getattr(namespace, "command_name", None) is None:
            namespace.command_name = self.prog  # the innermost parser that parsed sets it first
        return namespace, rest


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield ``(words, parser)`` for every runnable command under ``parser`` (depth first)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: child
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)
        for name, child in a.choices.items()
    }


def duration_type(flag: str, unit: float = 1.0):
    """An argparse ``type``: a Go-style duration (``30s``, ``5m``, ``1h30m``) as a number of ``unit`` seconds."""

    def duration(text: str) -> float:
        from skerry.core.duration import parse_duration
        from skerry.core.errors import ConfigError

        try:
            return parse_duration(text, flag) / unit
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag}: ")) from None

    return duration
