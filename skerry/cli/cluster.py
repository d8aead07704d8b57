"""``skerry cluster add|revoke``: bootstrap tokens for agents, and revoking them.

``cluster add NAME`` prints a single-use token from the hub's state directory (run on the hub
host). ``cluster add NAME --install --context WORKLOAD --environment ENV`` does the rest too: it
takes the token key, the TUF root and the hub's addresses from the management cluster
(``--management-context``, made by ``skerry install``) and applies the agent with its token into
the workload cluster, so no token is ever shown.
"""

from __future__ import annotations

import pathlib
import sys

from skerry.cli.errors import UsageError
from skerry.cli.install import apply_or_print


def add_commands(subparsers) -> None:
    cluster = subparsers.add_parser(
        "cluster",
        help="enroll and revoke clusters' agents",
        description="Bootstrap tokens and revocation for agents. Works on the hub's state directory "
        "(--state-dir or SKERRY_HUB_STATE_DIR), or with --install on the clusters themselves; a running hub "
        "sees revocations within a second.",
    )
    commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    add = commands.add_parser(
        "add",
        help="a single-use, expiring bootstrap token for a cluster's agent (--install: and the agent itself)",
        description="Print a bootstrap token for `skerry agent enroll --token`. It is single-use and expires "
        "(default 1h); the certificate it buys names exactly this cluster. With --install, apply the agent and "
        "its token into the workload cluster (--context) instead of printing it.",
    )
    add.add_argument("name", metavar="NAME", help="cluster name, as in skerry.yaml")
    add.add_argument("--ttl", default="1h", metavar="DURATION", help="token lifetime, at most 24h (default 1h)")
    add.add_argument("--state-dir", metavar="DIR", help="the hub's state directory (without --install)")
    add.add_argument("--install", action="store_true", help="install the agent into the cluster of --context")
    add.add_argument("--environment", metavar="ENV", help="the cluster's environment (with --install; required)")
    add.add_argument("--kubeconfig", type=pathlib.Path, metavar="FILE",
                     help="kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
    add.add_argument("--context", metavar="NAME", help="the workload cluster's kubeconfig context")
    add.add_argument("--management-context", metavar="NAME",
                     help="the management cluster's context (default: the current one)")
    add.add_argument("--manifests", type=pathlib.Path, metavar="DIR", help="deploy/ directory (default: the one this Skerry ships with)")
    add.add_argument("--dry-run", action="store_true", help="with --install: print the objects instead")
    add.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format of --dry-run")
    add.set_defaults(func=cluster_add_command)
    revoke = commands.add_parser(
        "revoke",
        help="revoke a cluster's agent certificates (or one by fingerprint); open streams close",
        description="Revoke every certificate of cluster NAME issued until now, or one certificate by "
        "--fingerprint. The running hub refuses them and closes their open streams within a second. "
        "Re-enroll the cluster with a new `skerry cluster add NAME` token.",
    )
    revoke.add_argument("name", nargs="?", metavar="NAME", help="cluster whose certificates to revoke")
    revoke.add_argument("--fingerprint", metavar="SHA256", help="revoke one certificate by its SHA-256 fingerprint")
    revoke.add_argument("--state-dir", metavar="DIR", help="the hub's state directory")
    revoke.set_defaults(func=cluster_revoke_command)


def cluster_add_command(args) -> int:
    import time

    from skerry.core.duration import parse_duration

    ttl = parse_duration(args.ttl, "--ttl")
    if args.install:
        return _install_agent(args, ttl)
    if args.context or args.management_context or args.environment or args.dry_run:
        raise UsageError("--context, --management-context, --environment and --dry-run need --install")
    from skerry.hub.config import state_dir_from_env
    from skerry.hub.enrollment.service import DIR_NAME
    from skerry.hub.enrollment.tokens import TokenIssuer, check_cluster_name

    check_cluster_name(args.name)
    token, claims = TokenIssuer.load_or_create(state_dir_from_env(args.state_dir) / DIR_NAME).issue(args.name, ttl)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.expires))
    print(token)
    print(f"single-use token for cluster {args.name!r}, expires {expires}; on the cluster run:\n"
          f"  skerry agent enroll --hub HUB:ENROLL_PORT --tls-ca hub-ca.crt --token <token>", file=sys.stderr)
    return 0


def _install_agent(args, ttl: float) -> int:
    from skerry.install import cluster, management, manifests, workload
    from skerry.install import material as m

    if not args.environment:
        raise UsageError("--install needs --environment ENV (the cluster's environment in skerry.yaml)")
    if args.state_dir:
        raise UsageError("--state-dir: with --install the token key comes from the management cluster")
    mgmt = cluster.connect(args.kubeconfig, args.management_context)
    try:
        live = cluster.existing(mgmt, m.NAMESPACE, [("Secret", m.SEED), ("ConfigMap", m.TRUST),
                                                    ("ConfigMap", management.ADDRESSES)])
    finally:
        mgmt.close()
    source = workload.Management.from_live(live)
    token, claims = source.token(args.name, ttl)
    objects = workload.agent_objects(source, args.name, args.environment, token,
                                     manifests.deploy_dir(args.manifests))
    kube = cluster.connect(args.kubeconfig, args.context)
    try:
        apply_or_print(args, kube, objects)
    finally:
        kube.close()
    print(f"agent of cluster {args.name!r} installed; its token is single-use and expires in "
          f"{int(ttl)}s: the agent must start before then", file=sys.stderr)
    return 0


def cluster_revoke_command(args) -> int:
    from skerry.hub.app import open_hub_state
    from skerry.hub.config import state_dir_from_env, state_from_env
    from skerry.hub.enrollment.revocation import Revocations
    from skerry.hub.enrollment.service import DIR_NAME
    from skerry.hub.enrollment.tokens import check_cluster_name

    if bool(args.name) == bool(args.fingerprint):
        raise UsageError("give a cluster NAME or --fingerprint SHA256 (one of them)")
    state_dir = state_dir_from_env(args.state_dir)
    # The hub's state database (SKERRY_HUB_STATE, ..._DSN_FILE, ..._DSN; default <state dir>/hub.db).
    state = open_hub_state(state_dir=state_dir, **state_from_env())
    try:
        revocations = Revocations(state_dir / DIR_NAME, state)
        if args.name:
            revocations.revoke_cluster(check_cluster_name(args.name))
            print(f"revoked every certificate of cluster {args.name!r} issued until now", file=sys.stderr)
        else:
            revocations.revoke_fingerprint(args.fingerprint)
            print(f"revoked certificate {args.fingerprint}", file=sys.stderr)
    finally:
        state.close()
    return 0
