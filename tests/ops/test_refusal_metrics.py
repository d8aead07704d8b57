"""Every named refusal is one sample of ``skerry_refusals_total{service,reason}``, read from the real /metrics.

A real hub (Git repository on disk, enrollment listener) and a real sealer on loopback with mutual TLS
each serve /metrics; hostile inputs arrive the way an attacker would send them (a commit, an RPC from an
enrolled agent's certificate, a token on the enrollment port, a TUF mirror serving metadata signed by a
key the agent does not trust) and each must raise the counter of its own reason on the service that
refused it, with nothing counted by the call sites themselves: the servers' error interceptor, the
hub's sync observer and the agent's refusal handler do the counting.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from e2e.replay_hub import ReplayHub  # tests/e2e
from e2e.trust_world import TrustWorld, bundle_bytes, evil_key
from hostile.hostile_inputs import alias_bomb  # tests/hostile
from hub.helpers import FLEET_FILES  # tests/hub
from prometheus_client.parser import text_string_to_metric_families
from transport.hubs import CALL_TIMEOUT, enrolled, fleet_of_servers  # tests/transport

from skerry.agent.enroll import make_csr
from skerry.api.v1 import (
    enrollment_pb2,
    enrollment_pb2_grpc,
    hub_pb2,
    hub_pb2_grpc,
    sealer_pb2,
    sealer_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
)
from skerry.core import report, tls
from skerry.core.canonical import sha256_digest
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.sealedsecret import encryption_label
from skerry.core.tls import ROLE_SEALER, channel_credentials
from skerry.hub import webhook
from skerry.hub.dashboard.server import MAX_REQUEST_BODY
from skerry.hub.render import kustomization
from skerry.sealer import crypto
from skerry.sealer.app import SealerApp
from skerry.sealer.config import SealerConfig
from skerry.sealer.keys import KeyRegistry
from skerry.testing.devstack import Stack, wait_for

CLUSTER = "oslo-prod"
# The revoked agent's calls are refused within this long of `skerry cluster revoke` (tests/transport).
REVOKE_DEADLINE = 5.0


def refusals(port: int) -> dict[tuple[str, str], float]:
    """``(service, reason) -> count`` from a real /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "skerry_refusals":
            for sample in family.samples:
                if sample.name == "skerry_refusals_total":
                    out[(sample.labels["service"], sample.labels["reason"])] = sample.value
    return out


class Counted:
    """The refusal counters of one service, compared against where they stood when it was made."""

    def __init__(self, port: int, service: str):
        self.port, self.service = port, service
        self.before = refusals(port)

    def raised(self) -> dict[str, float]:
        """reason -> how many more refusals of it than at the start."""
        now = refusals(self.port)
        return {reason: value - self.before.get((service, reason), 0.0)
                for (service, reason), value in now.items()
                if service == self.service and value > self.before.get((service, reason), 0.0)}


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """The HTTP status a POST of ``body`` gets."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _sign(data: bytes, key_file) -> bytes:
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _report(nonce: str = "0" * 32) -> bytes:
    return report.encode({"cluster": CLUSTER, "nonce": nonce, "counter": 1, "applied_digest": "", "release": 1,
                          "revision": "", "ready": True, "health": {}, "drift": {}, "observed_unix_ms": 0})


async def _refused(call, code: grpc.StatusCode) -> str:
    """The ``skerry-reason`` a refused call carried to its caller."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    assert caught.value.code() == code, caught.value
    return dict(caught.value.trailing_metadata() or ()).get("skerry-reason", "")


async def test_each_hostile_input_raises_the_refusal_counter_of_its_reason_on_the_hub(fleet_repo, tmp_path, pki,
                                                                                      engine):
    secret = tmp_path / "webhook.secret"
    secret.write_text("a webhook secret of 32 characters\n")
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine, metrics=True, webhook_listen="127.0.0.1:0",
                                webhook_secret_file=secret) as (hub, _sealer):
        counted = Counted(hub.ops.ops_server.port, "hub")

        # A push webhook with a forged signature, and one over the body limit.
        hook = f"http://127.0.0.1:{hub.webhook_port}{webhook.PATH}"
        forged = {"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"}
        assert await asyncio.to_thread(_post, hook, b'{"ref": "refs/heads/main"}', forged) == 401
        assert await asyncio.to_thread(_post, hook, b"x" * (webhook.MAX_BODY_BYTES + 1), forged) == 413
        agent = await enrolled(hub, pki, tmp_path / "agent", CLUSTER)
        cert = agent.cert.read_bytes()

        # A token that is not one (non-ASCII), on the unauthenticated enrollment port (server TLS only).
        csr_pem, _ = make_csr(CLUSTER)
        async with grpc.aio.secure_channel(f"127.0.0.1:{hub.enroll_port}",
                                           grpc.ssl_channel_credentials(pki.ca_file.read_bytes())) as ch:
            enroll = enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll
            request = enrollment_pb2.EnrollRequest(token="skt1.zoë☃.mac", csr_pem=csr_pem)
            assert await _refused(lambda: enroll(request, timeout=CALL_TIMEOUT),
                                  grpc.StatusCode.PERMISSION_DENIED) == "MalformedToken"

        async with grpc.aio.secure_channel(f"127.0.0.1:{hub.port}", channel_credentials(agent),
                                           options=CHANNEL_OPTIONS) as ch:
            trust_api = trust_pb2_grpc.TrustServiceStub(ch)

            def submit(data: bytes, signature: bytes):
                return lambda: trust_api.SubmitSignedReport(
                    trust_pb2.SignedReport(report=data, signature=signature, certificate=cert), timeout=CALL_TIMEOUT)

            # Every agent's refresh probes the next root version: answered NOT_FOUND, and not a refusal.
            probe = trust_pb2.FetchRequest(path="metadata/999.root.json")
            reason = await _refused(lambda: trust_api.Fetch(probe, timeout=CALL_TIMEOUT).read(),
                                    grpc.StatusCode.NOT_FOUND)
            assert reason == ""

            good = _report()
            tampered = good.replace(b'"ready":true', b'"ready":fals')
            nan = good.replace(b'"release":1', b'"release":NaN')
            oversize = b" " * (report.MAX_REPORT_BYTES + 1)
            reasons = {
                "bad signature": await _refused(submit(tampered, _sign(good, agent.key)),
                                                grpc.StatusCode.PERMISSION_DENIED),
                "NaN": await _refused(submit(nan, _sign(nan, agent.key)), grpc.StatusCode.PERMISSION_DENIED),
                "oversize": await _refused(submit(oversize, b"x"), grpc.StatusCode.PERMISSION_DENIED),
            }
        assert reasons == {"bad signature": "ForgedReport", "NaN": "NotJson", "oversize": "EndlessData"}


        # An alias bomb committed as the fleet file: the sync refuses it, the last good fleet stays.
        fleet_repo.commit("bomb", {"skerry.yaml": alias_bomb().decode()})
        result = await hub.syncer.sync_once()
        assert result.fleet_reason == "AliasBudget" and hub.syncer.fleet is not None

        # An alias bomb in a plain-YAML path (no kustomization): the render refuses it.
        fleet_repo.commit("plain bomb", {"skerry.yaml": FLEET_FILES["skerry.yaml"],
                                         "overlays/prod/kustomization.yaml": None,
                                         "overlays/prod/bomb.yaml": alias_bomb().decode()})
        result = await hub.syncer.sync_once()
        assert "aliases expand" in result.errors["oslo-prod"], result

        assert counted.raised() == {"MalformedToken": 1, "ForgedReport": 1, "NotJson": 1, "EndlessData": 1,
                                    "AliasBudget": 2, "BadSignature": 1, "TooLarge": 1}


async def test_a_revoked_peer_is_counted_as_revoked_by_the_hub_and_the_sealer(fleet_repo, tmp_path, pki, engine):
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine, metrics=True) as (hub, sealer):
        at_hub, at_sealer = Counted(hub.ops.ops_server.port, "hub"), Counted(sealer.metrics_port, "sealer")
        agent = await enrolled(hub, pki, tmp_path / "agent", CLUSTER)
        key = sealer.registry.sealing_key()
        label = encryption_label("shop", "db", "strict")
        unseal = sealer_pb2.UnsealRequest(namespace="shop", name="db", scope="strict",
                                          encrypted_data={"password": crypto.seal_value(key.public_key, b"s", label)})
        received = sealer.revocations.received
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "skerry", "cluster", "revoke", CLUSTER,
                             "--state-dir", str(hub.config.state_dir)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        await asyncio.wait_for(sealer.revocations.wait_received(received + 1), REVOKE_DEADLINE)

        creds = channel_credentials(agent)
        async with (
            grpc.aio.secure_channel(f"127.0.0.1:{hub.port}", creds, options=CHANNEL_OPTIONS) as hub_ch,
            grpc.aio.secure_channel(f"127.0.0.1:{sealer.port}", creds, options=CHANNEL_OPTIONS) as sealer_ch,
        ):
            status = hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster=CLUSTER))
            hub_api, sealer_api = hub_pb2_grpc.HubServiceStub(hub_ch), sealer_pb2_grpc.SealerServiceStub(sealer_ch)

            async def report_status():
                await hub_api.ReportStatus(status, timeout=CALL_TIMEOUT)

            async def unseal_call():
                await sealer_api.Unseal(unseal, timeout=CALL_TIMEOUT)

            deadline = asyncio.get_running_loop().time() + REVOKE_DEADLINE
            while True:  # the hub re-reads its list on a short poll
                try:
                    await report_status()
                except grpc.aio.AioRpcError:
                    break
                assert asyncio.get_running_loop().time() < deadline, "the hub kept answering a revoked agent"
                await asyncio.sleep(0.1)
            assert await _refused(report_status, grpc.StatusCode.PERMISSION_DENIED) == "Revoked"
            assert await _refused(unseal_call, grpc.StatusCode.PERMISSION_DENIED) == "Revoked"

        assert at_hub.raised() == {"Revoked": 2}
        assert at_sealer.raised() == {"Revoked": 1}


@pytest.mark.kube
def test_a_bad_signature_is_counted_by_the_agent_that_refused_it(kubeconfig, tmp_path):
    """A real agent process applies a good release from a TUF mirror, then is served a timestamp signed by a
    key it does not trust: ``BadSignature`` on its /metrics, and the good release stays applied."""
    cluster = "refusal-metrics-dev"
    stack = Stack(tmp_path, kubeconfig)  # its agents and PKI only: the world below is the repository
    stack.sealer_address = "127.0.0.1:9"
    mirror = ReplayHub(stack.identity("mirror", tls.ROLE_HUB, server=True)).start()
    world = TrustWorld(tmp_path / "trust")
    try:
        good = bundle_bytes(cluster, "refusal-metrics", "good")
        world.publish(cluster, "dev", good)
        mirror.trust_files = world.files()
        agent = stack.start_agent(cluster, hub=mirror.address, trust_root=world.root, environment="dev",
                                  extra=("--trust-poll", "1", "--metrics-listen", "127.0.0.1:0"))
        stack.wait_applied(cluster, digest=sha256_digest(good), timeout=60)
        counted = Counted(int(agent.status()["metrics_port"]), "agent")

        files = dict(mirror.trust_files)
        ts = world.latest(files, "timestamp")
        ts.signed.version += 1
        world.put(files, "timestamp", ts, evil_key())
        mirror.trust_files = files

        raised = wait_for(lambda: counted.raised() or None, 30, "the agent to count its refusal", agent)
        assert set(raised) == {"BadSignature"}
        assert stack.kubectl("get", "configmap", "marker", "-n", "refusal-metrics",
                             "-o", "jsonpath={.data.value}") == "good"
    finally:
        stack.stop()
        mirror.stop()


async def test_a_broken_commit_is_counted_once_however_many_ticks_rebuild_it(fleet_repo, tmp_path, pki, engine):
    """The sync retries a commit with errors at every tick: the fleet file, a kustomization read for the render's
    closure (an alias bomb, a file over the size bound) and the render itself are each one refusal per commit,
    and a new broken commit is a new one."""
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine, metrics=True) as (hub, _sealer):
        counted = Counted(hub.ops.ops_server.port, "hub")

        async def ticks(message: str, files: dict[str, str | None]) -> dict[str, str]:
            fleet_repo.commit(message, files)
            for _ in range(2):
                result = await hub.syncer.sync_once()
            return dict(result.errors)

        await ticks("fleet bomb", {"skerry.yaml": alias_bomb().decode()})
        assert counted.raised() == {"AliasBudget": 1}
        await ticks("another fleet bomb", {"skerry.yaml": alias_bomb(8).decode()})
        assert counted.raised() == {"AliasBudget": 2}

        # Kustomization files are refused while the render's closure is read, before any engine runs.
        errors = await ticks("kustomization bomb", {"skerry.yaml": FLEET_FILES["skerry.yaml"],
                                                    "overlays/prod/kustomization.yaml": alias_bomb().decode()})
        assert "overlays/prod/kustomization.yaml" in errors["oslo-prod"], errors
        assert counted.raised() == {"AliasBudget": 3}
        oversize = "# padding\n" * (kustomization.MAX_KUSTOMIZATION_BYTES // 10 + 1)
        await ticks("oversize kustomization", {"overlays/prod/kustomization.yaml": oversize})
        assert counted.raised() == {"AliasBudget": 3, "TooLarge": 1}

        # The engine's own refusal: an alias bomb in a plain-YAML path.
        await ticks("plain bomb", {"overlays/prod/kustomization.yaml": None,
                                   "overlays/prod/bomb.yaml": alias_bomb().decode()})
        assert counted.raised() == {"AliasBudget": 4, "TooLarge": 1}


def _http_status(port: int, raw: bytes, tls: ssl.SSLContext | None = None) -> int:
    """The status a raw HTTP request gets on loopback (0 if the server closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT) as plain:
        with tls.wrap_socket(plain, server_hostname="127.0.0.1") if tls is not None else plain as s:
            s.sendall(raw)
            head = s.recv(64)
    return int(head.split()[1]) if head.startswith(b"HTTP/") else 0


# Requests aiohttp's own parser refuses (400) before any middleware or handler runs: a header line without a
# colon, and a request line with a space inside the target.
MALFORMED_REQUESTS = (b"GET /api/fleet HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
                      b"GET /api/ fleet HTTP/1.1\r\nHost: x\r\n\r\n")


async def test_the_sealers_certificate_endpoint_counts_each_refusal(tmp_path, pki):
    own = pki.server("sealer", ROLE_SEALER)
    cfg = SealerConfig(listen="127.0.0.1:0", tls_ca=pki.ca_file, tls_cert=own.cert, tls_key=own.key,
                       keys_dir=tmp_path / "keys", grace_seconds=0, metrics_listen="127.0.0.1:0",
                       cert_listen="127.0.0.1:0")
    sealer = SealerApp(cfg, registry=KeyRegistry.from_directory(cfg.keys_dir, key_bits=2048))
    await sealer.start()
    try:
        counted = Counted(sealer.metrics_port, "sealer")
        port = sealer.cert_port

        def get(path: str) -> bytes:
            return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()

        assert _http_status(port, get("/v1/cert.pem")) == 200  # served: not a refusal
        assert _http_status(port, get("/v1/cert.pem?domain=nowhere")) == 404
        assert _http_status(port, get("/v1/keys")) == 404
        assert _http_status(port, get("/v1/cert.pem?" + "d" * 300)) == 404
        assert _http_status(port, b"POST /v1/cert.pem HTTP/1.1\r\nContent-Length: 0\r\n\r\n") == 405
        assert _http_status(port, b"GET /v1/ cert.pem HTTP/1.1\r\n\r\n") == 400  # malformed request line
        long_header = b"GET /v1/cert.pem HTTP/1.1\r\nX-Pad: " + b"x" * 70_000 + b"\r\n\r\n"
        assert _http_status(port, long_header) == 431  # over the standard library's line bound
        assert counted.raised() == {"NotFound": 2, "TooLarge": 2, "MethodNotAllowed": 1, "MalformedRequest": 1}
    finally:
        await sealer.stop(0)


def _https_status(port: int, ctx: ssl.SSLContext, method: str, path: str, headers: dict[str, str],
                  body: bytes | None = None) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=CALL_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


async def test_the_dashboards_and_webhooks_refusals_are_counted_by_the_hub(fleet_repo, tmp_path, pki, engine):
    """Each refusal of the hub's two HTTP servers is counted once: by status, or by the webhook's own reason,
    including the requests aiohttp's parser answers before any of the hub's code runs."""
    token_file = tmp_path / "dashboard.token"
    token_file.write_text("a dashboard token of enough characters\n")
    secret = tmp_path / "webhook.secret"
    secret.write_text("a webhook secret of 32 characters\n")
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine, metrics=True, dashboard_listen="127.0.0.1:0",
                                dashboard_token_file=token_file, webhook_listen="127.0.0.1:0",
                                webhook_secret_file=secret) as (hub, _sealer):
        counted = Counted(hub.ops.ops_server.port, "hub")
        port = hub.ops.dashboard.port
        anonymous = ssl.create_default_context(cafile=str(pki.ca_file))
        agent = ssl.create_default_context(cafile=str(pki.ca_file))
        files = pki.agent("dashboard-refusals")
        agent.load_cert_chain(str(files.cert), str(files.key))
        good = {"Authorization": "Bearer a dashboard token of enough characters"}

        def calls() -> list[int]:
            return [
                _https_status(port, anonymous, "GET", "/api/fleet", good),  # served: not a refusal
                _https_status(port, anonymous, "GET", "/api/fleet", {"Authorization": "Bearer wrong"}),
                _https_status(port, anonymous, "GET", "/login?token=wrong", {}),
                _https_status(port, agent, "GET", "/api/fleet", good),  # a certificate without the operator role
                _https_status(port, anonymous, "POST", "/api/fleet", good, b"{}"),
                _https_status(port, anonymous, "GET", "/api/fleet", good, b"x" * (MAX_REQUEST_BODY + 1)),
            ]

        assert await asyncio.to_thread(calls) == [200, 401, 401, 403, 405, 413]
        assert counted.raised() == {"Unauthenticated": 2, "PermissionDenied": 1, "MethodNotAllowed": 1,
                                    "TooLarge": 1}

        def unreadable() -> list[int]:
            return [_http_status(port, raw, anonymous) for raw in MALFORMED_REQUESTS] + [
                _http_status(hub.webhook_port, raw) for raw in MALFORMED_REQUESTS]

        assert await asyncio.to_thread(unreadable) == [400, 400, 400, 400]
        assert counted.raised() == {"Unauthenticated": 2, "PermissionDenied": 1, "MethodNotAllowed": 1,
                                    "TooLarge": 1, "MalformedRequest": 4}

        # The webhook's own refusals count once, under its reason; a GET its router refuses, by status.
        hook = f"http://127.0.0.1:{hub.webhook_port}{webhook.PATH}"
        forged = {"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"}
        assert await asyncio.to_thread(_post, hook, b'{"ref": "refs/heads/main"}', forged) == 401
        get = f"GET {webhook.PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        assert await asyncio.to_thread(_http_status, hub.webhook_port, get) == 405
        assert counted.raised() == {"Unauthenticated": 2, "PermissionDenied": 1, "MethodNotAllowed": 2,
                                    "TooLarge": 1, "MalformedRequest": 4, "BadSignature": 1}
