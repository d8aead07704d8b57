"""The agent's command line: ``skerry agent run``.

``add_commands`` plugs it into the top-level ``skerry`` parser. Heavy
imports (grpc, kubernetes) happen inside the handler so ``--help`` stays
fast. Every flag falls back to its ``SKERRY_AGENT_*`` variable. A failure
prints one line, ``skerry agent run: error: ...`` naming the file or peer,
and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

COMMAND = "skerry agent run"

EPILOG = """\
example:
  skerry agent run --cluster oslo --hub hub.example:8443 --sealer sealer.example:7443 \\
    --tls-ca ca.crt --tls-cert agent.crt --tls-key agent.key \\
    --trusted-key hub-signing.pub --state-dir /var/lib/skerry/agent
"""


def add_commands(subparsers) -> None:
    """Add ``agent`` (with ``run``) to an argparse sub-parsers object."""
    agent = subparsers.add_parser(
        "agent",
        help="run the in-cluster agent",
        description="The agent: pulls, verifies and applies bundles.",
    )
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)
    agent.set_defaults(func=lambda args: _print_help(agent))
    run = agent_sub.add_parser(
        "run",
        help="watch the hub and reconcile this cluster",
        description="Watch the hub for this cluster's signed bundles, verify them and apply them with "
        "server-side apply. Every flag falls back to its SKERRY_AGENT_* environment variable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    path = pathlib.Path
    run.add_argument("--cluster", help="this cluster's name (as in the agent certificate)")
    run.add_argument("--hub", dest="hub_address", metavar="HOST:PORT", help="hub address")
    run.add_argument(
        "--sealer", dest="sealer_address", metavar="HOST:PORT", help="sealer address (for SealedSecrets)"
    )
    run.add_argument(
        "--sealer-domain", metavar="DOMAIN", help="sealer key domain (default: the sealer's default)"
    )
    run.add_argument(
        "--tls-ca", type=path, metavar="FILE", help="CA bundle that signs the hub and the sealer"
    )
    run.add_argument("--tls-cert", type=path, metavar="FILE", help="the agent's client certificate")
    run.add_argument("--tls-key", type=path, metavar="FILE", help="the agent's private key")
    run.add_argument(
        "--trusted-key",
        dest="trusted_keys",
        type=path,
        action="append",
        metavar="FILE",
        help="hub public key (PEM) trusted to sign bundles; repeatable",
    )
    run.add_argument(
        "--signature-threshold", type=int, metavar="N", help="how many trusted keys must sign (default: 1)"
    )
    run.add_argument(
        "--kubeconfig",
        type=path,
        metavar="FILE",
        help="kubeconfig (default: in-cluster, then ~/.kube/config)",
    )
    run.add_argument("--kube-context", metavar="NAME", help="kubeconfig context (default: current)")
    run.add_argument(
        "--state-dir",
        type=path,
        metavar="DIR",
        help="verifier state and bundle cache (default: /var/lib/skerry/agent)",
    )
    run.add_argument(
        "--namespace",
        metavar="NS",
        help="the agent's namespace, holds the inventory (default: skerry-system)",
    )
    run.add_argument(
        "--field-manager", metavar="NAME", help="server-side apply field manager (default: skerry)"
    )
    run.add_argument(
        "--ready-file", type=path, metavar="FILE", help="write a JSON status here after each reconcile"
    )
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default: info")
    run.add_argument(
        "--allow-prune-all",
        action="store_true",
        default=None,
        help="let an empty bundle prune every recorded object (default: refuse)",
    )
    run.add_argument("--trust-root", type=path, metavar="FILE",
                     help="TUF root.json to bootstrap from (the hub's <trust-dir>/root.json); replaces --trusted-key")
    run.add_argument("--environment", metavar="ENV", help="this cluster's environment (with --trust-root)")
    run.add_argument("--freeze-policy", choices=("keep", "suspend"),
                     help="on expired metadata: keep re-applying the last good state (default) or suspend")
    run.add_argument("--trust-poll", metavar="SECONDS", help="TUF refresh interval without notifications")
    run.set_defaults(func=handler)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fail(message: str) -> int:
    print(f"{COMMAND}: error: {message}", file=sys.stderr)
    return 1


_FIELDS = (
    "cluster",
    "hub_address",
    "sealer_address",
    "sealer_domain",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "trusted_keys",
    "signature_threshold",
    "kubeconfig",
    "kube_context",
    "state_dir",
    "namespace",
    "field_manager",
    "ready_file",
    "log_level",
    "allow_prune_all",
    "trust_root",
    "environment",
    "freeze_policy",
    "trust_poll",
)


def handler(args: argparse.Namespace) -> int:
    import asyncio

    from skerry.agent.app import run
    from skerry.agent.config import AgentConfig
    from skerry.core import logging as skerry_logging
    from skerry.core.errors import SkerryError

    try:
        config = AgentConfig.from_env(None, **{f: getattr(args, f, None) for f in _FIELDS})
        skerry_logging.configure(config.log_level)
        asyncio.run(run(config))
    except SkerryError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback; messages carry no secret values
        return _fail(f"{type(e).__name__}: {e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skerry")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
