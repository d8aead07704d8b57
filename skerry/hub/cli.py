"""``skerry hub serve`` and ``skerry render``.

``skerry.cli`` calls ``add_commands(subparsers)``. Handlers take the parsed
arguments and return an exit status; heavy imports happen inside them so
``skerry --help`` stays fast. Failures print one line
(``skerry render: error: overlays/prod: kustomize build failed: ...``) and
return 1 (2 for a wrong combination of arguments), never a traceback.

``skerry render DIR`` renders one directory the way ``kustomize build DIR``
does (plain YAML if it has no kustomization). ``skerry render --repo REPO
--cluster NAME`` prints the cluster's bundle exactly as the hub signs it
(same code path as the hub's sync: ``skerry.hub.sync.build_revision``).
"""

from __future__ import annotations

import argparse
import sys

_SERVE_FLAGS = (
    # flag, config field, metavar, help
    ("--repo", "repo", "PATH|URL", "Git repository to follow"),
    ("--branch", "branch", "NAME", "branch to follow (default main)"),
    ("--interval", "interval", "DURATION", "poll interval, e.g. 60s, 5m (default 60s)"),
    ("--listen", "listen", "HOST:PORT", "gRPC listen address (default 127.0.0.1:7440)"),
    ("--tls-ca", "tls_ca", "FILE", "CA bundle that agents' and operators' certificates chain to"),
    ("--tls-cert", "tls_cert", "FILE", "the hub's server certificate"),
    ("--tls-key", "tls_key", "FILE", "the hub's private key"),
    ("--state-dir", "state_dir", "DIR", "clone cache and scratch space (default ~/.local/state/skerry/hub)"),
    (
        "--state",
        "state",
        "sqlite:///PATH|postgresql",
        "hub state database (default: SQLite <state-dir>/hub.db); postgresql reads the DSN from "
        "--state-dsn-file or SKERRY_HUB_STATE_DSN",
    ),
    ("--state-dsn-file", "state_dsn_file", "FILE", "file holding the PostgreSQL DSN (it holds a password)"),
    ("--hub-id", "hub_id", "NAME", "this process's name as the writer-lease holder (default: host name)"),
    ("--lease-ttl", "lease_ttl", "DURATION", "writer lease lifetime, renewed at a third (default 15s)"),
    ("--render-timeout", "render_timeout", "DURATION", "limit for one render tool run (default 120s)"),
    ("--ready-file", "ready_file", "FILE", 'write {"port": N, "trust_root": PATH, ...} here once serving'),
    ("--log-level", "log_level", "LEVEL", "debug, info, warning or error (default info)"),
    ("--trust-dir", "trust_dir", "DIR", "TUF trust repository made by `skerry keys init` (director + release roles; required)"),
    (
        "--release-keys",
        "release_keys",
        "ENV=KEY,...",
        "release keys the hub signs with itself (dev environments only: the hub alone can then ship them)",
    ),
    ("--trust-refresh", "trust_refresh", "DURATION", "how often online TUF metadata is checked for re-signing"),
    (
        "--enroll-listen",
        "enroll_listen",
        "HOST:PORT",
        "listener for `skerry agent enroll` (server TLS, bootstrap tokens); default: none",
    ),
    (
        "--agent-cert-lifetime",
        "agent_cert_lifetime",
        "DURATION",
        "lifetime of enrolled agents' certificates, renewed at 2/3 (default 24h)",
    ),
    ("--metrics-listen", "metrics_listen", "HOST:PORT", "serve /metrics, /healthz, /readyz here (default off)"),
    ("--dashboard-listen", "dashboard_listen", "HOST:PORT", "serve the read-only dashboard here (default off)"),
    ("--dashboard-token-file", "dashboard_token_file", "FILE", "bearer token that also opens the dashboard"),
    (
        "--engine",
        "engine",
        "auto|inprocess|binary",
        "render engine (default auto: in-process kustomize if installed)",
    ),
    ("--tag", "tag", "TAG", "follow a tag instead of the branch"),
    ("--commit", "commit", "SHA", "pin one commit instead of following the branch"),
    ("--depth", "depth", "N", "shallow fetches of N commits"),
    ("--git-ssh-key", "git_ssh_key", "FILE", "SSH deploy key for ssh:// URLs"),
    ("--git-known-hosts", "git_known_hosts", "FILE", "known_hosts the Git server's host key must be in"),
    ("--git-token-file", "git_token_file", "FILE", "file holding an HTTPS access token"),
    (
        "--webhook-listen",
        "webhook_listen",
        "HOST:PORT",
        "serve the GitHub/GitLab push webhook (POST /hooks/git)",
    ),
    ("--webhook-secret-file", "webhook_secret_file", "FILE", "file holding the webhook's shared secret"),
    ("--push-url", "push_url", "PATH|URL", "where promotion commits are pushed (default: --repo)"),
    ("--push-branch", "push_branch", "NAME", "push promotions to this branch for review instead"),
    ("--push-ssh-key", "push_ssh_key", "FILE", "deploy key for pushing promotions over ssh"),
)


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
    for flag, dest, metavar, help_text in _SERVE_FLAGS:
        serve.add_argument(flag, dest=dest, metavar=metavar, help=help_text)
    serve.set_defaults(func=serve_command)

    cluster = subparsers.add_parser(
        "cluster",
        help="enroll and revoke clusters' agents (run on the hub host)",
        description="Bootstrap tokens and revocation for agents. Works on the hub's state directory "
        "(--state-dir or SKERRY_HUB_STATE_DIR); a running hub sees revocations within a second.",
    )
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND")
    cluster_commands.required = True
    add = cluster_commands.add_parser(
        "add",
        help="print a single-use, expiring bootstrap token for a cluster's agent",
        description="Print a bootstrap token for `skerry agent enroll --token`. It is single-use and "
        "expires (default 1h); the certificate it buys names exactly this cluster.",
    )
    add.add_argument("name", metavar="NAME", help="cluster name, as in skerry.yaml")
    add.add_argument("--ttl", default="1h", metavar="DURATION", help="token lifetime, at most 24h (default 1h)")
    add.add_argument("--state-dir", metavar="DIR", help="the hub's state directory")
    add.set_defaults(func=cluster_add_command)
    revoke = cluster_commands.add_parser(
        "revoke",
        help="revoke a cluster's agent certificates (or one by fingerprint); open streams close",
        description="Revoke every certificate of cluster NAME issued until now, or one certificate "
        "by --fingerprint. The running hub refuses them and closes their open streams within a second. "
        "Re-enroll the cluster with a new `skerry cluster add NAME` token.",
    )
    revoke.add_argument("name", nargs="?", metavar="NAME", help="cluster whose certificates to revoke")
    revoke.add_argument("--fingerprint", metavar="SHA256", help="revoke one certificate by its SHA-256 fingerprint")
    revoke.add_argument("--state-dir", metavar="DIR", help="the hub's state directory")
    revoke.set_defaults(func=cluster_revoke_command)

    render = subparsers.add_parser(
        "render",
        help="render a directory, or a cluster's bundle, like the hub does",
        description="skerry render DIR [-o yaml|json]: render one directory like `kustomize build DIR`.  "
        "skerry render --repo REPO --cluster NAME [--revision REV]: print that cluster's bundle JSON, "
        "byte for byte what the hub signs.",
    )
    render.add_argument("directory", nargs="?", metavar="DIR", help="directory to render")
    render.add_argument(
        "-o", "--output", choices=("yaml", "json"), help="output format (DIR: yaml, bundle: json)"
    )
    render.add_argument("--repo", metavar="PATH|URL", help="Git repository with skerry.yaml at its root")
    render.add_argument("--cluster", metavar="NAME", help="cluster whose bundle to build (with --repo)")
    render.add_argument("--branch", default="main", metavar="NAME", help="branch to build (default main)")
    render.add_argument(
        "--revision", metavar="REV", help="branch, tag or commit to build instead of the branch head"
    )
    render.add_argument(
        "--engine",
        choices=("auto", "inprocess", "binary"),
        default="auto",
        help="render engine (default auto: in-process kustomize if installed, else the binary)",
    )
    render.set_defaults(func=render_command)


def _fail(command: str, message: str, status: int = 1) -> int:
    line = " ".join(str(message).split())  # one line, whatever the message contained
    print(f"{command}: error: {line}", file=sys.stderr)
    return status


# --- hub serve -----------------------------------------------------------------------------


def serve_command(args: argparse.Namespace) -> int:
    import asyncio

    from skerry.cli.errors import with_reason
    from skerry.core.errors import SkerryError
    from skerry.hub.app import run
    from skerry.hub.config import HubConfig

    overrides = {dest: getattr(args, dest, None) for _, dest, _, _ in _SERVE_FLAGS}
    try:
        config = HubConfig.from_env(**overrides)
        return asyncio.run(run(config))
    except SkerryError as e:
        return _fail("skerry hub serve", with_reason(e))
    except KeyboardInterrupt:
        return 130


# --- cluster add / revoke ------------------------------------------------------------------


def cluster_add_command(args: argparse.Namespace) -> int:
    from skerry.core.duration import parse_duration
    from skerry.core.errors import SkerryError
    from skerry.hub.config import state_dir_from_env
    from skerry.hub.enrollment.service import DIR_NAME
    from skerry.hub.enrollment.tokens import TokenIssuer, check_cluster_name

    command = "skerry cluster add"
    try:
        check_cluster_name(args.name)
        ttl = parse_duration(args.ttl, "--ttl")
        issuer = TokenIssuer.load_or_create(state_dir_from_env(args.state_dir) / DIR_NAME)
        token, claims = issuer.issue(args.name, ttl)
    except SkerryError as e:
        return _fail(command, str(e))
    except OSError as e:
        return _fail(command, f"cannot use the hub state directory: {e}")
    import time

    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.expires))
    print(token)
    print(
        f"single-use token for cluster {args.name!r}, expires {expires}; on the cluster run:\n"
        f"  skerry agent enroll --hub HUB:ENROLL_PORT --tls-ca hub-ca.crt --token <token>",
        file=sys.stderr,
    )
    return 0


def cluster_revoke_command(args: argparse.Namespace) -> int:
    from skerry.core.errors import SkerryError
    from skerry.hub.app import open_hub_state
    from skerry.hub.config import state_dir_from_env, state_from_env
    from skerry.hub.enrollment.revocation import Revocations
    from skerry.hub.enrollment.service import DIR_NAME
    from skerry.hub.enrollment.tokens import check_cluster_name

    command = "skerry cluster revoke"
    if bool(args.name) == bool(args.fingerprint):
        return _fail(command, "give a cluster NAME or --fingerprint SHA256 (one of them)", 2)
    state = None
    try:
        state_dir = state_dir_from_env(args.state_dir)
        # The hub's state database (SKERRY_HUB_STATE, ..._DSN_FILE, ..._DSN; default <state dir>/hub.db).
        state = open_hub_state(state_dir=state_dir, **state_from_env())
        revocations = Revocations(state_dir / DIR_NAME, state)
        if args.name:
            check_cluster_name(args.name)
            revocations.revoke_cluster(args.name)
            print(f"revoked every certificate of cluster {args.name!r} issued until now", file=sys.stderr)
        else:
            revocations.revoke_fingerprint(args.fingerprint)
            print(f"revoked certificate {args.fingerprint}", file=sys.stderr)
    except SkerryError as e:
        return _fail(command, str(e))
    except OSError as e:
        return _fail(command, f"cannot use the hub state directory: {e}")
    finally:
        if state is not None:
            state.close()
    return 0


# --- render --------------------------------------------------------------------------------


def render_command(args: argparse.Namespace) -> int:
    from skerry.core import logging as skerry_logging
    from skerry.core.errors import SkerryError

    command = "skerry render"
    if args.directory and (args.repo or args.cluster or args.revision):
        return _fail(command, "give either DIR or --repo/--cluster, not both", 2)
    if not args.directory and not (args.repo and args.cluster):
        return _fail(command, "give DIR, or --repo REPO --cluster NAME", 2)
    skerry_logging.configure("warning")  # logs go to stderr; stdout is the rendered output
    try:
        if args.directory:
            data = _render_directory(args.directory, args.output or "yaml", args.engine)
        else:
            data = _render_bundle(
                args.repo, args.cluster, args.branch, args.revision, args.output or "json", args.engine
            )
    except SkerryError as e:
        return _fail(command, str(e))
    except KeyboardInterrupt:
        return 130
    sys.stdout.buffer.write(data)  # a closed stdout is the error wrapper's (exit 141)
    return 0


def _dump(objects, output: str) -> bytes:
    import json

    from skerry.core import documents

    if output == "json":
        return (
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2, ensure_ascii=False)
            + "\n"
        ).encode()
    docs = [documents.dump_yaml(o) for o in objects]
    return "---\n".join(docs).encode()


def _render_directory(directory: str, output: str, engine_choice: str = "auto") -> bytes:
    import pathlib

    from skerry.hub.render.closure import refuse_remote_bases
    from skerry.hub.render.detect import detect_engine
    from skerry.hub.render.validate import check_objects

    refuse_remote_bases(pathlib.Path(directory))
    objects = detect_engine(engine_choice).render(pathlib.Path(directory))
    check_objects(objects, directory)  # structural checks, as the hub does (schemas with --repo)
    return _dump(objects, output)


# Renders shorter than this show no progress bar (it would only flicker).
PROGRESS_MIN_PATHS = 20


class _Progress:
    """A rich progress bar on stderr while paths render; nothing when stderr is not a terminal."""

    def __init__(self):
        self._bar = None
        self._task = None

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_PATHS or not sys.stderr.isatty():
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "rendering", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("render", total=total)
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _render_bundle(
    repo: str, cluster: str, branch: str, revision: str | None, output: str, engine_choice: str = "auto"
) -> bytes:
    import json
    import pathlib
    import tempfile

    from skerry.core import documents
    from skerry.core.errors import RenderError
    from skerry.hub.render.detect import detect_engine
    from skerry.hub.source.git import GitSource
    from skerry.hub.sync import build_revision

    engine = detect_engine(engine_choice)
    progress = _Progress()
    with tempfile.TemporaryDirectory(prefix="skerry-render-") as cache:
        source = GitSource(repo, branch=branch, cache_dir=pathlib.Path(cache))
        commit = source.fetch_revision(revision) if revision else source.fetch()
        try:
            outcome = build_revision(source, commit, engine, clusters=[cluster], progress=progress)
        finally:
            progress.close()
    if outcome.fleet is None:
        raise RenderError(str(outcome.fleet_error))
    if cluster in outcome.errors:
        raise RenderError(outcome.errors[cluster])
    data = outcome.bundles[cluster].data
    if output == "json":
        return data
    return documents.dump_yaml(json.loads(data)).encode()
