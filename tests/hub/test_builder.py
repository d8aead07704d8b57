"""Building a cluster's bundle from its paths' objects: provenance, and no ambiguous objects."""

from __future__ import annotations

import json

import pytest

from skerry.core.bundle import Bundle
from skerry.core.errors import RenderError
from skerry.hub.bundles.builder import build_bundle, encode_bundle


def obj(kind: str, name: str, namespace: str | None = None, api: str = "v1", **extra) -> dict:
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta, **extra}


def build(rendered):
    return build_bundle(
        "oslo-prod",
        rendered,
        source_url="https://git.example/fleet.git",
        revision="abc123",
        engine="kustomize",
        engine_version="v5.5.0",
    )


def test_bundle_records_provenance_and_all_objects_sorted():
    bundle = build(
        {
            "platform/monitoring": [obj("Namespace", "monitoring")],
            "overlays/prod": [obj("Deployment", "web", "web", api="apps/v1"), obj("Namespace", "web")],
        }
    )
    assert isinstance(bundle, Bundle)
    assert bundle.paths == ("platform/monitoring", "overlays/prod")
    doc = json.loads(encode_bundle(bundle))
    assert doc["cluster"] == "oslo-prod"
    assert doc["source"] == {
        "url": "https://git.example/fleet.git",
        "revision": "abc123",
        "paths": list(bundle.paths),
    }
    assert "render" not in doc  # provenance, outside the bundle's digest
    assert (bundle.engine, bundle.engine_version) == ("kustomize", "v5.5.0")
    assert [(o["kind"], o["metadata"]["name"]) for o in doc["objects"]] == [
        ("Deployment", "web"),
        ("Namespace", "monitoring"),
        ("Namespace", "web"),
    ]
    assert Bundle.decode(encode_bundle(bundle)) == Bundle.decode(bundle.encode())


def test_same_object_from_two_paths_is_rejected_naming_both():
    with pytest.raises(
        RenderError, match=r"Namespace web \(/Namespace//web\) is rendered by both base-a and base-b"
    ):
        build({"base-a": [obj("Namespace", "web")], "base-b": [obj("Namespace", "web")]})


def test_same_object_twice_in_one_path_is_rejected():
    with pytest.raises(RenderError, match="ConfigMap app/c .* is rendered twice by plain"):
        build({"plain": [obj("ConfigMap", "c", "app"), obj("ConfigMap", "c", "app")]})


def test_same_name_in_other_namespace_or_group_is_fine():
    bundle = build(
        {
            "a": [obj("ConfigMap", "c", "one"), obj("ConfigMap", "c", "two")],
            "b": [
                obj("Ingress", "c", "one", api="networking.k8s.io/v1"),
                obj("Ingress", "c", "one", api="extensions/v1beta1x"),
            ],
        }
    )
    assert len(bundle.objects) == 4


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            {"kind": "ConfigMap", "metadata": {"name": "c"}},
            r"overlays/prod: object #1 \(ConfigMap c\) lacks apiVersion",
        ),
        (
            {"apiVersion": "v1", "metadata": {"name": "c"}},
            r"overlays/prod: object #1 \(<no kind> c\) lacks kind",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap"},
            r"overlays/prod: object #1 \(ConfigMap None\) lacks metadata.name",
        ),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}}, "lacks metadata.name"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": 3}},
            "non-string metadata.namespace",
        ),
    ],
)
def test_objects_lacking_identity_are_rejected(bad, match):
    with pytest.raises(RenderError, match=match):
        build({"overlays/prod": [obj("Namespace", "ok"), bad]})


def test_bundle_over_the_agent_limit_is_rejected():
    huge = obj("ConfigMap", "huge", "x", data={"blob": "x" * (13 * 1024 * 1024)})
    with pytest.raises(RenderError, match="over the 12582912 byte limit"):
        encode_bundle(build({"p": [huge]}))
