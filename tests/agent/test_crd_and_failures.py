"""CRDs and their objects in one bundle; per-object failures that do not stop the rest."""

from __future__ import annotations

import pytest

from skerry.agent.kube import KubeClient
from skerry.agent.reconcile.engine import Reconciler
from skerry.core.errors import KubeError

from .helpers import configmap, deployment, kubectl

pytestmark = pytest.mark.kube


def crd(group: str, kind: str = "Widget", scope: str = "Namespaced") -> dict:
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def group(namespace, kubeconfig):
    name = f"{namespace}.example.com"
    yield name
    kubectl(
        kubeconfig,
        "delete",
        "crd",
        f"widgets.{name}",
        f"gadgets.{name}",
        "--ignore-not-found",
        "--wait=false",
        check=False,
    )


def test_crd_and_custom_resource_in_one_bundle_apply_in_order(reconciler, bundles, kube, namespace, group):
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    # The custom resource comes first in the bundle and its kind does not exist yet.
    result = reconciler.reconcile(bundles.verified([widget, crd(group), configmap("c", namespace)]))
    assert result.ready, [(str(r.ref), r.action, r.message) for r in result.objects]
    kinds = [r.ref.kind for r in result.objects]
    assert kinds.index("CustomResourceDefinition") < kinds.index("Widget")
    assert kube.get(f"{group}/v1", "Widget", "w1", namespace)["spec"] == {"size": 3}


def test_a_cluster_scoped_custom_resource_loses_a_stray_namespace(
    reconciler, bundles, kube, namespace, group
):
    gadget = {
        "apiVersion": f"{group}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1", "namespace": namespace},
    }
    result = reconciler.reconcile(bundles.verified([crd(group, "Gadget", scope="Cluster"), gadget]))
    assert result.ready, [(str(r.ref), r.action, r.message) for r in result.objects]
    assert kube.get(f"{group}/v1", "Gadget", "g1") is not None


def test_an_object_of_a_kind_nobody_serves_fails_alone_and_quickly(reconciler, bundles, kube, namespace):
    stray = {
        "apiVersion": "nowhere.example.com/v1",
        "kind": "Ghost",
        "metadata": {"name": "g", "namespace": namespace},
    }
    result = reconciler.reconcile(bundles.verified([stray, configmap("c", namespace)]))
    ghost = result.result_for(("nowhere.example.com", "Ghost", namespace, "g"))
    assert ghost.action == "failed"
    assert "does not serve" in ghost.message
    assert result.result_for(("", "ConfigMap", namespace, "c")).action == "created"
    assert result.condition("Applied").reason == "ApplyFailed"


def test_an_object_the_api_server_rejects_is_a_per_object_failure_and_the_rest_applies(
    reconciler, bundles, kube, namespace
):
    bad = deployment("bad", namespace)
    bad["spec"]["replicas"] = -1
    result = reconciler.reconcile(
        bundles.verified([configmap("a", namespace), bad, deployment("good", namespace)])
    )
    assert not result.ready
    failed = result.result_for(("apps", "Deployment", namespace, "bad"))
    assert failed.action == "failed"
    assert f"apps/Deployment bad -n {namespace}" in failed.message
    assert "replicas" in failed.message  # the API server's own words
    assert result.result_for(("apps", "Deployment", namespace, "good")).action == "created"
    assert result.result_for(("", "ConfigMap", namespace, "a")).action == "created"
    assert kube.get("apps/v1", "Deployment", "good", namespace) is not None
    assert result.condition("Ready").status == "False"
    assert result.condition("Applied").reason == "ApplyFailed"


def test_an_object_into_a_missing_namespace_fails_with_not_found(reconciler, bundles, namespace):
    result = reconciler.reconcile(
        bundles.verified([configmap("a", f"{namespace}-missing"), configmap("b", namespace)])
    )
    assert result.result_for(("", "ConfigMap", f"{namespace}-missing", "a")).action == "failed"
    assert result.result_for(("", "ConfigMap", namespace, "b")).action == "created"


def test_the_same_object_twice_in_a_bundle_is_refused(reconciler, bundles, namespace):
    result = reconciler.reconcile(
        bundles.verified([configmap("a", namespace, {"x": "1"}), configmap("a", namespace, {"x": "2"})])
    )
    (only,) = result.objects
    assert only.action == "failed" and "more than once" in only.message


def test_a_forbidden_object_is_a_per_object_failure(kubeconfig, bundles, namespace, agent_namespace):
    # An identity allowed to write ConfigMaps in the namespace and its inventory, nothing else.
    role = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {namespace}-cm-writer}}
rules:
- apiGroups: [""]
  resources: [configmaps, namespaces]
  verbs: [get, list, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {namespace}-cm-writer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {namespace}-cm-writer}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: limited-{namespace}}}
"""
    subprocess_input(kubeconfig, role)
    try:
        limited = KubeClient.from_kubeconfig(kubeconfig)
        limited.api_client.set_default_header("Impersonate-User", f"limited-{namespace}")
        reconciler = Reconciler(limited, None, "skerry", agent_namespace)
        result = reconciler.reconcile(
            bundles.verified([configmap("ok", namespace), deployment("web", namespace)])
        )
        denied = result.result_for(("apps", "Deployment", namespace, "web"))
        assert denied.action == "failed"
        assert "forbidden" in denied.message
        assert result.result_for(("", "ConfigMap", namespace, "ok")).action == "created"
    finally:
        kubectl(
            kubeconfig,
            "delete",
            "clusterrole,clusterrolebinding",
            f"{namespace}-cm-writer",
            "--ignore-not-found",
            check=False,
        )


def subprocess_input(kubeconfig, manifest: str) -> None:
    import subprocess

    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=manifest,
        text=True,
        check=True,
        capture_output=True,
    )


# --- KubeClient error translation -----------------------------------------------------------


def test_kube_errors_carry_a_reason_and_name_the_object(kube, namespace):
    with pytest.raises(KubeError) as e:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "Bad_Name", "namespace": namespace},
            }
        )
    assert e.value.reason == "Invalid" and e.value.http_status == 422
    assert str(e.value).startswith(f"ConfigMap Bad_Name -n {namespace}: ")
    with pytest.raises(KubeError) as e:
        kube.is_namespaced("nowhere.example.com/v1", "Ghost")
    assert e.value.reason == "UnknownKind"
    assert kube.get("v1", "ConfigMap", "absent", namespace) is None
    assert kube.delete("v1", "ConfigMap", "absent", namespace) is False


def test_an_unreachable_api_server_is_unavailable(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
    )
    client = KubeClient.from_kubeconfig(kubeconfig, request_timeout=2)
    with pytest.raises(KubeError) as e:
        client.get("v1", "ConfigMap", "x", "default")
    assert e.value.reason == "Unavailable"
    assert "127.0.0.1:1" in str(e.value)


def test_an_explicit_kubeconfig_that_does_not_exist_is_a_config_error(tmp_path):
    from skerry.core.errors import ConfigError

    with pytest.raises(ConfigError, match="does-not-exist"):
        KubeClient.from_kubeconfig(tmp_path / "does-not-exist")
