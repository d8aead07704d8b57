"""The agent's half of bundle-scoped unsealing: one call per bundle, plaintext kept only for the reconcile."""

from __future__ import annotations

from skerry.agent.secrets import bundle_secrets, secret_from_sealed
from skerry.core import sealedsecret


class FakeBatchUnsealer:
    """Records the calls an agent makes; stands in for GrpcUnsealer (the real one is tested live)."""

    accepts_hints = True

    def __init__(self):
        self.prepared: list[tuple[bytes, bytes]] = []
        self.ended = 0
        self.hints: list[str] = []

    def prepare_bundle(self, metadata, bundle):
        self.prepared.append((metadata, bundle))

    def end_bundle(self):
        self.ended += 1

    def unseal(self, namespace, name, scope, encrypted_data, *, key_hint=""):
        self.hints.append(key_hint)
        return {k: b"v" for k in encrypted_data}


SEALED = {
    "apiVersion": sealedsecret.API_VERSION,
    "kind": sealedsecret.KIND,
    "metadata": {"name": "db", "namespace": "shop", "annotations": {sealedsecret.ANNOTATION_KEY_ID: "ab" * 32}},
    "spec": {"encryptedData": {"p": "AAAA"}, "template": {"type": "kubernetes.io/tls", "immutable": True}},
}


def test_a_bundle_without_sealed_secrets_costs_no_sealer_call():
    u = FakeBatchUnsealer()
    with bundle_secrets(u, b"m", b"b", [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]):
        pass
    assert u.prepared == [] and u.ended == 0


def test_one_prepare_per_reconcile_and_the_batch_is_dropped_even_on_error():
    u = FakeBatchUnsealer()
    try:
        with bundle_secrets(u, b"m", b"b", [SEALED]):
            secret = secret_from_sealed(SEALED, u)
            raise RuntimeError("reconcile blew up")
    except RuntimeError:
        pass
    assert u.prepared == [(b"m", b"b")] and u.ended == 1
    assert secret["type"] == "kubernetes.io/tls" and secret["immutable"] is True


def test_the_key_id_annotation_is_passed_as_the_hint():
    u = FakeBatchUnsealer()
    secret_from_sealed(SEALED, u)
    assert u.hints == ["ab" * 32]
