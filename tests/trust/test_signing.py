"""A CI signer compares what it rendered with what the hub proposes: objects, not the engine."""

from __future__ import annotations

import dataclasses

import pytest

from skerry.core.bundle import Bundle
from skerry.core.errors import VerificationError
from skerry.hub.trust.signing import same_content


def bundle(cluster: str = "oslo-prod", engine: str = "kustomize", version: str = "v0.21.3", **changes) -> Bundle:
    objects = (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"replicas": 3}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"}, "data": {"a": "1"}},
    )
    b = Bundle(cluster, "c" * 40, "file:///fleet", ("overlays/prod",), engine, version, objects)
    return dataclasses.replace(b, **changes)


def test_the_digest_covers_the_objects_and_commit_but_not_the_render_engine():
    inprocess, binary = bundle(), bundle(engine="kubectl kustomize", version="v5.5.0")
    assert inprocess.encode() == binary.encode()
    assert b'"render"' not in inprocess.encode()
    assert bundle(revision="d" * 40).encode() != inprocess.encode()
    assert bundle(cluster="oslo-dev").encode() != inprocess.encode()
    assert Bundle.decode(inprocess.encode()).encode() == inprocess.encode()


def test_a_render_with_another_engine_and_the_same_objects_is_the_same_content():
    same_content(bundle(engine="kubectl kustomize", version="v5.5.0"), bundle(), "oslo-prod")
    same_content(bundle(), bundle(cluster=""), "oslo-prod")  # a blob shared by clusters built alike


def test_the_first_differing_object_is_named():
    ours = bundle()
    changed = list(ours.objects)
    changed[1] = {**changed[1], "spec": {"replicas": 4}}
    with pytest.raises(VerificationError, match="object apps/Deployment/shop/web differs") as e:
        same_content(ours, dataclasses.replace(ours, objects=tuple(changed)), "oslo-prod")
    assert e.value.reason == "DigestMismatch"
    with pytest.raises(VerificationError, match="object /ConfigMap/shop/cfg is only in our render"):
        same_content(ours, dataclasses.replace(ours, objects=ours.objects[:2]), "oslo-prod")
    extra = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "zz", "namespace": "shop"}}
    with pytest.raises(VerificationError, match="object /Secret/shop/zz is only in the hub's proposal"):
        same_content(ours, dataclasses.replace(ours, objects=(*ours.objects, extra)), "oslo-prod")


def test_another_clusters_bundle_or_commit_is_refused():
    with pytest.raises(VerificationError) as e:
        same_content(bundle(), bundle(cluster="oslo-dev"), "oslo-prod")
    assert e.value.reason == "WrongCluster"
    with pytest.raises(VerificationError, match="revision"):
        same_content(bundle(), bundle(revision="e" * 40), "oslo-prod")
