"""``skerry demo``: the whole loop on one machine, with real parts.

Starts a real kube-apiserver + etcd + controller-manager (``skerry.testing.envtest``;
or uses ``--kubeconfig``), a sealer, a hub watching a temporary Git repo
seeded from ``examples/fleet`` (with a freshly sealed secret), and one agent
per cluster. Waits for every agent to apply its bundle, prints a table,
commits a change to prod and shows it arriving. Exits 0 and cleans up, or
with ``--keep`` leaves everything running and prints the kubeconfig.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import shutil
import signal
import sys
import tempfile
import time


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run hub + sealer + agents against a real local API server")
    p.add_argument("--keep", action="store_true", help="leave everything running; print the kubeconfig")
    p.add_argument("--kubeconfig", type=pathlib.Path, help="use this cluster instead of starting a local one")
    p.add_argument("--workdir", type=pathlib.Path, help="directory for repo, keys, logs (default: a temp dir)")
    p.set_defaults(func=_run)


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def _table(stack, views: list[dict]) -> None:
    rows = [["CLUSTER", "PATHS", "RELEASE", "DIGEST", "OBJECTS", "APPLIED", "READY"]]
    for v in views:
        st = stack.agents[v["cluster"]].status() or {}
        rows.append([
            v["cluster"],
            ",".join(v.get("paths", [])),
            v.get("desired_release") or "-",
            v.get("desired_digest", "")[7:19],
            str(v.get("desired_objects", 0)),
            "yes" if st.get("applied_digest") == v.get("desired_digest") else "no",
            str(st.get("ready", False)).lower(),
        ])
    _print_table(rows)


def _enable_ops(workdir: pathlib.Path) -> str:
    """Turn on every service's metrics and the hub's dashboard (loopback only); returns the dashboard token."""
    token = secrets.token_urlsafe(24)
    token_file = workdir / "dashboard.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    os.environ.update({
        "SKERRY_HUB_METRICS_LISTEN": "127.0.0.1:0",
        "SKERRY_HUB_DASHBOARD_LISTEN": "127.0.0.1:0",
        "SKERRY_HUB_DASHBOARD_TOKEN_FILE": str(token_file),
        "SKERRY_AGENT_METRICS_LISTEN": "127.0.0.1:0",
    })
    return token


def _run(args: argparse.Namespace) -> int:
    from skerry.core.errors import SkerryError
    from skerry.testing.devstack import Stack, StackError
    from skerry.testing.envtest import EnvtestError, LocalCluster

    own_workdir = args.workdir is None
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="skerry-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = None
    stack = None
    try:
        if args.kubeconfig:
            kubeconfig = args.kubeconfig
            _say(f"using the cluster in {kubeconfig}")
        else:
            _say("starting a local kube-apiserver + etcd + controller-manager")
            cluster = LocalCluster(workdir / "envtest").start()
            kubeconfig = cluster.kubeconfig
        stack = Stack(workdir, kubeconfig)
        ops, views, dashboard_token = _start_fleet(stack, workdir)
        _change_prod(stack, ops, views)
        if args.keep:
            _keep_running(stack, workdir, kubeconfig, dashboard_token)
        _say("demo finished; cleaning up")
        return 0
    except (StackError, EnvtestError, SkerryError, OSError) as e:  # one clear line, never a traceback
        print(f"skerry demo: error: {e}", file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            stack.stop()
        if cluster is not None:
            cluster.stop()
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _start_fleet(stack, workdir: pathlib.Path):
    """Sealer, a Git repo with a freshly sealed secret, the hub, an agent per cluster, each applied.

    Returns (operator identity, the fleet's status views, the dashboard token).
    """
    from skerry.core import tls
    from skerry.testing.devstack import fleet_status, wait_for

    started = time.monotonic()
    _say("starting the sealer")
    stack.start_sealer()
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-credentials", "namespace": "shop-prod", "labels": {"app.kubernetes.io/name": "web"}},
        "type": "Opaque",
        "stringData": {"username": "shop", "password": secrets.token_urlsafe(18)},
    }
    _say("sealing db-credentials for shop-prod and seeding the Git repo from examples/fleet")
    commit = stack.seed_repo(seal={"overlays/prod/sealed-db-credentials.yaml": secret})
    del secret  # the plaintext lives on only in the cluster's Secret
    _say(f"repo {stack.repo} at {commit[:12]}; starting the hub")
    dashboard_token = _enable_ops(workdir)  # metrics + dashboard on loopback, inherited by the services
    stack.start_hub()
    _say(f"TUF trust repository made by `skerry keys init` in {stack.trust_dir}; agents bootstrap from "
         f"{stack.trust_root}. Demo only: the hub holds the dev and prod release keys (so it ships alone)")
    ops = stack.identity("demo", tls.ROLE_OPERATOR)
    views = wait_for(lambda: [v for v in fleet_status(stack.hub_address, ops) if v.get("desired_digest")] or None,
                     60, "the hub to publish bundles", stack.hub)
    for v in views:
        _say(f"starting the agent for {v['cluster']}")
        stack.start_agent(v["cluster"])
    for v in views:
        stack.wait_applied(v["cluster"], digest=v["desired_digest"], timeout=90)
    _say(f"every cluster applied its bundle ({time.monotonic() - started:.1f}s since start)")
    _table(stack, views)
    return ops, views, dashboard_token


def _change_prod(stack, ops, views: list[dict]) -> None:
    """Commit a change to prod, wait for it to arrive, and check it in the cluster."""
    from skerry.testing.devstack import StackError, fleet_status, wait_for

    prod = next((v for v in views if v["cluster"].endswith("prod")), views[-1])
    before = int(prod["desired_version"])
    kfile = stack.repo / "overlays/prod/kustomization.yaml"
    kfile.write_text(kfile.read_text().replace("count: 3", "count: 5"))
    commit = stack.commit("prod: scale web to 5 replicas")
    _say(f"committed {commit[:12]} 'prod: scale web to 5 replicas'; waiting for it to arrive")
    t0 = time.monotonic()

    def new_prod():
        for v in fleet_status(stack.hub_address, ops):
            if v["cluster"] == prod["cluster"] and int(v.get("desired_version", 0)) > before:
                return v
        return None

    newer = wait_for(new_prod, 60, "the hub to publish the new prod bundle", stack.hub)
    stack.wait_applied(prod["cluster"], digest=newer["desired_digest"], timeout=60)
    _say(f"{prod['cluster']} applied release {newer.get('desired_release') or '-'} "
         f"{time.monotonic() - t0:.1f}s after the commit")
    _table(stack, fleet_status(stack.hub_address, ops))
    replicas = stack.kubectl("get", "deployment", "web", "-n", "shop-prod", "-o", "jsonpath={.spec.replicas}")
    keys = stack.kubectl("get", "secret", "db-credentials", "-n", "shop-prod", "-o",
                         "go-template={{range $k, $v := .data}}{{$k}} {{end}}")
    _say(f"live: shop-prod/web has {replicas} replicas; Secret shop-prod/db-credentials holds keys: {keys.strip()}")
    if replicas.strip() != "5":
        raise StackError(f"expected 5 replicas in shop-prod/web, the cluster has {replicas!r}")


def _keep_running(stack, workdir: pathlib.Path, kubeconfig, dashboard_token: str) -> None:
    """Print where everything is, then wait for Ctrl-C or SIGTERM."""
    hub_ready = json.loads(stack.hub.ready_file.read_text())
    print(f"\ndashboard: https://127.0.0.1:{hub_ready['dashboard_port']}/login?token={dashboard_token}"
          f"  (certificate from {stack.pki_dir / 'ca.crt'})\n"
          f"hub metrics: http://127.0.0.1:{hub_ready['metrics_port']}/metrics", flush=True)
    print(f"\nkubeconfig: {kubeconfig}\n  kubectl --kubeconfig {kubeconfig} get deploy -A\n"
          f"logs: {workdir / 'logs'}\nrepo: {stack.repo}\nCtrl-C (or SIGTERM) stops everything.", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
