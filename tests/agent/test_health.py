"""Health: per kind as its controller reports it, rolled up per bundle with a timeout.

No kubelet runs here: the real-server tests write status through the status
subresource, as a kubelet or cloud controller would.
"""

from __future__ import annotations

import json
import time

import pytest

from skerry.agent.monitor import Monitor
from skerry.agent.reconcile.health import FAILED, PROGRESSING, READY, Health, assess, rollup
from skerry.agent.reconcile.model import ObjectRef

from .helpers import deployment, kubectl


def dep(replicas=2, generation=2, **status):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }


@pytest.mark.parametrize(
    "obj,expected",
    [
        (dep(observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2), PROGRESSING),
        (dep(observedGeneration=2, replicas=2, updatedReplicas=1, availableReplicas=1), PROGRESSING),
        (dep(observedGeneration=2, replicas=3, updatedReplicas=2, availableReplicas=2), PROGRESSING),
        (dep(observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2), READY),
        (
            dep(
                observedGeneration=2,
                conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            ),
            FAILED,
        ),
        (
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
             "status": {"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "a"}},
            READY,
        ),
        (
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
             "status": {"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b"}},
            PROGRESSING,
        ),
        (
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
             "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}},
            PROGRESSING,
        ),
        (
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
             "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}},
            READY,
        ),
        ({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}, READY),
        ({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, FAILED),
        ({"apiVersion": "batch/v1", "kind": "Job", "status": {"active": 1}}, PROGRESSING),
        ({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}, PROGRESSING),
        ({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}}, READY),
        ({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Lost"}}, FAILED),
        ({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}}, READY),
        ({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {}}, PROGRESSING),
        (
            {"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"},
             "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}},
            READY,
        ),
        (
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "status": {"conditions": [{"type": "Established", "status": "True"}]}},
            READY,
        ),
        (
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "status": {"conditions": [{"type": "NamesAccepted", "status": "False", "message": "taken"}]}},
            FAILED,
        ),
        ({"apiVersion": "x.io/v1", "kind": "Db", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, READY),
        ({"apiVersion": "x.io/v1", "kind": "Db", "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Crash"}]}}, FAILED),
        ({"apiVersion": "x.io/v1", "kind": "Db", "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}, PROGRESSING),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, READY),
    ],
)
def test_each_kind_is_assessed_as_its_controller_reports(obj, expected):
    assert assess(obj).status == expected


def test_the_rollup_fails_fast_and_times_out_progress():
    a, b = ObjectRef("v1", "ConfigMap", "n", "a"), ObjectRef("apps/v1", "Deployment", "n", "web")
    ok = {a: Health(READY), b: Health(READY)}
    assert rollup(ok, elapsed_seconds=1, timeout_seconds=60).status == "True"
    waiting = {a: Health(READY), b: Health(PROGRESSING, "1 of 2 replicas updated")}
    c = rollup(waiting, elapsed_seconds=1, timeout_seconds=60)
    assert (c.status, c.reason) == ("Unknown", "Progressing") and "1 of 2 replicas updated" in c.message
    c = rollup(waiting, elapsed_seconds=61, timeout_seconds=60)
    assert (c.status, c.reason) == ("False", "HealthTimeout") and "apps/Deployment web -n n" in c.message
    c = rollup({a: Health(FAILED, "boom"), b: Health(PROGRESSING)}, elapsed_seconds=1, timeout_seconds=60)
    assert (c.status, c.reason) == ("False", "Failed") and "boom" in c.message


def _status_patch(kubeconfig, kind, name, namespace, status: dict):
    kubectl(
        kubeconfig, "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.kube
def test_health_follows_status_written_through_the_status_subresource(
    reconciler, bundles, kube, kubeconfig, namespace, agent_namespace
):
    lb = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "front", "namespace": namespace},
        "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    result = reconciler.reconcile(bundles.verified([lb, deployment("web", namespace)]))
    assert result.ready, result.conditions
    monitor = Monitor(kube, reconciler, namespace=agent_namespace)
    monitor.retarget()
    try:
        svc = ("", "Service", namespace, "front")
        _wait(lambda: svc in monitor.health)
        assert monitor.health[svc].status == PROGRESSING
        # No kubelet: the Deployment never gets available pods, so the bundle times out.
        c = monitor.health_condition(elapsed_seconds=600, timeout_seconds=300)
        assert (c.status, c.reason) == ("False", "HealthTimeout")
        assert "waiting for a load balancer address" in c.message
        # A cloud controller would write this.
        _status_patch(kubeconfig, "service", "front", namespace, {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}})
        _wait(lambda: monitor.health[svc].status == READY)
        assert "192.0.2.7" in monitor.health[svc].message
    finally:
        monitor.stop()
