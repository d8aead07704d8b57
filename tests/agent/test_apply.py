"""Server-side apply against the real API server: created, unchanged, configured; field manager; stamps."""

from __future__ import annotations

import pytest

from skerry.agent.reconcile.engine import DIGEST_ANNOTATION, MANAGED_BY_LABEL
from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, Inventory

from .helpers import configmap, deployment, kubectl

pytestmark = pytest.mark.kube


def actions(result):
    return {str(r.ref): r.action for r in result.objects}


def test_apply_creates_configmap_and_deployment_with_field_manager_skerry(
    reconciler, bundles, kube, namespace
):
    result = reconciler.reconcile(
        bundles.verified([configmap("settings", namespace), deployment("web", namespace)])
    )
    assert result.ready, result.conditions
    assert actions(result) == {
        f"ConfigMap settings -n {namespace}": "created",
        f"apps/Deployment web -n {namespace}": "created",
    }
    for api, kind, name in (("v1", "ConfigMap", "settings"), ("apps/v1", "Deployment", "web")):
        live = kube.get(api, kind, name, namespace)
        managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
        assert ("skerry", "Apply") in managers
        assert live["metadata"]["labels"][MANAGED_BY_LABEL] == "skerry"
        assert live["metadata"]["annotations"][DIGEST_ANNOTATION] == result.digest


def test_reapplying_the_same_bundle_reports_unchanged(reconciler, bundles, namespace):
    verified = bundles.verified([configmap("settings", namespace), deployment("web", namespace)])
    reconciler.reconcile(verified)
    again = reconciler.reconcile(verified)
    assert again.ready
    assert set(actions(again).values()) == {"unchanged"}


def test_a_new_release_with_the_same_objects_is_unchanged_although_the_digest_stamp_moves(
    reconciler, bundles, kube, namespace
):
    reconciler.reconcile(bundles.verified([configmap("settings", namespace)]))
    second = reconciler.reconcile(bundles.verified([configmap("settings", namespace)], revision="f" * 40))
    assert actions(second) == {f"ConfigMap settings -n {namespace}": "unchanged"}
    live = kube.get("v1", "ConfigMap", "settings", namespace)
    assert live["metadata"]["annotations"][DIGEST_ANNOTATION] == second.digest


def test_an_updated_object_reports_configured_and_changes_in_the_cluster(
    reconciler, bundles, kube, namespace
):
    reconciler.reconcile(
        bundles.verified([configmap("settings", namespace, {"level": "info"}), deployment("web", namespace)])
    )
    result = reconciler.reconcile(
        bundles.verified(
            [
                configmap("settings", namespace, {"level": "debug"}),
                deployment("web", namespace, image="nginx:1.27"),
            ]
        )
    )
    assert result.ready
    assert set(actions(result).values()) == {"configured"}
    assert kube.get("v1", "ConfigMap", "settings", namespace)["data"] == {"level": "debug"}
    live = kube.get("apps/v1", "Deployment", "web", namespace)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_a_field_removed_from_the_bundle_is_removed_from_the_object(reconciler, bundles, kube, namespace):
    reconciler.reconcile(bundles.verified([configmap("settings", namespace, {"a": "1", "b": "2"})]))
    reconciler.reconcile(bundles.verified([configmap("settings", namespace, {"a": "1"})]))
    assert kube.get("v1", "ConfigMap", "settings", namespace)["data"] == {"a": "1"}


def test_apply_takes_over_fields_another_manager_set(
    reconciler, bundles, kube, kubeconfig, namespace, tmp_path
):
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {namespace}\ndata:\n  level: warn\n"
    )
    kubectl(kubeconfig, "apply", "--server-side", "--field-manager=someone", "-f", str(manifest))
    result = reconciler.reconcile(bundles.verified([configmap("settings", namespace, {"level": "info"})]))
    assert result.ready
    assert kube.get("v1", "ConfigMap", "settings", namespace)["data"]["level"] == "info"


def test_the_inventory_is_recorded_in_the_agent_namespace_which_is_created(
    reconciler, bundles, kube, namespace, agent_namespace
):
    assert kube.get("v1", "Namespace", agent_namespace) is None
    result = reconciler.reconcile(
        bundles.verified([configmap("settings", namespace), deployment("web", namespace)])
    )
    inv = Inventory.from_configmap(kube.get_configmap(agent_namespace, CONFIGMAP_NAME))
    assert {str(r) for r in inv.refs} == {
        f"ConfigMap settings -n {namespace}",
        f"apps/Deployment web -n {namespace}",
    }
    assert (inv.release, inv.digest) == (result.release, result.digest)
    assert result.condition("Inventory").is_true


def test_an_object_without_namespace_lands_in_default_and_cluster_scoped_objects_lose_theirs(
    reconciler, bundles, kube, kubeconfig, namespace
):
    name = f"{namespace}-cr"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "namespace": "ignored"},
        "rules": [],
    }
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{namespace}-dflt"}, "data": {}}
    try:
        result = reconciler.reconcile(bundles.verified([role, cm]))
        assert result.ready, result.conditions
        assert {str(r.ref) for r in result.objects} == {
            f"rbac.authorization.k8s.io/ClusterRole {name}",
            f"ConfigMap {namespace}-dflt -n default",
        }
        assert kube.get("v1", "ConfigMap", f"{namespace}-dflt", "default") is not None
    finally:
        kubectl(kubeconfig, "delete", "clusterrole", name, "--ignore-not-found", check=False)
        kubectl(
            kubeconfig,
            "delete",
            "configmap",
            f"{namespace}-dflt",
            "-n",
            "default",
            "--ignore-not-found",
            check=False,
        )


def test_ports_without_protocol_apply_on_every_supported_api_server(reconciler, bundles, kube, namespace):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    dep = deployment("web", namespace)
    dep["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    result = reconciler.reconcile(bundles.verified([service, dep]))
    assert result.ready, [(str(r.ref), r.action, r.message) for r in result.objects]
    assert kube.get("v1", "Service", "web", namespace)["spec"]["ports"][0]["protocol"] == "TCP"
    again = reconciler.reconcile(bundles.verified([service, dep]))
    assert {r.action for r in again.objects} == {"unchanged"}
