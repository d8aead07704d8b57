"""The agent's commands: ``skerry agent run|enroll`` and the operator's cluster commands.

``skerry agent run`` takes one flag per ``AgentConfig`` setting (``skerry.core.config``: each flag's help
names its ``SKERRY_AGENT_*`` variable).

* ``skerry diff --cluster NAME --repo REPO`` renders the cluster's bundle
  locally (``skerry render`` in a subprocess: the hub's own engine, so the
  same bytes the hub would sign; the agent package must not import the
  hub's) and asks the live cluster, by server-side dry-run, what applying it
  would change — before a commit is pushed, like ``flux diff kustomization
  --path``. Fetching from the hub instead would only show what is already
  on its way and would need a new RPC exposing bundles to operator
  certificates; ``-f FILE`` diffs an already rendered bundle or manifests.
* ``skerry suspend|resume|reconcile --cluster NAME`` annotate the agent's
  inventory ConfigMap, which the agent watches (Flux's suspend and
  requestedAt patterns); the cluster name is checked against the inventory
  so a wrong kubeconfig context is refused, not acted on.

``add_commands`` plugs it into the top-level ``skerry`` parser. Heavy
imports (grpc, kubernetes) happen inside the handlers so ``--help`` stays
fast. A failure prints one line, ``skerry agent run: error: ...`` naming
the file or peer, and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from skerry.agent.config import ENV_NAMES, ENV_PREFIX, AgentConfig
from skerry.cli.parser import duration_type
from skerry.cli.service import serve
from skerry.core import config as settings

COMMAND = "skerry agent run"

EPILOG = """\
example:
  skerry agent run --cluster oslo --hub hub.example:8443 --sealer sealer.example:7443 \\
    --tls-ca ca.crt --tls-cert agent.crt --tls-key agent.key \\
    --trust-root root.json --environment prod --state-dir /var/lib/skerry/agent
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
    _add_run(agent_sub)
    _add_enroll(agent_sub)
    _add_operator_commands(subparsers)


def _add_run(agent_sub) -> None:
    run = agent_sub.add_parser(
        "run",
        help="watch the hub and reconcile this cluster",
        description="Watch the hub for this cluster's signed bundles, verify them and apply them with "
        "server-side apply. Every flag falls back to its SKERRY_AGENT_* environment variable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    settings.add_flags(run, AgentConfig, ENV_PREFIX, ENV_NAMES)  # one flag per AgentConfig setting
    run.set_defaults(func=handler)


def _add_enroll(agent_sub) -> None:
    path = pathlib.Path
    enroll = agent_sub.add_parser(
        "enroll",
        help="trade a bootstrap token for this agent's client certificate",
        description="Make a key pair here, send a CSR with the token from `skerry cluster add NAME` to "
        "the hub's enrollment listener, and write agent.key, agent.crt and client-ca.crt into --dir. "
        "`skerry agent run` then renews the certificate before it expires.",
    )
    token = enroll.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the token printed by `skerry cluster add NAME`")
    token.add_argument("--token-file", type=path, metavar="FILE",
                       help="read the token from FILE (e.g. a mounted Secret; keeps it out of the process list)")
    enroll.add_argument("--hub", required=True, metavar="HOST:PORT[,...]",
                        help="the hub's enrollment address, or several replicas comma-separated")
    enroll.add_argument(
        "--tls-ca", required=True, type=path, metavar="FILE", help="CA that signs the hub's server certificate"
    )
    enroll.add_argument(
        "--dir", type=path, default=path("/var/lib/skerry/agent/tls"), metavar="DIR",
        help="where to write the key and certificates (default /var/lib/skerry/agent/tls)",
    )
    enroll.add_argument("--server-name", metavar="NAME", help="expected name in the hub's certificate")
    enroll.add_argument(
        "--if-missing", action="store_true",
        help="do nothing if --dir already holds agent.crt and agent.key (an init container on every pod "
        "start: the token is single-use, and `skerry agent run` renews the certificate itself)",
    )
    enroll.set_defaults(func=enroll_handler)


def _kube_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", required=True, help="the cluster's name, checked against its inventory")
    p.add_argument("--kubeconfig", type=pathlib.Path, metavar="FILE", help="default: $KUBECONFIG, then ~/.kube/config")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
    p.add_argument(
        "--namespace", default="skerry-system", metavar="NS", help="the agent's namespace (default skerry-system)"
    )


def _add_operator_commands(subparsers) -> None:
    diff = subparsers.add_parser(
        "diff",
        help="show what applying a cluster's bundle would change (server-side dry-run)",
        description="Render the cluster's bundle from --repo (or read -f FILE) and show, per object, the "
        "field diff a server-side dry-run apply reports against the live cluster, and what would be "
        "pruned. Exit 0: no difference, 1: differences, 2: error (as kubectl diff).",
    )
    _kube_flags(diff)
    diff.add_argument("--repo", metavar="PATH|URL", help="Git repository with skerry.yaml (rendered locally)")
    diff.add_argument("--branch", default="main", metavar="NAME")
    diff.add_argument("--revision", metavar="REV")
    diff.add_argument("-f", "--file", type=pathlib.Path, metavar="FILE", help="rendered bundle or manifests")
    diff.set_defaults(func=diff_command)
    for name, text in (
        ("suspend", "stop the agent applying and correcting drift on this cluster"),
        ("resume", "let the agent apply again (it reconciles at once)"),
        ("reconcile", "make the agent reconcile now"),
    ):
        p = subparsers.add_parser(name, help=text, description=text + " (an annotation on its inventory).")
        _kube_flags(p)
        if name == "reconcile":
            p.add_argument("--wait", action="store_true",
                           help="wait until the agent handled the request (its BundleStatus); exit 1 unless it is then Ready")
            p.add_argument("--timeout", type=duration_type("--timeout"), default=RECONCILE_WAIT_SECONDS,
                           metavar="DURATION", help="with --wait: give up after this long (default 5m)")
        p.set_defaults(func=control_command, control=name)


# Bounds on what the operator commands wait for.
RENDER_TIMEOUT_SECONDS = 300
RECONCILE_WAIT_SECONDS = 300.0  # a reconcile of a large bundle with health checks, on a busy cluster
RECONCILE_POLL_SECONDS = 1.0


def _kube(args):
    from skerry.agent.kube import KubeClient

    return KubeClient.from_kubeconfig(args.kubeconfig, args.context)


def _check_cluster(kube, args) -> None:
    from skerry.agent.diff import inventory_cluster
    from skerry.core.errors import ConfigError

    recorded = inventory_cluster(kube, args.namespace)
    if recorded and recorded != args.cluster:
        raise ConfigError(
            f"the inventory in {args.namespace} belongs to cluster {recorded!r}, not {args.cluster!r}: "
            "wrong kubeconfig context?"
        )


def diff_command(args: argparse.Namespace) -> int:
    import subprocess

    from skerry.agent.diff import CHANGE, CREATE, ERROR, PRUNE, diff_bundle, load_objects, render_text
    from skerry.core import logging as skerry_logging
    from skerry.core.errors import SkerryError

    command = "skerry diff"
    if bool(args.repo) == bool(args.file):
        print(f"{command}: error: give --repo REPO or -f FILE", file=sys.stderr)
        return 2
    skerry_logging.configure("warning")
    try:
        if args.file:
            data = args.file.read_bytes()
        else:
            cmd = [sys.executable, "-m", "skerry", "render", "--repo", args.repo, "--cluster", args.cluster]
            cmd += ["--branch", args.branch] + (["--revision", args.revision] if args.revision else [])
            out = subprocess.run(cmd, capture_output=True, timeout=RENDER_TIMEOUT_SECONDS)
            if out.returncode != 0:
                print(f"{command}: error: render failed: {out.stderr.decode(errors='replace').strip()}", file=sys.stderr)
                return 2
            data = out.stdout
        objects = load_objects(data)
        kube = _kube(args)
        try:
            _check_cluster(kube, args)
            diffs = diff_bundle(kube, objects, namespace=args.namespace)
        finally:
            kube.close()
    except (SkerryError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(diffs))
    if any(d.outcome == ERROR for d in diffs):
        return 2
    return 1 if any(d.outcome in (CREATE, CHANGE, PRUNE) for d in diffs) else 0


def control_command(args: argparse.Namespace) -> int:
    import datetime as _dt

    from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, RECONCILE_ANNOTATION, SUSPEND_ANNOTATION
    from skerry.core.errors import ConfigError, SkerryError

    command = f"skerry {args.control}"
    try:
        kube = _kube(args)
        try:
            _check_cluster(kube, args)
            if kube.get_configmap(args.namespace, CONFIGMAP_NAME) is None:
                raise ConfigError(
                    f"no agent inventory {args.namespace}/{CONFIGMAP_NAME}: has the agent of {args.cluster} run?"
                )
            if args.control == "suspend":
                change = {SUSPEND_ANNOTATION: "true"}
            elif args.control == "resume":
                change = {SUSPEND_ANNOTATION: None}
            else:
                change = {RECONCILE_ANNOTATION: _dt.datetime.now(_dt.UTC).isoformat()}
            kube.annotate("v1", "ConfigMap", CONFIGMAP_NAME, args.namespace, change)
            done = {"suspend": "suspended", "resume": "resumed", "reconcile": "reconcile requested"}[args.control]
            print(f"{args.cluster}: {done}")
            if getattr(args, "wait", False):
                return _wait_reconciled(kube, args, change[RECONCILE_ANNOTATION])
        finally:
            kube.close()
    except SkerryError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _wait_reconciled(kube, args: argparse.Namespace, requested: str) -> int:
    """Until the BundleStatus says this request was handled (``status.lastHandledReconcileAt``, the
    annotation's value: no clock compared); then 0 if Ready, else 1."""
    import time

    from skerry.agent.events import API_VERSION, KIND
    from skerry.core.errors import SkerryError

    deadline = time.monotonic() + args.timeout
    while True:
        status = (kube.get(API_VERSION, KIND, args.cluster, args.namespace) or {}).get("status") or {}
        if status.get("lastHandledReconcileAt") == requested:
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            print(f"{args.cluster}: reconciled: Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}"
                  + (f" - {ready['message']}" if ready.get("message") else ""))
            return 0 if ready.get("status") == "True" else 1
        if time.monotonic() >= deadline:
            raise SkerryError(f"the agent of {args.cluster} did not handle the request within {args.timeout:g}s "
                              f"(BundleStatus {args.namespace}/{args.cluster}): is it running?")
        time.sleep(RECONCILE_POLL_SECONDS)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def handler(args: argparse.Namespace) -> int:
    from skerry.agent.app import run

    return serve(COMMAND, AgentConfig, args, run)


def enroll_handler(args: argparse.Namespace) -> int:
    import asyncio

    from skerry.agent.enroll import enroll
    from skerry.core.errors import SkerryError

    command = "skerry agent enroll"
    if args.if_missing and (args.dir / "agent.crt").is_file() and (args.dir / "agent.key").is_file():
        print(f"{command}: {args.dir} already holds an enrolled certificate; nothing to do", file=sys.stderr)
        return 0
    token = args.token
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as e:
            print(f"{command}: error: cannot read the token file {args.token_file}: {e.strerror}", file=sys.stderr)
            return 1
    try:
        got = asyncio.run(enroll(args.hub, token, args.tls_ca, args.dir, server_name=args.server_name))
    except SkerryError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 1
    print(
        f"enrolled cluster {got.cluster!r}: certificate {got.cert} (fingerprint {got.fingerprint}, "
        f"expires {got.not_after.isoformat()}), key {got.key}, CA {got.client_ca}",
        file=sys.stderr,
    )
    return 0
