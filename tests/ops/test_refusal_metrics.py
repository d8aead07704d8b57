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
import subprocess
import sys
import urllib.request

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from e2e.replay_hub import ReplayHub  # tests/e2e
from e2e.trust_world import TrustWorld, bundle_bytes, evil_key
from hostile.hostile_inputs import alias_bomb  # tests/hostile
from hub.helpers import FLEET_FILES, GitRepo  # tests/hub
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
from skerry.core.tls import channel_credentials
from skerry.hub.render.engine import KustomizeEngine
from skerry.sealer import crypto
from skerry.testing.devstack import Stack, wait_for

CLUSTER = "oslo-prod"
# The revoked agent's calls are refused within this long of `skerry cluster revoke` (tests/transport).
REVOKE_DEADLINE = 5.0


@pytest.fixture
def fleet_repo(tmp_path) -> GitRepo:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


@pytest.fixture(scope="module")
def engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


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
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine, metrics=True) as (hub, _sealer):
        counted = Counted(hub.ops.ops_server.port, "hub")
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

        assert counted.raised() == {"MalformedToken": 1, "ForgedReport": 1, "NotJson": 1, "EndlessData": 1,
                                    "AliasBudget": 1}


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
