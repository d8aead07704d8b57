"""The agent under deploy/base/agent/restricted/rbac.yaml: per-object "forbidden", watches per namespace."""

from __future__ import annotations

import pathlib
import subprocess
import time

import pytest

from skerry.agent.kube import KubeClient
from skerry.agent.monitor import Monitor
from skerry.agent.reconcile.engine import Reconciler

from .conftest import configmap, kubectl

pytestmark = pytest.mark.kube

RBAC = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "base" / "agent" / "restricted" / "rbac.yaml"


def test_the_restricted_role_applies_its_namespace_reports_forbidden_elsewhere_and_watches_drift(
    kubeconfig, bundles, namespace, agent_namespace
):
    other = f"{namespace}-other"
    for ns in (agent_namespace, other):
        kubectl(kubeconfig, "create", "namespace", ns)
    manifest = RBAC.read_text().replace("namespace: shop", f"namespace: {namespace}").replace(
        "skerry-system", agent_namespace
    )
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
