"""The agent under the RBAC of deploy/overlays/workload-restricted: per-object "forbidden", watches per namespace.

The RBAC objects are taken from the overlay as ``kubectl kustomize`` builds it
(the component deploy/components/restricted-agent), with its example namespaces
(skerry-system, shop-dev) replaced by the test's and the cluster-scoped names
made unique, and applied for real; the agent then impersonates its
ServiceAccount.
"""

from __future__ import annotations

import pathlib
import subprocess
import time

import pytest
import yaml

from skerry.agent.kube import KubeClient
from skerry.agent.monitor import Monitor
from skerry.agent.reconcile.engine import Reconciler

from .helpers import configmap, kubectl

pytestmark = pytest.mark.kube

OVERLAY = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "overlays" / "workload-restricted"
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def restricted_rbac(agent_namespace: str, managed_namespace: str, suffix: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in docs} == RBAC_KINDS, "the restricted overlay lost part of its RBAC"
    renamed = {d["metadata"]["name"]: f"{d['metadata']['name']}-{suffix}" for d in docs if d["kind"] == "ClusterRole"}
    namespaces = {"skerry-system": agent_namespace, "shop-dev": managed_namespace}
    for d in docs:
        meta = d["metadata"]
        if "namespace" in meta:
            meta["namespace"] = namespaces[meta["namespace"]]
        if d["kind"].startswith("Cluster"):
            meta["name"] = renamed.get(meta["name"], f"{meta['name']}-{suffix}")
        if d["kind"].endswith("Binding"):
            if d["roleRef"]["kind"] == "ClusterRole":
                d["roleRef"]["name"] = renamed[d["roleRef"]["name"]]
            for s in d["subjects"]:
                s["namespace"] = namespaces[s["namespace"]]
    return docs


def test_the_restricted_role_applies_its_namespace_reports_forbidden_elsewhere_and_watches_drift(
    kubeconfig, bundles, namespace, agent_namespace
):
    other = f"{namespace}-other"
    for ns in (agent_namespace, other):
        kubectl(kubeconfig, "create", "namespace", ns)
    manifest = yaml.safe_dump_all(restricted_rbac(agent_namespace, namespace, namespace))
    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=manifest, text=True, check=True, capture_output=True,
    )
    agent = KubeClient.from_kubeconfig(kubeconfig)
    agent.api_client.set_default_header("Impersonate-User", f"system:serviceaccount:{agent_namespace}:skerry-agent")
    engine = Reconciler(agent, None, "skerry", agent_namespace)
    monitor = Monitor(agent, engine, namespace=agent_namespace)
    try:
        cluster_role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{namespace}-x"},
            "rules": [],
        }
        result = engine.reconcile(
            bundles.verified([configmap("mine", namespace), configmap("theirs", other), cluster_role])
        )
        assert result.result_for(("", "ConfigMap", namespace, "mine")).action == "created"
        for key in (("", "ConfigMap", other, "theirs"), ("rbac.authorization.k8s.io", "ClusterRole", "", f"{namespace}-x")):
            r = result.result_for(key)
            assert r.action == "failed" and "forbidden" in r.message, r
        assert result.condition("Inventory").status == "True"
        monitor.retarget()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ("", "ConfigMap", namespace, "mine") not in monitor.health:
            time.sleep(0.1)
        kubectl(kubeconfig, "patch", "configmap", "mine", "-n", namespace, "--type=merge", "-p", '{"data":{"k":"edited"}}')
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not monitor.current_drifts():
            time.sleep(0.1)
        (d,) = monitor.current_drifts()
        assert d.field == ".data.k" and d.live == "edited" and d.changed_by.startswith("kubectl")
    finally:
        monitor.stop()
        agent.close()
        kubectl(kubeconfig, "delete", "namespace", other, "--wait=false", check=False)
