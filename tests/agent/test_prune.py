"""Pruning: only what the inventory recorded and left the bundle; never by label; never everything."""

from __future__ import annotations

import pytest

from skerry.agent.reconcile.engine import MANAGED_BY_LABEL
from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, Inventory

from .helpers import Bundles, configmap, deployment, kubectl

pytestmark = pytest.mark.kube


def action_of(result, kind, name):
    (r,) = [r for r in result.objects if r.ref.kind == kind and r.ref.name == name]
    return r.action


def test_an_object_removed_from_the_bundle_is_pruned(reconciler, bundles, kube, namespace, agent_namespace):
    reconciler.reconcile(bundles.verified([configmap("keep", namespace), configmap("drop", namespace)]))
    result = reconciler.reconcile(bundles.verified([configmap("keep", namespace)]))
    assert result.ready, result.conditions
    assert action_of(result, "ConfigMap", "drop") == "pruned"
    assert kube.get("v1", "ConfigMap", "drop", namespace) is None
    assert kube.get("v1", "ConfigMap", "keep", namespace) is not None
    inv = Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))
    assert [r.name for r in inv.refs] == ["keep"]


def test_an_object_someone_else_created_with_the_same_labels_is_not_pruned(
    reconciler, bundles, kube, kubeconfig, namespace
):
    reconciler.reconcile(bundles.verified([configmap("ours", namespace), deployment("web", namespace)]))
    kubectl(kubeconfig, "create", "configmap", "theirs", "-n", namespace, "--from-literal=x=y")
    kubectl(kubeconfig, "label", "configmap", "theirs", "-n", namespace, f"{MANAGED_BY_LABEL}=skerry")
    result = reconciler.reconcile(bundles.verified([deployment("web", namespace)]))
    assert result.ready
    assert action_of(result, "ConfigMap", "ours") == "pruned"
    assert not [r for r in result.objects if r.ref.name == "theirs"]
    assert kube.get("v1", "ConfigMap", "theirs", namespace) is not None


def test_an_empty_bundle_is_refused_and_nothing_is_pruned(
    reconciler, bundles, kube, namespace, agent_namespace
):
    reconciler.reconcile(bundles.verified([configmap("a", namespace), deployment("web", namespace)]))
    result = reconciler.reconcile(bundles.verified([]))
    assert not result.ready
    assert result.condition("Pruned").reason == "EmptyBundleRefused"
    assert result.condition("Ready").reason == "EmptyBundleRefused"
    assert {r.action for r in result.objects} == {"skipped"}
    assert kube.get("v1", "ConfigMap", "a", namespace) is not None
    assert kube.get("apps/v1", "Deployment", "web", namespace) is not None
    # Still recorded, so a later non-empty bundle prunes them normally.
    assert len(Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))) == 2


def test_an_empty_bundle_prunes_everything_when_allowed(kube, bundles, namespace, agent_namespace):
    from skerry.agent.reconcile.engine import Reconciler

    reconciler = Reconciler(kube, None, "skerry", agent_namespace, allow_prune_all=True)
    reconciler.reconcile(bundles.verified([configmap("a", namespace)]))
    result = reconciler.reconcile(bundles.verified([]))
    assert result.ready
    assert action_of(result, "ConfigMap", "a") == "pruned"
    assert kube.get("v1", "ConfigMap", "a", namespace) is None


def test_an_object_annotated_prune_disabled_is_left_in_place(
    reconciler, bundles, kube, kubeconfig, namespace, agent_namespace
):
    reconciler.reconcile(bundles.verified([configmap("precious", namespace), configmap("other", namespace)]))
    kubectl(kubeconfig, "annotate", "configmap", "precious", "-n", namespace, "skerry.io/prune=disabled")
    result = reconciler.reconcile(bundles.verified([configmap("other", namespace)]))
    assert action_of(result, "ConfigMap", "precious") == "skipped"
    assert kube.get("v1", "ConfigMap", "precious", namespace) is not None
    inv = Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))
    assert [r.name for r in inv.refs] == ["other"]  # left alone for good, no longer managed


def test_a_recorded_object_relabelled_by_someone_else_is_not_pruned(
    reconciler, bundles, kube, kubeconfig, namespace
):
    reconciler.reconcile(
        bundles.verified([configmap("handed-over", namespace), configmap("other", namespace)])
    )
    kubectl(
        kubeconfig,
        "label",
        "--overwrite",
        "configmap",
        "handed-over",
        "-n",
        namespace,
        f"{MANAGED_BY_LABEL}=helm",
    )
    result = reconciler.reconcile(bundles.verified([configmap("other", namespace)]))
    assert action_of(result, "ConfigMap", "handed-over") == "skipped"
    assert kube.get("v1", "ConfigMap", "handed-over", namespace) is not None


def test_an_object_deleted_by_hand_is_pruned_as_already_absent(reconciler, bundles, kubeconfig, namespace):
    reconciler.reconcile(bundles.verified([configmap("gone", namespace), configmap("other", namespace)]))
    kubectl(kubeconfig, "delete", "configmap", "gone", "-n", namespace)
    result = reconciler.reconcile(bundles.verified([configmap("other", namespace)]))
    assert result.ready
    assert action_of(result, "ConfigMap", "gone") == "pruned"


def test_nothing_is_pruned_while_another_object_fails_to_apply(
    reconciler, bundles, kube, namespace, agent_namespace
):
    reconciler.reconcile(bundles.verified([deployment("web-v1", namespace), configmap("c", namespace)]))
    broken = deployment("web-v2", namespace)
    broken["spec"]["selector"]["matchLabels"] = {
        "app": "mismatch"
    }  # rejected: selector does not match the template
    result = reconciler.reconcile(bundles.verified([broken, configmap("c", namespace)]))
    assert not result.ready
    assert action_of(result, "Deployment", "web-v2") == "failed"
    assert action_of(result, "Deployment", "web-v1") == "skipped"
    assert result.condition("Pruned").reason == "PrunePostponed"
    assert kube.get("apps/v1", "Deployment", "web-v1", namespace) is not None
    inv = Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))
    assert {r.name for r in inv.refs} == {
        "web-v1",
        "c",
    }  # the failed new one was never created, so not recorded


def test_an_inventory_of_another_cluster_is_never_used_to_prune(
    kube, bundles, namespace, agent_namespace, tmp_path
):
    from skerry.agent.reconcile.engine import Reconciler

    Reconciler(kube, None, "skerry", agent_namespace).reconcile(
        bundles.verified([configmap("theirs", namespace)])
    )
    other = Bundles(tmp_path / "other", cluster="bergen")
    result = Reconciler(kube, None, "skerry", agent_namespace).reconcile(
        other.verified([configmap("mine", namespace)])
    )
    assert not result.ready
    assert result.condition("Ready").reason == "InventoryConflict"
    assert "oslo" in result.condition("Ready").message and "--namespace" in result.condition("Ready").message
    assert result.objects == ()
    assert kube.get("v1", "ConfigMap", "theirs", namespace) is not None
    assert kube.get("v1", "ConfigMap", "mine", namespace) is None


def test_a_corrupt_inventory_applies_but_prunes_nothing_and_is_replaced(
    reconciler, bundles, kube, namespace, agent_namespace
):
    reconciler.reconcile(bundles.verified([configmap("a", namespace), configmap("b", namespace)]))
    kube.put_configmap(agent_namespace, CONFIGMAP_NAME, data={"inventory.json": "{garbage"})
    result = reconciler.reconcile(bundles.verified([configmap("a", namespace)]))
    assert result.condition("Pruned").reason == "InventoryCorrupt"
    assert not result.ready
    assert kube.get("v1", "ConfigMap", "b", namespace) is not None
    inv = Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))
    assert [r.name for r in inv.refs] == ["a"]
