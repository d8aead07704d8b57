"""Render throughput of the hub against one `kubectl kustomize` run per overlay.

    PYTHONPATH=. .venv/bin/python bench/render.py [--apps 10,100,1000] [--kubectl-sample 40] [--full-kubectl]

For each size it generates a Git repository of N apps x 3 environments
(dev, staging, prod): a base with a Deployment, a Service and a ConfigMap,
and per environment an overlay with namePrefix, replicas, an image tag and a
strategic-merge patch. Clusters: per environment one cluster per 100 apps
(each gets its share of that environment's overlays as per-cluster paths).
It then prints

* cold: a fresh hub (new mirror, empty caches) fetches, renders every
  overlay, validates, builds and signs every cluster's bundle;
* incremental: one file changed in one app's prod overlay is committed;
  the time for the hub's sync (fetch, find what changed, re-render, build and
  sign the new bundles), and which clusters got a new release;
* kubectl: one `kubectl kustomize` per overlay, sequential. By default a
  sample of ``--kubectl-sample`` overlays is run and the per-overlay time is
  multiplied by the overlay count (the full run at 1000 x 3 takes ~6 minutes);
  ``--full-kubectl`` runs them all. The sampled overlays' output is compared
  object for object with the hub's.

and the ratios (acceptance: cold >= 10x faster than kubectl per overlay at
1000 x 3; the one-file commit signed within 2x one kubectl run). The machine
load (``/proc/loadavg``) is printed next to the figures.

Then the command line against ``kubectl kustomize`` (``--startup-runs`` runs of each, alternating,
median wall time, and median CPU time, user + system of the process and its threads, which a loaded
machine disturbs less; ``--startup-only`` skips the sizes above): ``skerry render DIR`` on a small overlay
(examples/fleet/overlays/prod; acceptance <= 2x) and on a generated tree of 130 objects with 10 large
CRDs (``skerry.testing.trees``; acceptance <= 1x), with their outputs compared object for object; the YAML emitter on that tree,
PyYAML's pure-Python one against libyaml's (same bytes, the speed-up); and what the hub's per-render
deadline costs: one render in-process against one through the worker process. kubectl is the one on
PATH, else the first under ``~/.cache/skerry``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

ENVS = {"dev": (1, "1.0.0"), "staging": (2, "1.1.0"), "prod": (3, "1.2.0")}
APPS_PER_CLUSTER = 100
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@skerry.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@skerry.invalid",
}


def git(repo: pathlib.Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout.strip()


def app_files(name: str) -> dict[str, str]:
    files = {
        f"apps/{name}/base/kustomization.yaml": "resources: [deployment.yaml, service.yaml, configmap.yaml]\n"
        f"labels:\n- pairs: {{app: {name}}}\n  includeSelectors: true\n",
        f"apps/{name}/base/deployment.yaml": f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{component: web}}
  template:
    metadata:
      labels: {{component: web}}
    spec:
      containers:
      - name: web
        image: registry.example/{name}:0.0.1
        ports: [{{containerPort: 8080}}]
        envFrom: [{{configMapRef: {{name: {name}-config}}}}]
""",
        f"apps/{name}/base/service.yaml": f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{component: web}}
  ports: [{{port: 80, targetPort: 8080}}]
""",
        f"apps/{name}/base/configmap.yaml": f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config
data:
  LOG_LEVEL: info
""",
    }
    for env, (replicas, tag) in ENVS.items():
        files[f"apps/{name}/overlays/{env}/kustomization.yaml"] = f"""resources: [../../base]
namePrefix: {env}-
namespace: {env}
replicas: [{{name: {name}, count: {replicas}}}]
images: [{{name: registry.example/{name}, newTag: "{tag}"}}]
patches: [{{path: resources.yaml}}]
"""
        files[f"apps/{name}/overlays/{env}/resources.yaml"] = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  template:
    spec:
      containers:
      - name: web
        resources:
          limits: {{memory: {64 * replicas}Mi}}
"""
    return files


def make_repo(root: pathlib.Path, apps: int) -> tuple[pathlib.Path, list[str]]:
    repo = root / f"repo-{apps}"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    names = [f"app-{i:04d}" for i in range(apps)]
    clusters = []
    overlays = []
    shards = max(1, apps // APPS_PER_CLUSTER)
    for env in ENVS:
        for s in range(shards):
            mine = names[s::shards]
            paths = [f"apps/{n}/overlays/{env}" for n in mine]
            overlays.extend(paths)
            clusters.append({"name": f"{env}-{s:02d}", "labels": {"env": env}, "paths": paths})
    fleet = {
        "apiVersion": "skerry.io/v1alpha1",
        "kind": "Fleet",
        "environments": list(ENVS),
        "clusters": clusters,
    }
    files = {"skerry.yaml": json.dumps(fleet, indent=1)}
    for n in names:
        files.update(app_files(n))
    for rel, content in files.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fleet")
    return repo, overlays


def loadavg() -> str:
    try:
        return "load " + " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load ?"


def kubectl_objects(directory: pathlib.Path) -> list[dict]:
    from skerry.core import documents

    out = subprocess.run(["kubectl", "kustomize", str(directory)], check=True, capture_output=True).stdout
    return [d for d in documents.load_yaml_all(out) if d]


async def run_size(apps: int, work: pathlib.Path, sample: int, full_kubectl: bool) -> dict:
    from skerry.hub.bundles.store import HubStore
    from skerry.hub.render.detect import detect_engine
    from skerry.hub.source.git import GitSource
    from skerry.hub.sync import Syncer
    from skerry.hub.trust import admin
    from skerry.hub.trust.repository import TrustRepository

    repo, overlays = make_repo(work, apps)
    made = admin.init(work / f"trust-{apps}", {"default": (1, 1)})  # dev: the hub releases every bundle
    engine = detect_engine()
    source = GitSource(str(repo), cache_dir=work / f"state-{apps}")
    store = HubStore(TrustRepository.open(work / f"trust-{apps}", release_keys=[("default", made["release-default"][0])]))
    syncer = Syncer(source, engine, store)

    t = time.perf_counter()
    first = await syncer.sync_once()
    cold = time.perf_counter() - t
    assert first.ok and len(first.published) == len(store.clusters()), first

    # One file in one app's prod overlay.
    victim = f"apps/app-{apps // 2:04d}/overlays/prod/resources.yaml"
    path = repo / victim
    path.write_text(path.read_text().replace("Mi}", "Mi, cpu: 500m}"))
    git(repo, "commit", "-qam", "bigger prod limits for one app")
    t = time.perf_counter()
    second = await syncer.sync_once()
    incremental = time.perf_counter() - t
    assert second.ok, second
    stats = syncer.last_result and syncer.renderer  # noqa: F841

    # kubectl, one process per overlay, on the working tree.
    chosen = overlays if full_kubectl else random.Random(apps).sample(overlays, min(sample, len(overlays)))
    t = time.perf_counter()
    outputs = {o: kubectl_objects(repo / o) for o in chosen}
    per_overlay = (time.perf_counter() - t) / len(chosen)
    kubectl_total = per_overlay * len(overlays)

    # Object-for-object comparison on the sampled overlays (the hub's cache holds the renders).
    from skerry.hub.render.incremental import IncrementalRenderer

    check = IncrementalRenderer(engine, schemas=False).render(source, second.commit, chosen)
    mismatched = [o for o in chosen if check.rendered.get(o) != outputs[o]]
    return {
        "apps": apps,
        "overlays": len(overlays),
        "clusters": len(store.clusters()),
        "cold": cold,
        "incremental": incremental,
        "published": second.published,
        "kubectl_per_overlay": per_overlay,
        "kubectl_total": kubectl_total,
        "kubectl_measured": len(chosen),
        "mismatched": mismatched,
        "engine": f"{engine.name} {engine.version}",
    }


# --- the command line against kubectl kustomize ----------------------------------------------------

EXAMPLE_OVERLAY = pathlib.Path(__file__).resolve().parent.parent / "examples" / "fleet" / "overlays" / "prod"


def find_kubectl() -> str:
    import shutil

    found = shutil.which("kubectl")
    if found:
        return found
    cached = sorted((pathlib.Path.home() / ".cache" / "skerry").rglob("kubectl"))
    if not cached:
        raise SystemExit("kubectl not found on PATH or under ~/.cache/skerry")
    return str(cached[0])


def _wall(argv: list[str], env: dict | None = None) -> tuple[float, float, bytes]:
    """Wall time, CPU time (user + system, the child's threads included) and stdout of one run."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, env=env).stdout
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out


def startup(work: pathlib.Path, runs: int) -> None:
    import statistics

    import yaml

    from skerry.core import documents
    from skerry.testing.trees import crd_tree

    kubectl = find_kubectl()
    repo_root = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    skerry = [sys.executable, "-m", "skerry", "render"]
    print(f"\nskerry render vs {kubectl} kustomize ({runs} runs each, alternating, median), {loadavg()}")
    for label, directory, floor in (("small overlay", EXAMPLE_OVERLAY, 2.0),
                                    ("130 objects, 10 CRDs", crd_tree(work / "crd-tree"), 1.0)):
        times: dict[str, list[float]] = {"kubectl": [], "skerry": []}
        cpus: dict[str, list[float]] = {"kubectl": [], "skerry": []}
        outs = {}
        for _ in range(runs):
            for name, argv, run_env in (("kubectl", [kubectl, "kustomize", str(directory)], None),
                                        ("skerry", [*skerry, str(directory)], env)):
                t, cpu, outs[name] = _wall(argv, run_env)
                times[name].append(t)
                cpus[name].append(cpu)
        k, sk = statistics.median(times["kubectl"]), statistics.median(times["skerry"])
        kc, skc = statistics.median(cpus["kubectl"]), statistics.median(cpus["skerry"])
        same = [d for d in documents.load_yaml_all(outs["kubectl"]) if d] == [
            d for d in documents.load_yaml_all(outs["skerry"]) if d]
        print(f"  {label:<22} kubectl {k * 1000:7.0f} ms   skerry {sk * 1000:7.0f} ms   ratio {sk / k:5.2f}x "
              f"(acceptance <= {floor:g}x)   output {'identical' if same else 'DIFFERS'}   {loadavg()}")
        print(f"  {'':<22} CPU: kubectl {kc * 1000:7.0f} ms   skerry {skc * 1000:7.0f} ms   ratio {skc / kc:5.2f}x "
              "(user + system; less disturbed by a loaded machine than wall time)")
    objects = [d for d in documents.load_yaml_all(outs["skerry"]) if d]
    kwargs = {"sort_keys": False, "allow_unicode": True, "width": 1 << 30, "default_flow_style": False}
    best = {}
    for name, dump in (("PyYAML (pure Python)", lambda: yaml.dump_all(objects, Dumper=documents.NoAliasDumper, **kwargs)),
                       ("libyaml", lambda: documents.dump_yaml_all(objects))):
        best[name] = min(_timed(dump) for _ in range(3))
    same = yaml.dump_all(objects, Dumper=documents.NoAliasDumper, **kwargs) == documents.dump_yaml_all(objects)
    (py_t, py_out), (c_t, c_out) = best.values()
    print(f"  YAML emitter on that tree: pure Python {py_t * 1000:.0f} ms, libyaml {c_t * 1000:.0f} ms "
          f"({py_t / c_t:.1f}x faster), same bytes: {same}")

    class StockNoAlias(yaml.CSafeDumper):  # PyYAML's representer and serializer in front of libyaml
        def ignore_aliases(self, data):
            return True

    stock_t, stock_out = min(_timed(lambda: yaml.dump_all(objects, Dumper=StockNoAlias, **kwargs)) for _ in range(3))
    print(f"  libyaml fed through PyYAML's representer and serializer {stock_t * 1000:.0f} ms, fed events by "
          f"skerry.core.documents {c_t * 1000:.0f} ms ({stock_t / c_t:.1f}x faster), same bytes: {stock_out == c_out}")
    loads = {name: min(_timed(lambda f=f: f(py_out)) for _ in range(3))[0] for name, f in (
        ("python", lambda text: list(yaml.load_all(text, Loader=documents.StrictSafeLoader))),
        ("libyaml", documents.load_yaml_all))}
    print(f"  YAML loader (budgets kept): pure Python {loads['python'] * 1000:.0f} ms, libyaml "
          f"{loads['libyaml'] * 1000:.0f} ms ({loads['python'] / loads['libyaml']:.1f}x faster)")
    deadline_cost(runs)


def _timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def deadline_cost(runs: int) -> None:
    import statistics

    from skerry.hub.render import inprocess

    if not inprocess.available():
        print("  in-process kustomize not installed: no worker to measure")
        return
    direct = inprocess.InProcessKustomizeEngine()
    t = time.perf_counter()
    worker = inprocess.InProcessKustomizeEngine(timeout=120)
    started = time.perf_counter() - t
    try:
        per = {}
        for name, engine in (("direct", direct), ("worker", worker), ("direct", direct), ("worker", worker)):
            samples = [_timed(lambda e=engine: e.render(EXAMPLE_OVERLAY))[0] for _ in range(max(runs, 20))]
            per[name] = min(per.get(name, 1e9), statistics.median(samples))
    finally:
        worker.close()
    print(f"  per-render deadline (worker process): start {started:.2f} s once; one small overlay "
          f"{per['direct'] * 1000:.2f} ms in-process vs {per['worker'] * 1000:.2f} ms through the worker "
          f"(+{(per['worker'] - per['direct']) * 1000:.2f} ms)   {loadavg()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", default="10,100,1000", help="comma-separated app counts (x 3 environments)")
    p.add_argument("--kubectl-sample", type=int, default=40, help="overlays run through kubectl per size")
    p.add_argument("--full-kubectl", action="store_true", help="run kubectl on every overlay")
    p.add_argument("--startup-runs", type=int, default=15, help="runs of each command for the start-up figures")
    p.add_argument("--startup-only", action="store_true", help="only the command-line figures")
    args = p.parse_args()

    from skerry.core import logging as skerry_logging

    skerry_logging.configure("error")
    sizes = [int(x) for x in args.apps.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="skerry-bench-render-") as tmp:
        print(f"machine: {os.cpu_count()} cores, {loadavg()} (before)")
        for apps in [] if args.startup_only else sizes:
            r = asyncio.run(run_size(apps, pathlib.Path(tmp), args.kubectl_sample, args.full_kubectl))
            how = (
                "all"
                if r["kubectl_measured"] == r["overlays"]
                else f"{r['kubectl_measured']} sampled, x{r['overlays']}"
            )
            print(
                f"\n{apps} apps x 3 envs = {r['overlays']} overlays, {r['clusters']} clusters   [{r['engine']}]"
            )
            print(
                f"  cold full render + sign      {r['cold']:8.2f} s   ({r['cold'] / r['overlays'] * 1000:.2f} ms/overlay)"
            )
            print(
                f"  one-file commit, sync+sign   {r['incremental'] * 1000:8.1f} ms  "
                f"new releases: {', '.join(r['published']) or 'none'} ({len(r['published'])} of {r['clusters']})"
            )
            print(
                f"  kubectl kustomize/overlay    {r['kubectl_total']:8.2f} s   "
                f"({r['kubectl_per_overlay'] * 1000:.1f} ms/overlay; {how})"
            )
            print(
                f"  cold ratio (kubectl / hub)   {r['kubectl_total'] / r['cold']:8.1f}x   (acceptance at 1000x3: >= 10x)"
            )
            print(
                f"  commit / one kubectl run     {r['incremental'] / r['kubectl_per_overlay']:8.2f}    "
                "(acceptance: <= 2)"
            )
            print(
                f"  output vs kubectl            {'identical' if not r['mismatched'] else 'DIFFERS: ' + ', '.join(r['mismatched'][:5])} "
                f"on {r['kubectl_measured']} overlays"
            )
            print(f"  {loadavg()}")
        startup(pathlib.Path(tmp), args.startup_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
