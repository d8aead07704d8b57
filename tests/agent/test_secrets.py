"""SealedSecret -> Secret: unsealed through the Unsealer, plaintext only in memory and the API server."""

from __future__ import annotations

import asyncio
import base64

import pytest

from skerry.agent.cache import BundleCache
from skerry.agent.reconcile.engine import Reconciler
from skerry.agent.secrets import GrpcUnsealer, secret_from_sealed
from skerry.core import tls
from skerry.core.errors import SealError

from .fakes import FakeSealer, FakeUnsealer, sealed_secret
from .helpers import CLUSTER, configmap

PLAINTEXT = "correct-horse-battery-staple"


def test_secret_takes_name_namespace_from_the_sealed_secret_and_the_rest_from_its_template():
    unsealer = FakeUnsealer()
    sealed = sealed_secret(
        "db",
        "shop",
        {"password": PLAINTEXT, "user": "app"},
        template={
            "metadata": {"labels": {"tier": "db"}, "annotations": {"note": "rotated"}},
            "type": "kubernetes.io/basic-auth",
        },
    )
    secret = secret_from_sealed(sealed, unsealer)
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["metadata"] == {
        "name": "db",
        "namespace": "shop",
        "labels": {"tier": "db"},
        "annotations": {"note": "rotated"},
    }
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert base64.b64decode(secret["data"]["password"]).decode() == PLAINTEXT
    assert unsealer.calls == [("shop", "db", "strict", ("password", "user"))]


@pytest.mark.parametrize(
    "annotations, scope",
    [
        (None, "strict"),
        ({"sealedsecrets.bitnami.com/namespace-wide": "true"}, "namespace-wide"),
        ({"sealedsecrets.bitnami.com/cluster-wide": "true"}, "cluster-wide"),
    ],
)
def test_the_scope_sent_to_the_sealer_comes_from_the_annotations(annotations, scope):
    unsealer = FakeUnsealer()
    secret_from_sealed(sealed_secret("db", "shop", {"k": "v"}, scope_annotations=annotations), unsealer)
    assert unsealer.calls[0][2] == scope


def test_a_failed_unseal_names_the_sealed_secret_but_no_value():
    with pytest.raises(SealError) as e:
        secret_from_sealed(sealed_secret("db", "shop", {"password": PLAINTEXT}), FakeUnsealer(fail={"db"}))
    assert "shop/db" in str(e.value)
    assert PLAINTEXT not in str(e.value)


@pytest.mark.kube
def test_sealed_secret_is_applied_as_a_secret_and_plaintext_never_reaches_the_cache(
    kube, bundles, namespace, agent_namespace, tmp_path, clock
):
    state = tmp_path / "state"
    bundles.publish([sealed_secret("db", namespace, {"password": PLAINTEXT}), configmap("c", namespace)])
    verified = bundles.verifier(state, clock).update()
    BundleCache(state).save(verified)
    reconciler = Reconciler(kube, FakeUnsealer(), "skerry", agent_namespace)
    result = reconciler.reconcile(verified)
    assert result.ready, result.conditions
    secret_result = result.result_for(("", "Secret", namespace, "db"))
    assert secret_result.action == "created"
    live = kube.get("v1", "Secret", "db", namespace)
    assert base64.b64decode(live["data"]["password"]).decode() == PLAINTEXT
    assert live["metadata"]["labels"]["app"] == "db"
    # Not in an annotation, not in a result message, not on disk.
    assert PLAINTEXT not in repr(live["metadata"])
    assert all(PLAINTEXT not in r.message for r in result.objects)
    assert all(PLAINTEXT not in c.message for c in result.conditions)
    encoded = base64.b64encode(PLAINTEXT.encode())
    for path in state.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert PLAINTEXT.encode() not in content, path
            assert encoded not in content, path
    assert FakeUnsealer.seal(PLAINTEXT).encode() in b"".join(
        p.read_bytes() for p in state.rglob("bundle-*.json")
    )


@pytest.mark.kube
def test_a_failed_unseal_fails_that_secret_only(kube, bundles, namespace, agent_namespace):
    reconciler = Reconciler(kube, FakeUnsealer(fail={"broken"}), "skerry", agent_namespace)
    result = reconciler.reconcile(
        bundles.verified(
            [
                sealed_secret("broken", namespace, {"k": "v"}),
                sealed_secret("fine", namespace, {"k": "v"}),
                configmap("c", namespace),
            ]
        )
    )
    assert result.result_for(("", "Secret", namespace, "broken")).action == "failed"
    assert result.result_for(("", "Secret", namespace, "fine")).action == "created"
    assert result.result_for(("", "ConfigMap", namespace, "c")).action == "created"
    assert kube.get("v1", "Secret", "broken", namespace) is None


@pytest.mark.kube
def test_without_a_sealer_sealed_secrets_fail_and_the_rest_applies(kube, bundles, namespace, agent_namespace):
    result = Reconciler(kube, None, "skerry", agent_namespace).reconcile(
        bundles.verified([sealed_secret("db", namespace, {"k": "v"}), configmap("c", namespace)])
    )
    failed = result.result_for(("", "Secret", namespace, "db"))
    assert failed.action == "failed" and "no sealer" in failed.message
    assert result.result_for(("", "ConfigMap", namespace, "c")).action == "created"


def test_grpc_unsealer_calls_the_sealer_over_mtls_with_the_agents_identity(pki):
    async def scenario():
        sealer = await FakeSealer(pki).start()
        try:
            unsealer = GrpcUnsealer(sealer.address, pki.agent(CLUSTER), domain="eu")
            sealed = FakeUnsealer.seal(PLAINTEXT)
            data = await asyncio.to_thread(unsealer.unseal, "shop", "db", "strict", {"password": sealed})
            assert data == {"password": PLAINTEXT.encode()}
            (peer,) = sealer.peers
            assert peer.name == CLUSTER and peer.has_role(tls.ROLE_AGENT)
            assert sealer.requests[0].domain == "eu"
            with pytest.raises(SealError) as e:
                await asyncio.to_thread(
                    unsealer.unseal, "shop", "db", "strict", {"password": "bm90IHNlYWxlZA=="}
                )
            assert f"sealer {sealer.address}" in str(e.value)
            unsealer.close()
        finally:
            await sealer.stop()

    asyncio.run(scenario())


def test_grpc_unsealer_reports_an_unreachable_sealer_as_unavailable(pki):
    from skerry.core.errors import Unavailable

    unsealer = GrpcUnsealer("127.0.0.1:1", pki.agent(CLUSTER), timeout=2)
    with pytest.raises(Unavailable, match="cannot reach sealer 127.0.0.1:1"):
        unsealer.unseal("shop", "db", "strict", {"k": "dg=="})
    unsealer.close()


@pytest.mark.kube
def test_plaintext_is_never_logged_even_at_debug_level(kube, bundles, namespace, agent_namespace):
    import io

    from skerry.core import logging as skerry_logging

    out = io.StringIO()
    skerry_logging.configure("debug", json_output=True, stream=out)  # tests/conftest.py resets it afterwards
    reconciler = Reconciler(kube, FakeUnsealer(fail={"broken"}), "skerry", agent_namespace)
    reconciler.reconcile(
        bundles.verified(
            [
                sealed_secret("db", namespace, {"password": PLAINTEXT}),
                sealed_secret("broken", namespace, {"password": PLAINTEXT}),
                sealed_secret("Bad_Name", namespace, {"password": PLAINTEXT}),
            ]
        )
    )
    logged = out.getvalue()
    assert "Secret db" in logged  # the log does talk about the objects...
    assert PLAINTEXT not in logged  # ...but never their values
    assert base64.b64encode(PLAINTEXT.encode()).decode() not in logged
