"""An agent applies nothing from a bundle that fails verification, whoever serves it.

A hostile hub (``replay_hub.ReplayHub``: real gRPC over mTLS with a valid
server certificate, but without the signing key the agent trusts) serves
forged, replayed and misdirected bundles to a real agent process that
reconciles into the real API server.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from skerry.api.v1 import bundle_pb2
from skerry.core import tls
from skerry.core.bundle import Bundle, generate_signing_key, sign_bundle
from skerry.testing.devstack import Stack, wait_for

from .replay_hub import ReplayHub

pytestmark = [pytest.mark.kube, pytest.mark.e2e]


@pytest.fixture
def world(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig)
    stack.sealer_address = "127.0.0.1:9"  # no SealedSecret in these bundles
    trusted = tmp_path / "keys" / "trusted.key"
    evil = tmp_path / "keys" / "evil.key"
    signers = {"trusted": generate_signing_key(trusted), "evil": generate_signing_key(evil)}
    hub = ReplayHub(stack.identity("replay", tls.ROLE_HUB, server=True)).start()
    try:
        yield stack, hub, signers, pathlib_pub(trusted)
    finally:
        stack.stop()
        hub.stop()


def pathlib_pub(key):
    import pathlib

    return pathlib.Path(f"{key}.pub")


def signed(cluster: str, release: int, signer, namespace: str, value: str, *, for_cluster: str | None = None):
    objects = (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "marker", "namespace": namespace},
         "data": {"value": value}},
    )
    target = for_cluster or cluster
    raw = Bundle(target, f"{release:040x}", "file:///replay", ("overlays/x",), "kustomize", "test", objects).encode()
    md = sign_bundle(raw, cluster=target, release=release, revision=f"{release:040x}",
                     expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), signers=[signer])
    from skerry.core.canonical import sha256_digest

    return bundle_pb2.SignedBundle(cluster=cluster, version=release, digest=sha256_digest(raw), metadata=md, bundle=raw)


def refusal(hub: ReplayHub, reason: str, agent):
    def probe():
        for report in hub.reports:
            for cond in report.conditions:
                if cond.reason == reason:
                    return cond
        return None

    return wait_for(probe, 30, f"the agent to report {reason}", agent)


def marker(stack: Stack, namespace: str) -> str:
    return stack.kubectl("get", "configmap", "marker", "-n", namespace, "--ignore-not-found",
                         "-o", "jsonpath={.data.value}", check=False)


def test_a_bundle_signed_by_another_key_is_refused_and_nothing_applied(world):
    stack, hub, signers, trusted_pub = world
    ns = f"forged-{uuid.uuid4().hex[:6]}"
    hub.script = [signed("oslo-dev", 10, signers["evil"], ns, "forged")]
    agent = stack.start_agent("oslo-dev", hub=hub.address, trusted_key=trusted_pub)
    cond = refusal(hub, "BadSignature", agent)
    assert cond.status == "False"
    assert stack.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name", check=False) == ""


def test_an_older_release_is_refused_after_a_newer_one_was_applied(world):
    stack, hub, signers, trusted_pub = world
    ns = f"rollback-{uuid.uuid4().hex[:6]}"
    hub.script = [signed("oslo-dev", 20, signers["trusted"], ns, "new"),
                  signed("oslo-dev", 5, signers["trusted"], ns, "old")]
    agent = stack.start_agent("oslo-dev", hub=hub.address, trusted_key=trusted_pub)
    refusal(hub, "Rollback", agent)
    assert marker(stack, ns) == "new"


def test_a_bundle_for_another_cluster_is_refused(world):
    stack, hub, signers, trusted_pub = world
    ns = f"misdirected-{uuid.uuid4().hex[:6]}"
    hub.script = [signed("oslo-dev", 30, signers["trusted"], ns, "prod-only", for_cluster="oslo-prod")]
    agent = stack.start_agent("oslo-dev", hub=hub.address, trusted_key=trusted_pub)
    refusal(hub, "WrongCluster", agent)
    assert stack.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name", check=False) == ""
