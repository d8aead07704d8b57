"""Namespaces, CRDs and PVCs that leave the bundle stay unless explicitly allowed, and the refusal is said."""

from __future__ import annotations

import json
import uuid

import pytest

from skerry.agent.events import ClusterStatusPublisher
from skerry.agent.reconcile.engine import Reconciler
from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, Inventory

from .helpers import configmap, kubectl
from .test_crd_and_failures import crd

pytestmark = pytest.mark.kube

ALLOW = {"skerry.io/prune": "allow"}


def pvc(name: str, namespace: str, annotations=None) -> dict:
    meta = {"name": name, "namespace": namespace, **({"annotations": annotations} if annotations else {})}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }


def namespace_obj(name: str, annotations=None) -> dict:
    meta = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def widget(group: str, name: str, namespace: str) -> dict:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": 1},
    }


@pytest.fixture
def extra(kubeconfig, namespace):
    """A namespace and a CRD group unique to the test, cleaned up afterwards."""
    tag = uuid.uuid4().hex[:8]
    ns, group = f"prot-{tag}", f"prot-{tag}.example.com"
    yield ns, group
    kubectl(kubeconfig, "delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
    kubectl(
        kubeconfig, "delete", "crd", f"widgets.{group}", "--wait=false", "--ignore-not-found", check=False
    )


def _bundle(namespace, ns, group, annotations=None):
    return [
        namespace_obj(ns, annotations),
        {
            **crd(group),
            "metadata": {"name": f"widgets.{group}", **({"annotations": annotations} if annotations else {})},
        },
        pvc("data", namespace, annotations),
        configmap("plain", namespace),
        configmap("stay", namespace),
    ]


def _names(kube, agent_namespace):
    inv = Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))
    return {r.name for r in inv.refs}


def test_dropped_namespace_crd_and_pvc_stay_and_the_refusal_is_reported(
    reconciler, bundles, kube, kubeconfig, namespace, agent_namespace, extra
):
    ns, group = extra
    first = reconciler.reconcile(
        bundles.verified([*_bundle(namespace, ns, group), widget(group, "w", namespace)])
    )
    assert first.ready, first.conditions
    # The custom resource leaves Git too; it is then pruned like any object, the CRD is not.
    result = reconciler.reconcile(bundles.verified([configmap("stay", namespace)]))
    pruned = result.condition("Pruned")
    assert pruned.reason == "PruneProtected"
    assert ns in pruned.message and f"widgets.{group}" in pruned.message and "data" in pruned.message
    assert kube.get("v1", "Namespace", ns, None) is not None
    assert (
        kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}", None) is not None
    )
    assert kube.get("v1", "PersistentVolumeClaim", "data", namespace) is not None
    assert kube.get("v1", "ConfigMap", "plain", namespace) is None  # an ordinary object still prunes
    assert _names(kube, agent_namespace) == {"stay", ns, f"widgets.{group}", "data"}  # not forgotten
    # The refusal reaches the cluster as a Warning Event too.
    publisher = ClusterStatusPublisher(kube, "oslo", namespace)
    publisher.ensure_crd()
    publisher.reconciled(result, 0.1)
    out = kubectl(kubeconfig, "get", "events", "-n", namespace, "-o", "json")
    warnings = [e for e in json.loads(out.stdout)["items"] if e["type"] == "Warning"]
    assert any("PruneProtected" in e["message"] and f"Namespace {ns}" in e["message"] for e in warnings), (
        warnings
    )


def test_a_custom_resource_of_a_dropped_crd_survives(reconciler, bundles, kube, namespace, extra):
    ns, group = extra
    reconciler.reconcile(bundles.verified(_bundle(namespace, ns, group)))
    kube.apply(widget(group, "unmanaged", namespace), field_manager="someone-else")
    reconciler.reconcile(bundles.verified([configmap("stay", namespace)]))
    assert kube.get(f"{group}/v1", "Widget", "unmanaged", namespace) is not None


def test_with_the_annotation_they_are_pruned(reconciler, bundles, kube, namespace, agent_namespace, extra):
    ns, group = extra
    reconciler.reconcile(bundles.verified(_bundle(namespace, ns, group, ALLOW)))
    result = reconciler.reconcile(bundles.verified([configmap("stay", namespace)]))
    assert result.condition("Pruned").reason == "Pruned", result.conditions
    assert kube.get("v1", "PersistentVolumeClaim", "data", namespace) is None or _terminating(
        kube.get("v1", "PersistentVolumeClaim", "data", namespace)
    )
    assert _names(kube, agent_namespace) == {"stay"}


def test_a_later_allow_prunes_what_was_kept(
    reconciler, bundles, kube, kubeconfig, namespace, agent_namespace, extra
):
    ns, group = extra
    reconciler.reconcile(bundles.verified(_bundle(namespace, ns, group)))
    reconciler.reconcile(bundles.verified([configmap("stay", namespace)]))
    kubectl(kubeconfig, "annotate", "namespace", ns, "skerry.io/prune=allow")
    result = reconciler.reconcile(bundles.verified([configmap("stay", namespace)]))
    assert result.condition("Pruned").reason == "PruneProtected"
    assert f"Namespace {ns}" not in result.condition("Pruned").message
    assert ns not in _names(kube, agent_namespace)


def test_with_the_agent_flag_they_are_pruned(kube, bundles, namespace, agent_namespace, extra):
    ns, group = extra
    reconciler = Reconciler(
        kube, None, "skerry", agent_namespace, allow_prune_protected=True, crd_wait_seconds=20
    )
    reconciler.reconcile(bundles.verified(_bundle(namespace, ns, group)))
    result = reconciler.reconcile(bundles.verified([configmap("stay", namespace)]))
    assert result.ready, result.conditions
    assert {r.ref.name for r in result.by_action("pruned")} == {ns, f"widgets.{group}", "data", "plain"}
    assert _names(kube, agent_namespace) == {"stay"}


def _terminating(obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))
