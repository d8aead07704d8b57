"""The sealer over real mutual TLS on 127.0.0.1: who can connect, who can unseal."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core import tls
from skerry.core.errors import ConfigError
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.sealedsecret import encryption_label
from skerry.sealer import crypto
from skerry.sealer.app import SealerApp
from skerry.sealer.keys import key_id_of

from .helpers import SECRET_VALUE, sealer_config


def stub(address: str, files: tls.TlsFiles):
    channel = grpc.secure_channel(address, tls.channel_credentials(files), options=CHANNEL_OPTIONS)
    return channel, sealer_pb2_grpc.SealerServiceStub(channel)


@pytest.fixture(scope="module")
def certificate(sealer, mtls):
    channel, client = stub(sealer.address, mtls.agent)
    with channel:
        return client.GetCertificate(sealer_pb2.GetCertificateRequest(), timeout=10)


def sealed_request(certificate, namespace="apps", name="db", scope="strict", **values):
    from cryptography import x509

    public_key = x509.load_pem_x509_certificate(certificate.certificate_pem).public_key()
    label = encryption_label(namespace, name, scope)
    return sealer_pb2.UnsealRequest(
        namespace=namespace,
        name=name,
        scope=scope,
        encrypted_data={k: crypto.seal_value(public_key, v, label) for k, v in values.items()},
    )


def test_ready_file_names_the_bound_port(sealer):
    assert json.loads(sealer.app.config.ready_file.read_text()) == {"port": sealer.port}


def test_get_certificate_returns_the_sealing_certificate_and_its_key_id(certificate, sealer):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(certificate.certificate_pem)
    assert certificate.key_id == key_id_of(cert.public_key()) == sealer.app.registry.sealing_key().key_id
    assert certificate.domain == "default"


def test_operators_may_fetch_the_certificate_too(sealer, mtls):
    channel, client = stub(sealer.address, mtls.operator)
    with channel:
        assert client.GetCertificate(sealer_pb2.GetCertificateRequest(), timeout=10).key_id


def test_agent_unseals_every_item(sealer, mtls, certificate, logs):
    channel, client = stub(sealer.address, mtls.agent)
    req = sealed_request(certificate, password=SECRET_VALUE.encode(), blob=b"\x00\x01binary")
    with channel:
        resp = client.Unseal(req, timeout=10)
    assert dict(resp.data) == {"password": SECRET_VALUE.encode(), "blob": b"\x00\x01binary"}
    (audit,) = logs.events("unseal")
    assert audit["outcome"] == "allowed"
    assert audit["identity"] == "skerry:agent:cluster-a"
    assert audit["rpc"] == "/skerry.api.v1.SealerService/Unseal"  # request context from the interceptor
    assert SECRET_VALUE not in logs.text


def test_operator_is_refused_with_permission_denied(sealer, mtls, certificate, logs):
    channel, client = stub(sealer.address, mtls.operator)
    with channel, pytest.raises(grpc.RpcError) as err:
        client.Unseal(sealed_request(certificate, password=SECRET_VALUE.encode()), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "skerry:operator:alice" in err.value.details()
    assert logs.events("unseal") == []  # refused before the gate: nothing was decrypted
    (refused,) = logs.events("access denied")
    assert (refused["outcome"], refused["method"], refused["identity"]) == ("denied", "Unseal", "skerry:operator:alice")
    assert SECRET_VALUE not in logs.text


@pytest.mark.parametrize(
    "mutate,code",
    [
        (lambda r: setattr(r, "name", "renamed"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda r: setattr(r, "scope", "galaxy"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda r: setattr(r, "domain", "no-oslo"), grpc.StatusCode.NOT_FOUND),
    ],
    ids=["relocated", "bad-scope", "unknown-domain"],
)
def test_misplaced_or_malformed_requests_map_to_status_codes(sealer, mtls, certificate, mutate, code, logs):
    req = sealed_request(certificate, password=SECRET_VALUE.encode())
    mutate(req)
    channel, client = stub(sealer.address, mtls.agent)
    with channel, pytest.raises(grpc.RpcError) as err:
        client.Unseal(req, timeout=10)
    assert err.value.code() == code
    assert SECRET_VALUE not in err.value.details()
    assert SECRET_VALUE not in logs.text


def test_client_with_a_certificate_from_another_ca_cannot_connect(sealer, mtls):
    channel, client = stub(sealer.address, mtls.foreign)
    with channel, pytest.raises(grpc.RpcError) as err:
        client.GetCertificate(sealer_pb2.GetCertificateRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_without_a_certificate_cannot_connect(sealer, mtls):
    creds = grpc.ssl_channel_credentials(root_certificates=mtls.sealer.ca.read_bytes())
    with grpc.secure_channel(sealer.address, creds) as channel, pytest.raises(grpc.RpcError) as err:
        sealer_pb2_grpc.SealerServiceStub(channel).GetCertificate(
            sealer_pb2.GetCertificateRequest(), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_health_reports_the_sealer_service_serving(sealer, mtls):
    channel, _ = stub(sealer.address, mtls.agent)
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        resp = health.Check(health_pb2.HealthCheckRequest(service="skerry.api.v1.SealerService"), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_in_process_app_restarts_on_the_same_keys_and_removes_its_ready_file(mtls, keys_dir, tmp_path):
    ready = tmp_path / "run" / "ready.json"

    async def scenario():
        keys = []
        for _ in range(2):
            app = SealerApp(sealer_config(mtls, keys_dir, ready_file=ready))
            port = await app.start()
            assert json.loads(ready.read_text()) == {"port": port}
            creds = tls.channel_credentials(mtls.agent)
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
                resp = await sealer_pb2_grpc.SealerServiceStub(channel).GetCertificate(
                    sealer_pb2.GetCertificateRequest(), timeout=10
                )
            keys.append(resp.key_id)
            await app.stop(0)
            assert not ready.exists()
        return keys

    first, second = asyncio.run(scenario())
    assert first == second


def test_app_refuses_to_start_without_tls(keys_dir):
    from skerry.sealer.config import SealerConfig

    with pytest.raises(ConfigError, match="mutual TLS"):
        SealerApp(SealerConfig(listen="127.0.0.1:0", keys_dir=keys_dir))
