"""Apply/delete ordering and the prune decision (pure)."""

from __future__ import annotations

from skerry.agent.reconcile import plan
from skerry.agent.reconcile.model import ObjectRef


def ref(api, kind, name, ns=""):
    return ObjectRef(api, kind, ns, name)


CRD = ref("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com")
NS = ref("v1", "Namespace", "shop")
CLUSTER_ROLE = ref("rbac.authorization.k8s.io/v1", "ClusterRole", "reader")
CRB = ref("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "reader")
SA = ref("v1", "ServiceAccount", "web", "shop")
CM = ref("v1", "ConfigMap", "web", "shop")
DEPLOY = ref("apps/v1", "Deployment", "web", "shop")
WIDGET = ref("example.com/v1", "Widget", "w", "shop")
VWH = ref("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "policy")
MWH = ref("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "inject")


def test_apply_order_is_crds_namespaces_cluster_scoped_namespaced_then_webhooks():
    shuffled = [MWH, DEPLOY, WIDGET, CRB, CM, NS, VWH, SA, CLUSTER_ROLE, CRD]
    ordered = plan.order_for_apply(shuffled)
    assert ordered[0] == CRD
    assert ordered[1] == NS
    assert ordered[2:4] == [CLUSTER_ROLE, CRB]
    assert set(ordered[4:8]) == {SA, CM, DEPLOY, WIDGET}
    assert set(ordered[8:]) == {VWH, MWH}


def test_within_namespaced_objects_configuration_comes_before_workloads():
    ordered = plan.order_for_apply([DEPLOY, WIDGET, CM, SA])
    assert ordered.index(SA) < ordered.index(CM) < ordered.index(DEPLOY)
    assert ordered[-1] == WIDGET  # kinds without a known rank go last in their phase


def test_apply_order_is_deterministic_regardless_of_input_order():
    a = plan.order_for_apply([CM, DEPLOY, SA, NS, CRD])
    b = plan.order_for_apply([CRD, NS, SA, DEPLOY, CM])
    assert a == b


def test_delete_order_is_the_reverse_of_apply_order():
    refs = [CRD, NS, CLUSTER_ROLE, CM, DEPLOY, VWH]
    assert plan.order_for_delete(refs) == list(reversed(plan.order_for_apply(refs)))
    assert plan.order_for_delete(refs)[0] == VWH
    assert plan.order_for_delete(refs)[-1] == CRD


def test_prune_set_is_recorded_entries_that_left_the_bundle():
    p = plan.plan_prune([CM, DEPLOY, NS], [CM, NS])
    assert p.allowed
    assert p.delete == (DEPLOY,)


def test_prune_identity_ignores_the_api_version():
    old = ref("apps/v1beta1", "Deployment", "web", "shop")
    assert plan.plan_prune([old], [DEPLOY]).delete == ()


def test_prune_deletes_in_reverse_order():
    p = plan.plan_prune([CRD, NS, CM, WIDGET], [SA])
    assert p.delete[-1] == CRD
    assert p.delete.index(WIDGET) < p.delete.index(NS)


def test_empty_bundle_is_refused_rather_than_pruning_everything():
    p = plan.plan_prune([CM, DEPLOY], [])
    assert not p.allowed
    assert p.delete == ()
    assert p.reason == "EmptyBundleRefused"
    assert "2" in p.refused


def test_empty_bundle_prunes_everything_when_explicitly_allowed():
    p = plan.plan_prune([CM, DEPLOY], [], allow_prune_all=True)
    assert p.allowed and set(p.delete) == {CM, DEPLOY}


def test_empty_bundle_with_empty_inventory_is_fine():
    assert plan.plan_prune([], []).allowed


def test_prune_disabled_annotation_is_detected_on_the_live_object():
    live = {"metadata": {"annotations": {"skerry.io/prune": "disabled"}}}
    assert plan.prune_disabled(live)
    assert not plan.prune_disabled({"metadata": {"annotations": {"skerry.io/prune": "enabled"}}})
    assert not plan.prune_disabled({"metadata": {}})
    assert not plan.prune_disabled(None)


def test_duplicates_are_found_by_identity():
    assert plan.duplicates([CM, DEPLOY, ref("v1", "ConfigMap", "web", "shop")]) == {CM.key}
    assert plan.duplicates([CM, DEPLOY]) == set()


def test_crd_scopes_are_read_from_the_bundle():
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"}},
    }
    other = {**crd, "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Gadget"}}}
    assert plan.crd_scopes(
        [crd, other, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]
    ) == {
        ("example.com", "Widget"): False,
        ("example.com", "Gadget"): True,
    }


def test_object_ref_names_the_object_like_kubectl():
    assert str(DEPLOY) == "apps/Deployment web -n shop"
    assert str(CM) == "ConfigMap web -n shop"
    assert str(CRD) == "apiextensions.k8s.io/CustomResourceDefinition widgets.example.com"


# --- native defaults server-side apply needs up front ----------------------------------------


def test_ports_without_protocol_get_the_server_default_tcp():
    from skerry.agent.reconcile.defaults import set_native_defaults

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
    }
    set_native_defaults(service)
    assert [p["protocol"] for p in service["spec"]["ports"]] == ["TCP", "UDP"]
    cron = {
        "apiVersion": "batch/v1beta1",
        "kind": "CronJob",
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1}]}]}}
                }
            }
        },
    }
    set_native_defaults(cron)
    assert (
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"]
        == "TCP"
    )
    custom = {"apiVersion": "example.com/v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}}
    set_native_defaults(custom)
    assert "protocol" not in custom["spec"]["ports"][0]


def test_namespaces_crds_and_pvcs_are_prune_protected_unless_allowed():
    pvc = ref("v1", "PersistentVolumeClaim", "data", "shop")
    allow = {"metadata": {"annotations": {plan.PRUNE_ANNOTATION: plan.PRUNE_ALLOW}}}
    plain = {"metadata": {"annotations": {"other": "x"}}}
    for protected in (NS, CRD, pvc):
        assert plan.prune_protected(protected, plain, allow_protected=False)
        assert plan.prune_protected(protected, None, allow_protected=False)
        assert not plan.prune_protected(protected, allow, allow_protected=False)
        assert not plan.prune_protected(protected, plain, allow_protected=True)
    for ordinary in (CM, DEPLOY, CLUSTER_ROLE, WIDGET):
        assert not plan.prune_protected(ordinary, plain, allow_protected=False)
