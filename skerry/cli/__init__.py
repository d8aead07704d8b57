"""The ``skerry`` command: one entry point for every service's commands.

Each command module's ``add_commands(subparsers)`` registers its commands and imports its heavy
dependencies only inside handlers (the only lazy imports of the code base), so ``skerry --help`` stays fast and an image with only one
extra installed still lists every command (one it cannot run says which extra it needs).

Every command runs inside one error wrapper (``skerry.cli.errors``): a failure is one line on
stderr, ``skerry COMMAND: error: MESSAGE``, never a traceback, and the exit code says what kind:

  ====  =============================================================================
  code  meaning
  ====  =============================================================================
  0     done
  1     failed or refused: a check, a peer or a gate said no, a file is missing or bad,
        a peer is unreachable (``skerry diff``: differences found; 2 is its error)
  2     usage: unknown command or flag, a bad value, a wrong combination of flags
  4     the command needs an optional dependency group: ``pip install 'skerry[EXTRA]'``
  130   interrupted (Ctrl-C)
  141   stdout was closed before all output was written (``skerry status | head``)
  ====  =============================================================================

Shell completion: ``source <(skerry completion bash)`` (also ``zsh``, ``fish``).

Modules: ``parser`` (the argument parser every command is built with), ``errors`` (the wrapper above),
``output`` (``-o table|wide|json|yaml``), ``contexts`` (where a client finds its hub: flags, ``SKERRY_*``,
the current context), ``completion``; the commands: ``identity`` (``operator add``, ``login``,
``context``), ``cluster`` (``cluster add|revoke``), ``fleet`` (``status``, ``fetch``), ``promotion``
(``promote``, ``freight``, ``rollback``, ``environments``), ``keys`` (``keys ...``), ``explain``,
``install``; the services' own: ``hub`` (``hub serve|seed``, ``render``), ``agent`` (``agent run|enroll``,
``diff``, ``suspend``, ``resume``, ``reconcile``), ``seal`` and ``sealer`` (``sealer serve|keys``). A
service's flags come from its config dataclass (``skerry.core.config``), which is light to import, and
``service`` starts each of them the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from skerry.cli.errors import ExitCode, fail, output_closed, run
from skerry.cli.parser import Parser

# Each module's add_commands registers its commands; handlers import service code only when run.
SERVICE_CLIS = ("skerry.cli.hub", "skerry.cli.render", "skerry.cli.promotion", "skerry.cli.agent", "skerry.cli.seal", "skerry.cli.sealer",
                "skerry.demo", "skerry.cli.keys", "skerry.cli.explain", "skerry.cli.identity", "skerry.cli.completion",
                "skerry.cli.cluster", "skerry.cli.install", "skerry.cli.fleet")
# The module that registers each top-level command (checked against ``SERVICE_CLIS`` by a test): what
# ``main`` builds for one command. `skerry render` has to start about as fast as `kubectl kustomize`.
COMMAND_MODULES = {
    "hub": "skerry.cli.hub", "render": "skerry.cli.render",
    "environments": "skerry.cli.promotion", "freight": "skerry.cli.promotion", "promote": "skerry.cli.promotion",
    "rollback": "skerry.cli.promotion",
    "agent": "skerry.cli.agent", "diff": "skerry.cli.agent", "reconcile": "skerry.cli.agent",
    "resume": "skerry.cli.agent", "suspend": "skerry.cli.agent",
    "seal": "skerry.cli.seal", "sealer": "skerry.cli.sealer",
    "demo": "skerry.demo", "keys": "skerry.cli.keys", "explain": "skerry.cli.explain",
    "context": "skerry.cli.identity", "login": "skerry.cli.identity", "operator": "skerry.cli.identity",
    "completion": "skerry.cli.completion", "cluster": "skerry.cli.cluster", "install": "skerry.cli.install",
    "fetch": "skerry.cli.fleet", "status": "skerry.cli.fleet",
}

EPILOG = """\
exit codes: 0 done; 1 failed or refused (one line on stderr says why); 2 usage (bad flag or value);
4 an optional extra is missing (pip install 'skerry[hub|agent|sealer]'); 130 interrupted;
141 stdout closed early. Shell completion: source <(skerry completion bash|zsh|fish).
"""


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skerry")
    except PackageNotFoundError:
        return "(not installed)"


def _version(_args) -> int:
    print(f"skerry {_installed_version()}")
    return 0


class _Version(argparse.Action):
    """``--version``: print and exit 0 (the version is looked up only when asked for)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"skerry {_installed_version()}")
        parser.exit(0)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with ``command`` (a top-level command name) only the parsers of
    the module that registers it (``COMMAND_MODULES``), so a command starts without building
    the others (the hub's ``serve`` flags alone cost ~90 ms)."""
    parser = Parser(prog="skerry", description="Pull-based GitOps: hub, agent and sealer.", epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, help="print the Skerry version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    owner = COMMAND_MODULES.get(command or "")
    for module in SERVICE_CLIS if owner is None else (owner,):
        importlib.import_module(module).add_commands(sub)
    p = sub.add_parser("version", help="print the Skerry version")
    p.set_defaults(func=_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["__complete"]:
        from skerry.cli.completion import complete

        return run("skerry __complete", lambda _: complete(build_parser(), argv[1:]), None)
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already said in one line
        code = e.code if isinstance(e.code, int) else ExitCode.USAGE
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return output_closed("skerry")
        return code
    except BrokenPipeError:  # --help into a closed pipe
        return output_closed("skerry")
    func = getattr(args, "func", None)
    if func is None:
        return fail(args.command_name, f"give a command (see {args.command_name} --help)", ExitCode.USAGE)
    return run(args.command_name, func, args)


if __name__ == "__main__":
    sys.exit(main())
