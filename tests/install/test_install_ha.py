"""``skerry install --ha --database-secret NAME`` into a real API server: hub replicas on PostgreSQL.

The install renders deploy/overlays/ha, makes the Secrets the replicas share from the same keys the
single hub's seed carries, and takes the database Secret as the user made it (CloudNativePG's
``skerry-hub-db-app``, key ``uri``): refused in one line while it is missing. A private envtest
cluster, because the install owns ``skerry-system``; pods never run there, so each container's
command line is checked by parsing it with the real CLI.
"""

from __future__ import annotations

import base64
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from skerry.cli import build_parser
from skerry.hub.seed import TRUST_ARCHIVE
from skerry.install.manifests import references
from skerry.testing.envtest import LocalCluster
from skerry.testing.envtest.process import free_ports

from .localpod import LocalPod, kubectl_json

pytestmark = [pytest.mark.kube, pytest.mark.timeout(600)]

NS = "skerry-system"
DB = "skerry-hub-db-app"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install-ha")
    local = LocalCluster(tmp / "cluster")
    local.start(timeout=180)
    try:
        yield local
    finally:
        local.stop()


def skerry(cluster: LocalCluster, out: pathlib.Path, *extra: str, database: str = DB) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "skerry", "install", "--repo", "https://git.example/fleet.git",
                           "--env", "dev", "--name", "127.0.0.1", "--out-dir", str(out), "--ha",
                           "--database-secret", database, *extra], capture_output=True, text=True, env=env, timeout=300)


def kubectl(cluster: LocalCluster, *args: str, check: bool = True) -> None:
    subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, text=True,
                   check=check)


def live_secret(cluster: LocalCluster, name: str) -> dict[str, bytes]:
    obj = kubectl_json(cluster.kubeconfig, "get", "secret", name, "-n", NS)
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def test_ha_install_needs_the_database_secret_then_makes_what_the_replicas_mount(cluster, tmp_path):
    out = tmp_path / "install"
    missing = skerry(cluster, out)
    assert missing.returncode != 0
    assert len(missing.stderr.strip().splitlines()) == 1 and DB in missing.stderr, missing.stderr
    assert not (out / "installation-ca.key").exists()  # refused before any key was made

    kubectl(cluster, "create", "namespace", NS)
    kubectl(cluster, "create", "secret", "generic", DB, "-n", NS,
            "--from-literal=uri=postgresql://skerry@skerry-hub-db-rw:5432/app")
    first = skerry(cluster, out)
    assert first.returncode == 0, first.stderr
    assert "secret/skerry-system/skerry-hub-enrollment created" in first.stdout

    seed = live_secret(cluster, "skerry-hub-seed")
    enrollment = live_secret(cluster, "skerry-hub-enrollment")
    assert enrollment == {"ca.crt": seed["enrollment-ca.crt"], "ca.key": seed["enrollment-ca.key"],
                          "token.key": seed["token.key"]}
    trust = live_secret(cluster, "skerry-hub-trust-online")
    assert {"root.json", "config.json"} <= set(trust)
    keys = {name for name in trust if name.endswith(".key")}
    assert keys and all(f"{name}.pub.json" in trust for name in keys)
    assert not any(name.startswith(("root", "targets", "release")) for name in keys), keys  # offline stay offline
    assert trust["root.json"] == (out / "root.json").read_bytes()
    assert TRUST_ARCHIVE in seed  # the seed stays: a second run reads the keys back from it

    hub = kubectl_json(cluster.kubeconfig, "get", "deployment", "skerry-hub", "-n", NS)
    assert hub["spec"]["replicas"] == 3
    live = [hub, kubectl_json(cluster.kubeconfig, "get", "deployment", "skerry-sealer", "-n", NS)]
    assert ("Secret", DB) in references(live)
    for kind, name in references(live):
        kubectl_json(cluster.kubeconfig, "get", kind.lower(), name, "-n", NS)  # exists, or kubectl fails
    parser = build_parser()
    for dep in live:
        pod = LocalPod(cluster.kubeconfig, NS, dep["metadata"]["name"], tmp_path / dep["metadata"]["name"],
                       dict(zip((7440, 7441, 7443), free_ports(3), strict=True)))
        spec = dep["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c.get("command"):  # the replicas' key copy is a shell script, not a skerry command
                continue
            args = pod.args(c, pod.environment(c))
            assert not any("$(" in a for a in args), args
            assert callable(parser.parse_args(args).func), c["name"]  # a usage error exits 2

    again = skerry(cluster, out)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() and all(line.endswith(" unchanged") for line in again.stdout.splitlines())
    assert live_secret(cluster, "skerry-hub-trust-online") == trust

    printed = skerry(cluster, out, "--dry-run", "-o", "yaml")
    assert printed.returncode == 0, printed.stderr
    names = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(printed.stdout) if o}
    assert {("Secret", "skerry-hub-enrollment"), ("Secret", "skerry-hub-trust-online"),
            ("Deployment", "skerry-hub")} <= names
    assert ("Secret", DB) not in names  # the user's Secret is never written


def test_the_hub_reads_the_dsn_from_the_secret_the_user_names(cluster, tmp_path):
    kubectl(cluster, "create", "namespace", NS, check=False)
    kubectl(cluster, "create", "secret", "generic", "pg-dsn", "-n", NS, "--from-literal=uri=postgresql://h/app")
    printed = skerry(cluster, tmp_path / "install", "--dry-run", "-o", "yaml", database="pg-dsn")
    assert printed.returncode == 0, printed.stderr
    hub = next(o for o in yaml.safe_load_all(printed.stdout) if o and o["kind"] == "Deployment"
               and o["metadata"]["name"] == "skerry-hub")
    dsn = {v["name"]: v for v in hub["spec"]["template"]["spec"]["volumes"]}["dsn"]
    assert dsn["secret"]["secretName"] == "pg-dsn"
