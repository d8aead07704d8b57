"""``skerry install``: the hub and the sealer into a management cluster, with everything they need.

Like ``flux bootstrap``: one command from a kubeconfig context and a Git URL to a running
installation. The work is ``skerry.install``; this module parses and prints::

  skerry install --repo ssh://git@git.example/fleet.git --git-ssh-key deploy.key \\
      --git-known-hosts known_hosts --env dev --env prod:3:2 --name hub.example.com [--context mgmt]
  skerry install ... --dry-run -o yaml          # print every object instead of applying

Run again, it changes nothing (the keys of the first run are read back from the cluster).
"""

from __future__ import annotations

import pathlib
import sys

from skerry.cli.errors import UsageError

OFFLINE_ADVICE = (
    "offline keys written to {dir} (0600): the TUF root and targets keys, the release keys and the installation "
    "CA key. Keep them off this machine (an encrypted USB stick or a password manager); you need them to add or "
    "rotate keys (skerry keys) and to re-issue the hub's and sealer's certificates (skerry install again)."
)


def add_kube_flags(p) -> None:
    p.add_argument("--kubeconfig", type=pathlib.Path, metavar="FILE",
                   help="kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "install",
        help="install the hub and the sealer into a management cluster (keys, certificates, trust, manifests)",
        description="Make every key, CA, certificate, Secret and ConfigMap deploy/overlays/management needs and "
        "the TUF repository, then apply it all with server-side apply. Online keys go straight into Secrets; "
        "offline keys (TUF root, targets, release, the installation CA) are written under --out-dir, 0600. "
        "Idempotent: a second run reads the first run's keys back from the cluster.",
    )
    p.add_argument("--repo", required=True, metavar="URL", help="the fleet's Git repository (the hub follows it)")
    p.add_argument("--branch", default="main", metavar="NAME", help="branch to follow (default main)")
    p.add_argument("--git-ssh-key", type=pathlib.Path, metavar="FILE", help="SSH deploy key (ssh:// URLs)")
    p.add_argument("--git-known-hosts", type=pathlib.Path, metavar="FILE",
                   help="known_hosts the Git server's host key must be in (with --git-ssh-key)")
    p.add_argument("--git-token-file", type=pathlib.Path, metavar="FILE", help="file holding an HTTPS token")
    p.add_argument("--env", action="append", metavar="ENV[:KEYS:THRESHOLD]",
                   help="an environment and its release keys (repeatable; default: one env 'default')")
    p.add_argument("--name", dest="names", action="append", default=[], metavar="HOST",
                   help="a name or IP other clusters reach the hub and sealer by (repeatable; the first is "
                   "what agents dial)")
    p.add_argument("--out-dir", type=pathlib.Path, default=pathlib.Path("skerry-install"), metavar="DIR",
                   help="where offline keys and public files go (default ./skerry-install)")
    p.add_argument("--manifests", type=pathlib.Path, metavar="DIR", help="deploy/ directory (default: the one this Skerry ships with)")
    p.add_argument("--dry-run", action="store_true", help="apply nothing; print the objects (-o yaml|json)")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format of --dry-run (default yaml)")
    add_kube_flags(p)
    p.set_defaults(func=install_command)


def parse_environments(specs: list[str] | None) -> dict[str, tuple[int, int]]:
    """``["dev", "prod:3:2"]`` -> ``{"dev": (1, 1), "prod": (3, 2)}`` (``skerry keys init --env``'s syntax)."""
    envs = {}
    for spec in specs or ["default"]:
        name, *rest = spec.split(":")
        if not name or len(rest) not in (0, 2) or not all(r.isdigit() for r in rest):
            raise UsageError(f"--env {spec!r}: ENV or ENV:KEYS:THRESHOLD (e.g. prod:3:2)")
        envs[name] = (int(rest[0]), int(rest[1])) if rest else (1, 1)
    return envs


def print_objects(objects: list[dict], output: str) -> None:
    import json

    from skerry.core import documents

    if output == "json":
        sys.stdout.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n")
    else:
        sys.stdout.write(documents.dump_yaml_all(objects, explicit_start=True))


def apply_or_print(args, kube, objects: list[dict]) -> None:
    """Objects in the spellings this cluster's API server takes; applied, or printed with --dry-run."""
    from skerry.install import cluster
    from skerry.install.manifests import for_server

    minor = cluster.server_minor(kube)
    objects = [for_server(o, minor) for o in objects]
    if args.dry_run:
        print_objects(objects, args.output)
        return
    for done in cluster.apply(kube, objects):
        print(done)


def install_command(args) -> int:
    from skerry.core import logging as skerry_logging
    from skerry.install import cluster, management, manifests
    from skerry.install import material as m

    skerry_logging.configure("warning")  # stdout is the list of objects
    settings = management.Settings(
        repo=args.repo, branch=args.branch, git_ssh_key=args.git_ssh_key, git_known_hosts=args.git_known_hosts,
        git_token_file=args.git_token_file, environments=parse_environments(args.env),
        names=tuple(args.names))
    offline = m.OfflineDir(args.out_dir)
    kube = cluster.connect(args.kubeconfig, args.context)
    try:
        live = cluster.existing(kube, m.NAMESPACE, m.MADE)
        plan = management.plan(settings, offline, live, manifests.deploy_dir(args.manifests))
        offline.write_public(plan.material)
        apply_or_print(args, kube, plan.objects)
    finally:
        kube.close()
    if plan.new:
        print(OFFLINE_ADVICE.format(dir=offline.path), file=sys.stderr)
    print(f"hub CA and TUF root for operators and CI: {offline.path / 'hub-ca.crt'}, {offline.path / 'root.json'}; "
          "next: skerry operator add NAME --context CONTEXT, then skerry login", file=sys.stderr)
    return 0
