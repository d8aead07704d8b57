"""The agent's apply against ``kubectl apply --server-side``, and what an idle agent costs the API server.

    PYTHONPATH=. .venv/bin/python bench/reconcile.py [--sizes 100,1000] [--idle-seconds 60]

1. For each size N, ``--rounds`` times (fresh namespaces each round): a
   bundle of N objects (ConfigMaps, Secrets, Services, ServiceAccounts in one
   namespace) created by the agent's engine (``Reconciler.reconcile``:
   inventory read, parallel server-side apply per phase, inventory write),
   and the same manifests created in a fresh namespace by ``kubectl apply
   --server-side -f`` (one process, serial), against the same API server.
   Then both re-apply unchanged. Medians, [min-max] and ratio = kubectl
   seconds / agent seconds are printed. The agent is measured as it runs: a
   started client (discovery and a connection warm, as after its start-up
   inventory read); kubectl with its discovery cache on disk warm (each
   round's ``kubectl create namespace`` fills it), as a user's would be. A
   fresh client's cold first reconcile is printed once beside them.
2. Idle: the 1000-object bundle applied, the drift/health monitor running,
   nothing changing. Requests are read from the API server's
   ``apiserver_request_total`` (``/metrics``) for the resources the agent
   watches, before and after the window; a window of the same length
   without the agent is subtracted (other clients). The window runs with a
   compressed resync (``--idle-resync``), and the per-hour read figure is
   scaled to the default 10 min resync; writes must be 0 whatever the resync.

Runs its own kube-apiserver + etcd + controller-manager (``skerry.testing.envtest``).
Prints ``uptime`` next to the figures: the machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from skerry.core import logging as skerry_logging  # noqa: E402

# Quiet time before each timed step, after the controllers caught up (same for agent and kubectl).
SETTLE_SECONDS = 0.5
WATCHED_RESOURCES = ("configmaps", "secrets", "services", "serviceaccounts")
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE")


def objects(n: int, namespace: str) -> list[dict]:
    out = []
    for i in range(n):
        name = f"obj-{i:04d}"
        meta = {"name": name, "namespace": namespace, "labels": {"app": "bench", "shard": str(i % 10)}}
        kind = i % 10
        if kind < 6:
            out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v" * 64, "i": str(i)}})
        elif kind < 8:
            out.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": {"pw": "c2VjcmV0"}})
        elif kind < 9:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta,
                    "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
                }
            )
        else:
            out.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
    return out


def kubectl(kubeconfig, *args, input_text=None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=input_text,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def metrics(kubeconfig) -> Counter:
    """(verb, resource) -> count from apiserver_request_total, for the watched resources."""
    text = kubectl(kubeconfig, "get", "--raw", "/metrics").stdout
    out: Counter = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        if labels.get("resource") in WATCHED_RESOURCES and labels.get("group", "") == "":
            out[(labels.get("verb", ""), labels["resource"])] += int(float(line.rsplit(" ", 1)[1]))
    return out


def delta(after: Counter, before: Counter) -> Counter:
    return Counter({k: after[k] - before[k] for k in after if after[k] - before[k] > 0})


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000")
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--idle-resync", type=float, default=20.0, help="resync during the idle window (s)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5, help="rounds per size (fresh namespaces each); medians shown")
    args = p.parse_args()
    skerry_logging.configure("warning")

    import yaml

    from skerry.agent.kube import KubeClient
    from skerry.agent.monitor import Monitor
    from skerry.agent.reconcile.engine import Reconciler
    from skerry.core.bundle import Bundle, VerifiedBundle
    from skerry.core.canonical import sha256_digest
    from skerry.testing.envtest import LocalCluster

    print(f"# {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}  {uptime()}")
    with tempfile.TemporaryDirectory(prefix="skerry-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        now = _dt.datetime.now(_dt.UTC)
        release = 0

        def verified(objs):
            """What the agent's TUF verifier hands the reconciler (verification is bench/verify.py's)."""
            nonlocal release
            release += 1
            bundle = Bundle("bench", f"{release:040x}", "file:///bench", ("x",), "raw", "", tuple(objs))
            raw = bundle.encode()
            return VerifiedBundle(bundle=bundle, release=release, digest=sha256_digest(raw),
                                  expires=now + _dt.timedelta(days=1), metadata=b"{}", raw=raw)

        class BenchCluster(LocalCluster):
            # Every round creates N/10 Services per side: the tests' /24 would run out of ClusterIPs.
            SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"

        with BenchCluster(tmp / "envtest") as cluster:
            kc = cluster.kubeconfig
            kube = KubeClient.from_kubeconfig(kc)
            last_engine = None
            sizes = [int(x) for x in args.sizes.split(",")]

            def settle(*namespaces: str) -> None:
                """Let the controller-manager finish reacting before the next timed step, for either side.

                Each new namespace and ServiceAccount makes the serviceaccount(-token) controllers
                write a ServiceAccount / token Secret; timing the next side while that runs would
                charge it for the previous step's aftermath.
                """
                deadline = time.monotonic() + 30
                for ns in namespaces:
                    while time.monotonic() < deadline:
                        sas = json.loads(kubectl(kc, "get", "serviceaccounts", "-n", ns, "-o", "json").stdout)
                        names = {sa["metadata"]["name"] for sa in sas["items"]}
                        if "default" in names and all(sa.get("secrets") for sa in sas["items"]):
                            break
                        time.sleep(0.1)
                time.sleep(SETTLE_SECONDS)

            def one_round(client, n: int, tag: str, *, warm: bool) -> tuple[float, float, float, float]:
                """(agent create, kubectl create, agent re-apply, kubectl re-apply) seconds for N objects."""
                nonlocal last_engine
                ns_a, ns_k, ns_inv = f"agent-{n}-{tag}", f"kubectl-{n}-{tag}", f"skerry-{n}-{tag}"
                for ns in (ns_a, ns_k, ns_inv):  # the agent's own namespace exists, as deploy/ creates it
                    kubectl(kc, "create", "namespace", ns)  # (this also warms kubectl's discovery cache)
                settle(ns_a, ns_k, ns_inv)
                engine = Reconciler(client, None, "skerry", ns_inv, workers=args.workers)
                if warm:
                    # A running agent has read its inventory at start-up (discovery and a connection
                    # are warm when a bundle arrives); kubectl's discovery cache on disk is warm too.
                    engine.read_inventory()
                bundle = verified(objects(n, ns_a))
                t = time.perf_counter()
                result = engine.reconcile(bundle)
                agent_s = time.perf_counter() - t
                assert result.ready, result.conditions
                assert result.counts()["created"] == n, result.counts()
                path = tmp / f"m{n}-{tag}.yaml"
                path.write_text("---\n".join(yaml.safe_dump(o) for o in objects(n, ns_k)))
                settle(ns_a)
                t = time.perf_counter()
                kubectl(kc, "apply", "--server-side", "-f", str(path))
                kubectl_s = time.perf_counter() - t
                settle(ns_k)
                t = time.perf_counter()
                again = engine.reconcile(bundle)
                agent_re = time.perf_counter() - t
                assert set(again.counts()[a] for a in ("created", "configured")) == {0}, again.counts()
                settle()
                t = time.perf_counter()
                kubectl(kc, "apply", "--server-side", "-f", str(path))
                kubectl_re = time.perf_counter() - t
                last_engine = engine
                return agent_s, kubectl_s, agent_re, kubectl_re

            # Cold: a fresh client's very first reconcile (discovery, TLS handshakes). Shown, not the median.
            cold = KubeClient.from_kubeconfig(kc)
            a, k, _, _ = one_round(cold, sizes[0], "cold", warm=False)
            cold.close()
            print(
                f"{sizes[0]:5d} objects  cold first reconcile of a fresh client: agent {a:5.2f} s  "
                f"kubectl {k:5.2f} s  ratio {k / a:4.1f}x"
            )
            for n in sizes:
                runs = [one_round(kube, n, str(r), warm=True) for r in range(args.rounds)]
                cols = list(zip(*runs, strict=True))
                med = [statistics.median(c) for c in cols]
                spread = [f"{min(c):.2f}-{max(c):.2f}" for c in cols]
                ratios = sorted(k / a for a, k, _, _ in runs)
                re_ratios = sorted(k / a for _, _, a, k in runs)
                print(
                    f"{n:5d} objects  create (median of {args.rounds}): agent {med[0]:6.3f} s [{spread[0]}]  "
                    f"kubectl --server-side {med[1]:6.3f} s [{spread[1]}]  ratio {med[1] / med[0]:4.1f}x "
                    f"(per round {ratios[0]:.1f}-{ratios[-1]:.1f}x)"
                )
                print(
                    f"{n:5d} objects  re-apply unchanged: agent {med[2]:6.3f} s [{spread[2]}]  "
                    f"kubectl {med[3]:6.3f} s [{spread[3]}]  ratio {med[3] / med[2]:4.1f}x "
                    f"(per round {re_ratios[0]:.1f}-{re_ratios[-1]:.1f}x)"
                )
                last_n = n
            print(f"# {uptime()}")

            if last_engine is not None and args.idle_seconds > 0:
                window = args.idle_seconds
                before = metrics(kc)
                time.sleep(window)
                baseline = delta(metrics(kc), before)
                monitor = Monitor(kube, last_engine, namespace=last_engine.namespace, resync_seconds=args.idle_resync)
                monitor.start()
                monitor.retarget()
                time.sleep(min(10.0, window / 4))  # initial lists
                before = metrics(kc)
                time.sleep(window)
                idle = delta(metrics(kc), before)
                monitor.stop()
                extra = Counter({k: idle[k] - baseline.get(k, 0) for k in idle if idle[k] - baseline.get(k, 0) > 0})
                writes = sum(v for (verb, _), v in extra.items() if verb in WRITE_VERBS)
                reads = sum(v for (verb, _), v in extra.items() if verb not in WRITE_VERBS)
                per_hour_reads = reads * 3600 / window
                scaled = per_hour_reads * args.idle_resync / 600.0
                print(
                    f"idle agent, {last_n} objects, {len(monitor._watches)} watches, {window:g} s window, "
                    f"resync {args.idle_resync:g} s: reads {reads} ({dict(extra)}), writes {writes}"
                )
                print(
                    f"idle requests/hour: reads {per_hour_reads:.0f} at resync {args.idle_resync:g} s "
                    f"-> ~{scaled:.0f} at the default 600 s; writes/hour {writes * 3600 / window:.0f}; "
                    f"drifts seen {len(monitor.current_drifts())}"
                )
                print(f"# {uptime()}")
            kube.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
