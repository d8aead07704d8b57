"""Cost of the hub's operability paths on a big fleet: dashboard snapshot, SSE payload, /metrics scrape.

    .venv/bin/python bench/ops.py [--clusters 1000] [--objects 50]

Builds real hub state (signed bundles in a ``HubStore``, agent reports in a
``StatusBoard``, a parsed fleet) and times what a dashboard tick and a
Prometheus scrape do with it. The dashboard rebuilds one shared snapshot per
tick (1 s, stretched so building takes at most 10% of the event loop)
while someone watches, so a report shows up within tick + snapshot time. Peer: Argo CD refreshes an Application's status on its
reconcile loop, 120 s + up to 60 s jitter by default (its documented
``timeout.reconciliation``), which is what its UI shows between refreshes;
the ratio compares that default with Skerry's worst-case display latency.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import pathlib
import sys
import tempfile
import time
import types

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from prometheus_client import generate_latest  # noqa: E402

from skerry.core import logging as skerry_logging  # noqa: E402
from skerry.core.metrics import new_registry  # noqa: E402
from skerry.hub.bundles.builder import build_bundle  # noqa: E402
from skerry.hub.bundles.store import HubStore  # noqa: E402
from skerry.hub.dashboard.model import ReleaseHistory, build_snapshot  # noqa: E402
from skerry.hub.dashboard.server import MAX_LOOP_SHARE, TICK_SECONDS  # noqa: E402
from skerry.hub.fleet import parse_fleet  # noqa: E402
from skerry.hub.metrics import HubStateCollector  # noqa: E402
from skerry.hub.status import ClusterStatus, Condition, ObjectStatus, StatusBoard  # noqa: E402
from skerry.hub.trust import admin  # noqa: E402
from skerry.hub.trust.repository import TrustRepository  # noqa: E402

ARGO_CD_REFRESH_SECONDS = 120 + 60  # default reconciliation timeout + maximum jitter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--objects", type=int, default=50, help="objects per cluster bundle and report")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    skerry_logging.configure("warning")
    regions, envs = ["no-oslo", "se-sto", "fi-hel", "dk-cph"], ["dev", "staging", "prod"]
    names = [f"c{i:05d}" for i in range(args.clusters)]
    fleet_yaml = "apiVersion: skerry.io/v1alpha1\nkind: Fleet\nenvironments: [dev, staging, prod]\nclusters:\n"
    for i, n in enumerate(names):
        fleet_yaml += f"  - name: {n}\n    labels: {{region: {regions[i % 4]}, env: {envs[i % 3]}}}\n"
    fleet_yaml += "paths:\n" + "".join(
        f"  - path: apps/shop/overlays/{e}\n    selector: {{matchLabels: {{env: {e}}}}}\n" for e in envs
    )
    fleet = parse_fleet(fleet_yaml)
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{j}", "namespace": "shop"}, "data": {}}
        for j in range(args.objects)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        made = admin.init(pathlib.Path(tmp) / "trust", {e: (1, 1) for e in envs})  # dev: the hub releases
        repo = TrustRepository.open(pathlib.Path(tmp) / "trust", release_keys=[(e, made[f"release-{e}"][0]) for e in envs])
        env_of = {n: envs[i % 3] for i, n in enumerate(names)}
        store = HubStore(repo, environment_of=env_of.__getitem__)
        t = time.perf_counter()
        for i, n in enumerate(names):
            b = build_bundle(n, {f"apps/shop/overlays/{envs[i % 3]}": objects}, source_url="bench",
                             revision="a" * 40, engine="bench", engine_version="0")
            store.publish(n, b)
        print(f"setup: {args.clusters} directed bundles of {args.objects} objects in {time.perf_counter() - t:.1f} s")
    board = StatusBoard()
    now = _dt.datetime.now(_dt.UTC)
    for i, n in enumerate(names):
        cur = store.current(n)
        board.report(ClusterStatus(
            cluster=n, applied_version=cur.release, applied_digest=cur.digest if i % 10 else "sha256:old",
            revision="a" * 40, conditions=(Condition("Ready", "True" if i % 7 else "False", "R", "m"),),
            objects=tuple(ObjectStatus("", "v1", "ConfigMap", "shop", f"cm{j}", "unchanged")
                          for j in range(args.objects)),
            observed_unix_ms=1, received_at=now,
        ))
    view = types.SimpleNamespace(fleet=fleet, revision="a" * 40, fleet_error=None, source_error=None)
    history = ReleaseHistory()

    snap_s, dump_s, size = [], [], 0
    for _ in range(args.rounds):
        t = time.perf_counter()
        snap = build_snapshot(view, store, board, history, _dt.datetime.now(_dt.UTC), connected=set(names))
        snap_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        size = len(json.dumps(snap))
        dump_s.append(time.perf_counter() - t)
    registry = new_registry()
    registry.register(HubStateCollector(store, board, view, streams=lambda: (len(names), len(names))))
    scrape_s, scrape_size = [], 0
    for _ in range(args.rounds):
        t = time.perf_counter()
        scrape_size = len(generate_latest(registry))
        scrape_s.append(time.perf_counter() - t)
    snap_ms, dump_ms, scrape_ms = (min(x) * 1000 for x in (snap_s, dump_s, scrape_s))
    print(f"dashboard snapshot ({args.clusters} clusters)   {snap_ms:8.1f} ms   (best of {args.rounds})")
    print(f"snapshot JSON for one SSE event         {dump_ms:8.1f} ms   {size / 1e6:.1f} MB")
    print(f"/metrics scrape of hub state            {scrape_ms:8.1f} ms   {scrape_size / 1e3:.0f} kB")
    build = (snap_ms + dump_ms) / 1000
    worst = max(TICK_SECONDS, build / MAX_LOOP_SHARE) + build  # the tick stretches on a big fleet
    print(f"report -> dashboard, worst case         {worst:8.2f} s")
    print(f"Argo CD app status refresh (default)    {ARGO_CD_REFRESH_SECONDS:8.0f} s   "
          f"ratio {ARGO_CD_REFRESH_SECONDS / worst:.0f}x fresher")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
