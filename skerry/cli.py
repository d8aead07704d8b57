"""The ``skerry`` command: one entry point, sub-commands dispatched to each service's cli module.

Each service's ``cli.add_commands(subparsers)`` registers its commands and
imports its heavy dependencies only inside handlers, so ``skerry --help``
stays fast and an image with only one extra installed still runs its own
commands (a service whose extra is missing is simply not listed).
"""

from __future__ import annotations

import argparse
import importlib
import sys

SERVICE_CLIS = ("skerry.hub.cli", "skerry.agent.cli", "skerry.sealer.cli", "skerry.demo", "skerry.hub.trust.cli",
               "skerry.agent.explain")


def _version(_args) -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        print(f"skerry {version('skerry')}")
    except PackageNotFoundError:
        print("skerry (not installed)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skerry", description="Pull-based GitOps: hub, agent and sealer.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SERVICE_CLIS:
        importlib.import_module(module).add_commands(sub)
    p = sub.add_parser("version", help="print the Skerry version")
    p.set_defaults(func=_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
