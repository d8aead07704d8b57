"""Object validation before publishing: structure, names, scope, and the Kubernetes schemas."""

from __future__ import annotations

import pytest

from skerry.core.errors import RenderError
from skerry.hub.render.schemas import SchemaValidator
from skerry.hub.render.validate import check_objects

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.acme.io"},
    "spec": {
        "group": "acme.io",
        "scope": "Cluster",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def schemas() -> SchemaValidator:
    return SchemaValidator()


def test_a_crd_and_its_cluster_scoped_resource_pass(schemas):
    check_objects(
        [CRD, {"apiVersion": "acme.io/v1", "kind": "Widget", "metadata": {"name": "w"}}], "p", schemas
    )


def test_a_namespace_on_a_cluster_scoped_kind_is_dropped_as_the_api_server_does(schemas):
    widget = {"apiVersion": "acme.io/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "x"}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader", "namespace": "Not A Label", "labels": {"a": "b"}},
        "rules": [],
    }
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}}
    objects = [CRD, widget, role, cm]
    check_objects(objects, "p", schemas)
    assert objects[1]["metadata"] == {"name": "w"}
    assert objects[2]["metadata"] == {"name": "reader", "labels": {"a": "b"}}
    assert objects[3]["metadata"] == {"name": "c", "namespace": "x"}  # namespaced: kept


def test_rbac_names_may_hold_colons(schemas):
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "acme:read"},
    }
    check_objects([role], "p", schemas)


@pytest.mark.parametrize(
    "obj, needle",
    [
        ({"kind": "ConfigMap", "metadata": {"name": "a"}}, "lacks apiVersion"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "lacks metadata.name"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "Bad"}},
            "DNS-1123 label",
        ),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x" * 254}}, "DNS-1123 subdomain"),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "d"},
                "dta": {"a": "b"},
            },
            "('dta' was unexpected)",
        ),
    ],
)
def test_problems_are_named(schemas, obj, needle):
    with pytest.raises(RenderError) as info:
        check_objects([obj], "apps/x", schemas)
    assert str(info.value).startswith("apps/x: object #0 (") and needle in str(info.value), str(info.value)
