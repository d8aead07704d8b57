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


def test_unseal_bundle_pages_cover_every_secret_once_each_within_its_bound(shared_registry, sealing_key, tmp_path):
    from skerry.core.documents import clip
    from skerry.core.tls import ROLE_AGENT, Identity
    from skerry.sealer.authz import MAX_RESULT_ERROR_CHARS, UnsealGate, page_bound
    from skerry.sealer.bundle_trust import secrets_of

    from .helpers import Released, sealed_secret

    released = Released(tmp_path)
    gate = UnsealGate(shared_registry, bundle_trust=released.trust())
    # "a-b/..." sorts before "a/..." as page tokens, after it as (namespace, name) pairs: order by token
    objs = [sealed_secret(sealing_key, namespace=ns, name=f"s{i}", v="x" * 3000)
            for ns in ("a", "a-b", "b") for i in range(4)]
    broken = sealed_secret(sealing_key, namespace="a", name="s9", v="y")
    broken["spec"]["encryptedData"]["v"] = "not base64 !" * 200
    objs.append(broken)
    evidence, raw = released("oslo-prod", objs)
    bounds = {f"{s.namespace}/{s.name}": page_bound(s) for s in secrets_of(objs)}
    budget = 3 * max(bounds.values())
    oslo = Identity("oslo-prod", frozenset({ROLE_AGENT}), "ab" * 32)
    pages, token = [], ""
    while True:
        page = gate.unseal_bundle(oslo, evidence, raw, page_token=token, page_bytes=budget)
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    tokens = [r.page_token for p in pages for r in p.results]
    assert tokens == sorted(bounds) and len(pages) == 5  # every secret once, in token order, 3 a page
    for p in pages:
        assert sum(bounds[r.page_token] for r in p.results) <= budget
        for r in p.results:  # the bound holds for what the servicer sends
            msg = sealer_pb2.UnsealedSecret(namespace=r.namespace, name=r.name, key_ids=list(r.key_ids))
            if r.error is not None:
                msg.error, msg.reason = clip(str(r.error), MAX_RESULT_ERROR_CHARS), r.error.reason
            else:
                msg.data.update(r.data)
            assert msg.ByteSize() + 6 <= bounds[r.page_token]
    errors = [r for p in pages for r in p.results if r.error is not None]
    assert [r.page_token for r in errors] == ["a/s9"]
    # one page when the default budget (the message cap less framing) holds everything
    assert gate.unseal_bundle(oslo, evidence, raw).next_page_token == ""
