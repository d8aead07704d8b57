"""Agent fixtures: signing keys, signed bundles, a Kubernetes client and a per-test agent namespace."""

from __future__ import annotations

import datetime as _dt
import subprocess
import uuid

import pytest

from skerry.core.bundle import (
    Bundle,
    VerifiedBundle,
    generate_signing_key,
    load_public_key,
    sign_bundle,
    verify_signed_bundle,
)
from skerry.core.clock import FixedClock

CLUSTER = "oslo"
NOW = _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)


class Bundles:
    """Makes signed bundles the way the hub does: ``Bundle(...).encode()`` + ``sign_bundle``."""

    def __init__(self, tmp_path, cluster: str = CLUSTER):
        self.cluster = cluster
        self.key_path = tmp_path / "keys" / "hub-signing.key"
        self.signer = generate_signing_key(self.key_path)
        self.public_key_path = self.key_path.with_name("hub-signing.key.pub")
        self.public_key = load_public_key(self.public_key_path)
        self.trusted = {self.public_key.keyid: self.public_key}
        self.release = 0

    def make(
        self,
        objects=(),
        *,
        release: int | None = None,
        cluster: str | None = None,
        document_cluster: str | None = None,
        revision: str | None = None,
        expires: _dt.datetime | None = None,
        signer=None,
    ) -> tuple[bytes, bytes]:
        """``(metadata, bundle_bytes)``; releases count up by default."""
        if release is None:
            self.release += 1
            release = self.release
        cluster = cluster or self.cluster
        bundle = Bundle(
            cluster=document_cluster or cluster,
            revision=revision or f"{release:040x}",
            source_url="https://git.example/fleet.git",
            paths=("clusters/oslo",),
            engine="raw",
            engine_version="",
            objects=tuple(objects),
        )
        raw = bundle.encode()
        metadata = sign_bundle(
            raw,
            cluster=cluster,
            release=release,
            revision=bundle.revision,
            expires=expires or NOW + _dt.timedelta(days=7),
            signers=[signer or self.signer],
        )
        return metadata, raw

    def verified(self, objects=(), **kw) -> VerifiedBundle:
        metadata, raw = self.make(objects, **kw)
        return verify_signed_bundle(metadata, raw, cluster=self.cluster, trusted_keys=self.trusted, now=NOW)

    def signed_message(self, objects=(), **kw):
        from skerry.api.v1 import bundle_pb2
        from skerry.core.canonical import sha256_digest

        metadata, raw = self.make(objects, **kw)
        release = kw.get("release") or self.release
        return bundle_pb2.SignedBundle(
            cluster=kw.get("cluster") or self.cluster,
            version=release,
            digest=sha256_digest(raw),
            metadata=metadata,
            bundle=raw,
        )


@pytest.fixture
def bundles(tmp_path) -> Bundles:
    return Bundles(tmp_path)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def kube(kubeconfig):
    from skerry.agent.kube import KubeClient

    client = KubeClient.from_kubeconfig(kubeconfig)
    yield client
    client.close()


def kubectl(kubeconfig, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], check=check, capture_output=True, text=True
    )


@pytest.fixture
def agent_namespace(kubeconfig) -> str:
    """A namespace name for the agent's own state (the inventory); the agent creates it."""
    name = f"agent-{uuid.uuid4().hex[:8]}"
    yield name
    kubectl(kubeconfig, "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def reconciler(kube, agent_namespace):
    from skerry.agent.reconcile.engine import Reconciler

    from .fakes import FakeUnsealer

    return Reconciler(kube, FakeUnsealer(), "skerry", agent_namespace, crd_wait_seconds=20)


def configmap(name: str, namespace: str, data=None, labels=None, annotations=None) -> dict:
    meta = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data or {"k": "v"})}


def deployment(name: str, namespace: str, image: str = "nginx:1.25", replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }
