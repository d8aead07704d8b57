"""From nothing to a promotion, as a new user goes: ``skerry install`` into a real API server, an agent
per workload cluster with ``skerry cluster add --install``, ``skerry operator add``, ``skerry login``,
then ``skerry status``, ``skerry freight`` and ``skerry promote --wait`` with no TLS flag typed.

Two private envtest clusters (contexts ``mgmt`` and ``prod`` of one kubeconfig): the management
cluster also runs the dev agent, ``prod`` runs the prod agent; private because the install owns
``skerry-system`` and cluster-wide objects. envtest has no kubelet, so pods never run: the hub and
the agents run as local processes made from the installed Deployments and the Secrets and
ConfigMaps they mount (``localpod.LocalPod``: volumes as directories, env and args as the pod would
get them, mount paths and ports rewritten to local ones). The sealer is not started (the fleet here
has no SealedSecret). Two things are added to the hub's installed command line, said here: release
keys from the installer's offline directory (``--release-keys``, what CI's ``skerry keys sign``
would do) and a 1 s poll interval, so the test need not wait a minute per commit.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from skerry.cli import build_parser
from skerry.install.manifests import references
from skerry.testing.devstack import EXAMPLES, git, wait_for
from skerry.testing.envtest import LocalCluster
from skerry.testing.envtest.process import free_ports

from .localpod import LocalPod, kubectl_json

pytestmark = [pytest.mark.kube, pytest.mark.e2e, pytest.mark.timeout(900)]

NS = "skerry-system"
PROMOTION = """
promotion:
  promoters: [alice]
  apps:
    web:
      overlays: {dev: overlays/dev, prod: overlays/prod}
  environments:
    dev: {soak: 1s}
    prod: {soak: 1s}
"""


def merged_kubeconfig(path: pathlib.Path, clusters: dict[str, LocalCluster]) -> pathlib.Path:
    """One kubeconfig, one context per cluster (named by its key), as a user with several clusters has."""
    merged = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
              "current-context": next(iter(clusters))}
    for name, cluster in clusters.items():
        config = json.loads(cluster.kubeconfig.read_text())
        merged["clusters"].append({"name": name, "cluster": config["clusters"][0]["cluster"]})
        merged["users"].append({"name": name, "user": config["users"][0]["user"]})
        merged["contexts"].append({"name": name, "context": {"cluster": name, "user": name}})
    path.write_text(json.dumps(merged))
    return path


class World:
    def __init__(self, tmp: pathlib.Path, kubeconfig: pathlib.Path, clusters: dict[str, LocalCluster]):
        self.tmp = tmp
        self.kubeconfig = kubeconfig
        self.clusters = clusters
        self.out = tmp / "install"
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "XDG_CONFIG_HOME": str(tmp / "config"),
                    "HOME": str(tmp / "home")}
        for var in ("SKERRY_HUB", "SKERRY_TLS_CA", "SKERRY_TLS_CERT", "SKERRY_TLS_KEY", "SKERRY_CONTEXT"):
            self.env.pop(var, None)
        self.services = []
        self.ports = dict(zip((7440, 7441, 7443), free_ports(3), strict=True))
        self.repo = tmp / "work"
        self.remote = tmp / "fleet.git"

    def skerry(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "skerry", *args], capture_output=True, text=True,
                             env=self.env, timeout=300)
        if check:
            assert out.returncode == 0, f"skerry {' '.join(args)}: {out.stderr}"
        return out

    def seed_fleet(self) -> None:
        shutil.copytree(EXAMPLES, self.repo)
        prod = self.repo / "overlays/prod"
        (prod / "sealed-db-credentials.yaml").unlink()
        kust = prod / "kustomization.yaml"
        kust.write_text(kust.read_text().replace("  - sealed-db-credentials.yaml\n", ""))
        fleet = (self.repo / "skerry.yaml").read_text()
        (self.repo / "skerry.yaml").write_text(fleet[: fleet.index("# Promotion")] + PROMOTION)
        git(self.repo, "init", "-q", "-b", "main")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "fleet")
        git(self.tmp, "clone", "-q", "--bare", str(self.repo), str(self.remote))
        git(self.repo, "remote", "add", "origin", str(self.remote))

    def kube(self, context: str) -> pathlib.Path:
        return self.clusters[context].kubeconfig

    def pod(self, context: str, deployment: str) -> LocalPod:
        return LocalPod(self.kube(context), NS, deployment, self.tmp / f"{context}-{deployment}", self.ports)

    def status(self) -> dict[str, dict]:
        out = self.skerry("status", "-o", "json")
        return {c["cluster"]: c for c in json.loads(out.stdout).get("clusters", [])}

    def stop(self) -> None:
        for service in self.services:
            service.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install-e2e")
    clusters = {"mgmt": LocalCluster(tmp / "mgmt-cluster"), "prod": LocalCluster(tmp / "prod-cluster")}
    started = []
    try:
        for cluster in clusters.values():
            started.append(cluster.start(timeout=180))
        w = World(tmp, merged_kubeconfig(tmp / "kubeconfig", clusters), clusters)
        w.seed_fleet()
        yield w
        w.stop()
    finally:
        for cluster in started:
            cluster.stop()


def live_secret(w: World, context: str, name: str) -> dict[str, bytes]:
    obj = kubectl_json(w.kube(context), "get", "secret", name, "-n", NS)
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def test_install_makes_every_object_the_manifests_reference_and_a_second_run_changes_nothing(world):
    w = world
    first = w.skerry("install", "--repo", str(w.remote), "--env", "dev", "--env", "prod", "--name", "127.0.0.1",
                     "--out-dir", str(w.out), "--context", "mgmt")
    assert "secret/skerry-system/skerry-hub-seed created" in first.stdout
    assert "offline keys written to" in first.stderr and "Keep them off this machine" in first.stderr
    for key in ("installation-ca.key", "offline/root-1.key", "offline/targets.key", "offline/release-prod-1.key"):
        assert (w.out / key).stat().st_mode & 0o777 == 0o600, key
    seed = live_secret(w, "mgmt", "skerry-hub-seed")
    assert set(seed) == {"enrollment-ca.crt", "enrollment-ca.key", "token.key", "trust.tar.gz"}
    assert b"root-1" not in seed["trust.tar.gz"]  # offline keys never reach the cluster

    again = w.skerry("install", "--repo", str(w.remote), "--env", "dev", "--env", "prod", "--name", "127.0.0.1",
                     "--out-dir", str(w.out), "--context", "mgmt")
    assert again.stdout.strip() and all(line.endswith(" unchanged") for line in again.stdout.splitlines())
    assert live_secret(w, "mgmt", "skerry-hub-seed") == seed
    printed = w.skerry("install", "--repo", str(w.remote), "--env", "dev", "--env", "prod", "--name", "127.0.0.1",
                       "--out-dir", str(w.out), "--context", "mgmt", "--dry-run", "-o", "json")
    names = {(o["kind"], o["metadata"]["name"]) for o in json.loads(printed.stdout)["items"]}
    assert ("Secret", "skerry-hub-seed") in names and ("Deployment", "skerry-hub") in names

    for cluster, env in (("oslo-dev", "dev"), ("oslo-prod", "prod")):
        context = "mgmt" if env == "dev" else "prod"
        w.skerry("cluster", "add", cluster, "--install", "--environment", env, "--context", context,
                 "--management-context", "mgmt")
    parser = build_parser()
    for context, deployments in (("mgmt", ("skerry-hub", "skerry-sealer", "skerry-agent")), ("prod", ("skerry-agent",))):
        live = [kubectl_json(w.kube(context), "get", "deployment", d, "-n", NS) for d in deployments]
        for kind, name in references(live):
            kubectl_json(w.kube(context), "get", kind.lower(), name, "-n", NS)  # exists, or kubectl fails
        for dep in live:
            pod = w.pod(context, dep["metadata"]["name"])
            for c in dep["spec"]["template"]["spec"].get("initContainers", []) + dep["spec"]["template"]["spec"]["containers"]:
                args = pod.args(c, pod.environment(c))
                assert not any("$(" in a for a in args), args
                parsed = parser.parse_args(args)  # a usage error exits 2
                assert callable(parsed.func), c["name"]


def test_operator_add_and_login_then_status_freight_and_promote_with_no_tls_flag(world):
    w = world
    hub_pod = w.pod("mgmt", "skerry-hub")
    hub_pod.run_init()  # hub seed: the enrollment CA, token key and trust directory onto the state volume
    keys = ",".join(f"{env}={w.out / 'offline' / f'release-{env}-1.key'}" for env in ("dev", "prod"))
    hub = hub_pod.start("hub", "--release-keys", keys, "--interval", "1s")
    w.services.append(hub)
    hub.ready(timeout=120)
    for context in ("mgmt", "prod"):  # oslo-dev's agent and oslo-prod's
        pod = w.pod(context, "skerry-agent")
        pod.run_init(extra_env={"KUBECONFIG": str(w.kube(context))})  # agent enroll: the token for a certificate
        w.services.append(pod.start("agent", extra_env={"KUBECONFIG": str(w.kube(context))}))

    ops = w.tmp / "alice"
    w.skerry("operator", "add", "alice", "--context", "mgmt", "--out-dir", str(ops))
    w.skerry("login", f"127.0.0.1:{w.ports[7440]}", "--name", "mgmt", "--tls-ca", str(w.out / "hub-ca.crt"),
             "--tls-cert", str(ops / "alice.crt"), "--tls-key", str(ops / "alice.key"))

    def applied(cluster: str):
        view = w.status().get(cluster) or {}
        rep = view.get("reported") or {}
        return view.get("desired_version") and rep.get("applied_version") == view["desired_version"] and view

    for cluster in ("oslo-dev", "oslo-prod"):
        wait_for(lambda c=cluster: applied(c), 240, f"{cluster} to apply its bundle", hub)
    table = w.skerry("status").stdout
    assert "oslo-dev" in table.splitlines()[1] + table and "READY" in table.splitlines()[0]

    kust = w.repo / "overlays/dev/kustomization.yaml"
    kust.write_text(kust.read_text().replace('newTag: "1.25.3"', 'newTag: "1.27.0"'))
    git(w.repo, "commit", "-q", "-am", "dev: web 1.27.0")
    git(w.repo, "push", "-q", "origin", "HEAD:main")
    wait_for(lambda: "nginx:1.27.0" in w.skerry("freight", "web", "--env", "dev", "-o", "json").stdout
             and applied("oslo-dev"), 240, "dev to run 1.27.0", hub)
    freight = w.skerry("freight", "web")
    assert "nginx:1.27.0" in freight.stdout and "nginx:1.25.3" in freight.stdout

    wait_for(lambda: w.skerry("promote", "web", "--from", "dev", "--to", "prod", "--dry-run",
                              check=False).returncode == 0, 120, "dev's soak to pass", hub)
    done = w.skerry("promote", "web", "--from", "dev", "--to", "prod", "--wait", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cluster oslo-prod: healthy" in done.stdout
    image = subprocess.run(["kubectl", "--kubeconfig", str(w.kube("prod")), "get", "deploy", "web", "-n", "shop-prod",
                            "-o", "jsonpath={.spec.template.spec.containers[0].image}"],
                           capture_output=True, text=True, check=True).stdout
    assert image == "nginx:1.27.0"
