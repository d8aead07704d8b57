"""The sealer's per-RPC rate limit, over real mutual TLS: a client looping on UnsealBundle is refused with
RESOURCE_EXHAUSTED and the reason ``RateLimited`` before its bundle is verified, per identity and per RPC."""

from __future__ import annotations

import shutil
import time

import grpc
import pytest

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core import tls
from skerry.core.rpc import CHANNEL_OPTIONS, REASON_METADATA
from skerry.sealer.authz import RPC_RATES
from tests.e2e.trust_world import TrustWorld

from .helpers import ServerThread, sealer_config

UNSEAL_BUNDLE = "/skerry.api.v1.SealerService/UnsealBundle"


@pytest.fixture
def trusting_sealer(mtls, pristine_keys_dir, tmp_path):
    """A sealer with a TUF trust root, so each UnsealBundle verifies what it is shown (the expensive part)."""
    keys = tmp_path / "keys"
    shutil.copytree(pristine_keys_dir, keys)
    world = TrustWorld(tmp_path / "trust")
    with ServerThread(sealer_config(mtls, keys, trust_root=world.root)) as server:
        yield server


def _files(tmp_path, mtls, name: str) -> tls.TlsFiles:
    crt, key = tls.write_keypair(tmp_path, name, mtls.ca.issue(name, role=tls.ROLE_AGENT))
    return tls.TlsFiles(ca=mtls.sealer.ca, cert=crt, key=key)


def _call(stub, payload: bytes) -> tuple[str, str]:
    try:
        stub.UnsealBundle(sealer_pb2.UnsealBundleRequest(metadata=payload, bundle=payload), timeout=30)
    except grpc.RpcError as e:
        return e.code().name, dict(e.trailing_metadata() or ()).get(REASON_METADATA, "")
    return "OK", ""


def test_a_client_looping_on_unseal_bundle_is_refused_before_verification(trusting_sealer, mtls, tmp_path, logs):
    rate, burst = RPC_RATES[UNSEAL_BUNDLE]
    noisy, calm = _files(tmp_path, mtls, "noisy"), _files(tmp_path, mtls, "calm")
    payload = b"\x00" * (1 << 20)  # 1 MiB of evidence that never verifies
    started = time.monotonic()
    with grpc.secure_channel(trusting_sealer.address, tls.channel_credentials(noisy), options=CHANNEL_OPTIONS) as ch:
        stub = sealer_pb2_grpc.SealerServiceStub(ch)
        outcomes = [_call(stub, payload) for _ in range(int(burst) + 20)]
        elapsed = time.monotonic() - started
        limited = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
        served = len(outcomes) - len(limited)
        assert limited and all(reason == "RateLimited" for _, reason in limited)
        assert burst <= served <= burst + rate * elapsed + 1
        # its other RPCs have their own buckets
        assert sealer_pb2_grpc.SealerServiceStub(ch).GetCertificate(
            sealer_pb2.GetCertificateRequest(), timeout=10).certificate_pem
    # only the calls let through reached the bundle check (each audited); the refused ones cost a bucket lookup
    assert len(logs.events("unseal bundle")) == served
    # another agent is not slowed down by the noisy one
    with grpc.secure_channel(trusting_sealer.address, tls.channel_credentials(calm), options=CHANNEL_OPTIONS) as ch:
        assert _call(sealer_pb2_grpc.SealerServiceStub(ch), payload)[0] != "RESOURCE_EXHAUSTED"


def test_every_sealer_rpc_has_a_rate():
    service = sealer_pb2.DESCRIPTOR.services_by_name["SealerService"]
    assert set(RPC_RATES) == {f"/{service.full_name}/{m.name}" for m in service.methods}
