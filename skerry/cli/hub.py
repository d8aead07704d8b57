"""``skerry hub serve|seed``.

``skerry.cli`` calls ``add_commands(subparsers)``. Handlers take the parsed
arguments and return an exit status; heavy imports happen inside them so
``skerry --help`` stays fast. Failures print one line and return 1, never a
traceback. ``skerry render`` is ``skerry.cli.render``.
"""

from __future__ import annotations

import argparse
import sys

from skerry.cli.service import serve
from skerry.core import config as settings
from skerry.hub.config import ENV_PREFIX, HubConfig


def add_commands(subparsers) -> None:
    hub = subparsers.add_parser("hub", help="run the hub (render, sign and serve bundles)")
    hub_commands = hub.add_subparsers(dest="hub_command", metavar="COMMAND")
    hub_commands.required = True
    serve = hub_commands.add_parser(
        "serve",
        help="serve bundles to agents over mutual TLS",
        description="Follow a Git branch, render and sign one bundle per cluster, serve them over gRPC. "
        "Every flag can also be set as SKERRY_HUB_<FLAG> (e.g. SKERRY_HUB_TLS_CA); flags win.",
    )
    settings.add_flags(serve, HubConfig, ENV_PREFIX)  # one flag per HubConfig setting, named after it
    serve.set_defaults(func=serve_command)
    seed = hub_commands.add_parser(
        "seed",
        help="copy what `skerry install` made onto a new hub's state directory (the pod's init container)",
        description="Copy the enrollment CA, the token key and the TUF repository from --from (the "
        "skerry-hub-seed Secret) into --state-dir where the hub has none yet; never over what it has.",
    )
    seed.add_argument("--from", dest="seed_dir", required=True, metavar="DIR", help="the mounted seed Secret")
    seed.add_argument("--state-dir", required=True, metavar="DIR", help="the hub's state directory")
    seed.set_defaults(func=seed_command)


# --- hub serve -----------------------------------------------------------------------------


def serve_command(args: argparse.Namespace) -> int:
    from skerry.hub.app import run

    return serve("skerry hub serve", HubConfig, args, run, configure_logging=False)  # the hub configures its own


# --- hub seed ------------------------------------------------------------------------------


def seed_command(args: argparse.Namespace) -> int:
    import pathlib

    from skerry.hub.seed import seed_state

    outcome = seed_state(pathlib.Path(args.seed_dir), pathlib.Path(args.state_dir))
    for path in outcome.copied:
        print(f"seeded {path}", file=sys.stderr)
    for path in outcome.differs:
        print(f"kept {path}: the hub's own differs from the seed (left as it is)", file=sys.stderr)
    return 0

