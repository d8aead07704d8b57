"""BundleStatus and Events on the real API server, written through the agent's real KubeClient."""

from __future__ import annotations

import json
import subprocess

import pytest

from skerry.agent.events import CRD_NAME, ClusterStatusPublisher
from skerry.agent.reconcile.model import Condition, ObjectRef, ObjectResult, ReconcileResult

pytestmark = pytest.mark.kube


@pytest.fixture
def kube(kubeconfig):
    from skerry.agent.kube import KubeClient

    client = KubeClient.from_kubeconfig(kubeconfig)
    yield client
    client.close()


def result(ready: bool, *actions: str) -> ReconcileResult:
    objs = tuple(ObjectResult(ObjectRef("v1", "ConfigMap", "app", f"cm{i}"), a) for i, a in enumerate(actions))
    cond = Condition("Ready", "True" if ready else "False", "ReconciliationSucceeded" if ready else "ApplyFailed",
                     "all applied" if ready else "cm0: forbidden")
    return ReconcileResult("oslo", 3, "sha256:" + "a" * 64, "c" * 40, objs, (cond,))


def get(kubeconfig, namespace, *args):
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", namespace, "get", *args, "-o", "json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_conditions_follow_the_reconcile_and_events_are_recorded(kube, kubeconfig, namespace):
    pub = ClusterStatusPublisher(kube, "oslo", namespace, hub="hub:7440")
    pub.ensure_crd()
    assert pub.status_object and kube.crd_established(CRD_NAME)

    pub.reconciling(3, "sha256:" + "a" * 64, "c" * 40)
    conds = {c["type"]: c for c in get(kubeconfig, namespace, "bundlestatus", "oslo")["status"]["conditions"]}
    assert conds["Reconciling"]["status"] == "True" and conds["Ready"]["status"] == "Unknown"

    pub.reconciled(result(False, "failed", "created"), 0.5)
    obj = get(kubeconfig, namespace, "bundlestatus", "oslo")
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert (conds["Ready"]["status"], conds["Reconciling"]["status"], conds["Stalled"]["status"]) == (
        "False", "False", "True")
    assert conds["Stalled"]["reason"] == "ApplyFailed"
    assert obj["status"]["objects"] == {"created": 1, "failed": 1}
    stalled_since = conds["Stalled"]["lastTransitionTime"]

    pub.reconciled(result(True, "configured", "pruned"), 0.2, drift=1)
    conds = {c["type"]: c for c in get(kubeconfig, namespace, "bundlestatus", "oslo")["status"]["conditions"]}
    assert (conds["Ready"]["status"], conds["Stalled"]["status"]) == ("True", "False")
    assert conds["Stalled"]["lastTransitionTime"] >= stalled_since

    events = get(kubeconfig, namespace, "events")["items"]
    reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "oslo"]
    for reason in ("Applied", "ReconcileFailed", "Pruned", "DriftCorrected"):
        assert reason in reasons, reasons
    warning = next(e for e in events if e["reason"] == "ReconcileFailed")
    assert warning["type"] == "Warning" and "forbidden" in warning["message"]
    assert all(e["involvedObject"].get("uid") for e in events if e["reason"] == "Pruned")


def test_status_object_in_a_missing_namespace_is_created_with_it(kube, kubeconfig, namespace):
    ns = f"{namespace}-agent"
    pub = ClusterStatusPublisher(kube, "oslo", ns)
    pub.ensure_crd()
    try:
        pub.reconciled(result(True, "created"), 0.1)
        assert get(kubeconfig, ns, "bundlestatus", "oslo")["status"]["release"] == 3
    finally:
        subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "delete", "namespace", ns, "--wait=false"],
                       capture_output=True)
