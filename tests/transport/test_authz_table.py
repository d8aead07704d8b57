"""Every RPC of every Skerry service, called over real mTLS by the wrong callers, is refused.

The RPC list is generated from the service descriptors in ``skerry/api/v1``; ``EXPECTED`` says,
independently of the servers' tables, who may call each one. An RPC added to a proto without a
line here fails ``test_every_rpc_has_an_expectation_and_a_rule``; a rule dropped from a server's
table stops that server from starting (``GrpcServer`` refuses an RPC without a rule) and fails the
calls below. The servers are the real ones (``HubApp`` in TUF mode with its enrollment listener,
``SealerApp`` following the hub's revocation list; the sealer shares no directory with the hub).
For every RPC:

(a) a revoked agent certificate of the cluster the request names: PERMISSION_DENIED, "revoked";
(b) another cluster's agent certificate on a cluster-scoped RPC: PERMISSION_DENIED naming it;
(c) an agent certificate on an operator (or sealer) RPC: PERMISSION_DENIED naming the role;
(d) no client certificate: the mTLS ports refuse the handshake (UNAVAILABLE); the enrollment
    listener answers UNAUTHENTICATED for every RPC but ``Enroll``;
(e) and the caller the rule names gets past authorisation (whatever the domain then answers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import pkgutil

import grpc
import pytest
from google.protobuf import message_factory

import skerry.api.v1 as api
from skerry.core import trust
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.tls import ROLE_SEALER, channel_credentials, identity_from_pem
from skerry.hub.authz import enrollment_rules, hub_rules
from skerry.hub.enrollment.revocation import Revocations
from skerry.hub.promotion_policy import PromotionPolicy
from skerry.hub.state import open_state
from skerry.sealer.authz import RULES as SEALER_RULES

from .hubs import CALL_TIMEOUT, enrolled, fleet_of_servers

TARGET = "oslo-prod"  # every cluster field of every request names it
OTHER = "oslo-dev"

# Who may call what, written down here independently of skerry/hub/authz.py and skerry/sealer/authz.py.
AGENT_OF = "the agent of the request's cluster"
AGENT_OF_OR_OPERATOR = "operators, or the agent of the request's cluster"
AGENT = "any agent (for its own cluster)"
OPERATOR = "operators"
SEALER = "sealers"
ANY = "any verified certificate"
PUBLIC = "anyone"
V1 = "/skerry.api.v1."
EXPECTED = {
    V1 + "HubService/WatchBundles": AGENT_OF,
    V1 + "HubService/ReportStatus": AGENT_OF,
    V1 + "HubService/GetFleetStatus": AGENT_OF_OR_OPERATOR,
    V1 + "HubService/Sync": OPERATOR,
    V1 + "EnrollmentService/Enroll": PUBLIC,
    V1 + "EnrollmentService/Renew": AGENT,
    V1 + "EnrollmentService/WatchRevocations": SEALER,
    V1 + "TrustService/Fetch": AGENT_OF_OR_OPERATOR,  # a bundle blob of the request's cluster
    V1 + "TrustService/GetReleaseProposal": OPERATOR,
    V1 + "TrustService/SubmitRelease": OPERATOR,
    V1 + "TrustService/IssueNonce": AGENT_OF,
    V1 + "TrustService/SubmitSignedReport": AGENT,
    V1 + "TrustService/GetAttestation": AGENT_OF_OR_OPERATOR,
    V1 + "PromotionService/ListEnvironments": OPERATOR,
    V1 + "PromotionService/GetFreight": OPERATOR,
    V1 + "PromotionService/Diff": OPERATOR,
    V1 + "PromotionService/Promote": OPERATOR,  # and promotion.promoters: tests/promotion
    V1 + "PromotionService/Rollback": OPERATOR,
    V1 + "PromotionService/WatchPromotion": OPERATOR,
    V1 + "SealerService/GetCertificate": ANY,
    V1 + "SealerService/Unseal": AGENT,
    V1 + "SealerService/UnsealBundle": AGENT,
    V1 + "SealerService/ReEncrypt": OPERATOR,
}
# What an authorisation refusal says; a call that got past authorisation says none of these.
AUTHZ_WORDS = ("may not call", "needs role", "no authorisation rule", "revoked", "client certificate")


@dataclasses.dataclass(frozen=True)
class Rpc:
    method: str  # /package.Service/Name
    service: str
    name: str
    request: type
    streaming: bool


def all_rpcs() -> list[Rpc]:
    """Every RPC of every service generated into skerry/api/v1."""
    out = []
    for info in pkgutil.iter_modules(api.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"skerry.api.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(Rpc(f"/{service.full_name}/{m.name}", service.full_name, m.name,
                               message_factory.GetMessageClass(m.input_type), m.server_streaming))
    return sorted(out, key=lambda r: r.method)


def request_for(rpc: Rpc):
    """The RPC's request with every ``cluster`` field (top level or one message down) naming TARGET."""
    msg = rpc.request()
    for field in msg.DESCRIPTOR.fields:
        if field.name == "cluster":
            setattr(msg, field.name, TARGET)
        elif field.message_type is not None and not field.is_repeated:
            sub = field.message_type.fields_by_name.get("cluster")
            if sub is not None:
                getattr(msg, field.name).cluster = TARGET
    if rpc.name == "Fetch":
        msg.path = "targets/" + trust.release_path("prod", TARGET, "0" * 64)
    return msg


def test_every_rpc_has_an_expectation_and_a_rule():
    methods = {r.method for r in all_rpcs()}
    assert methods == set(EXPECTED), "an RPC without an expectation here, or an expectation without an RPC"
    tables = {**hub_rules(PromotionPolicy), **SEALER_RULES}
    assert methods - set(tables) == set(), "an RPC no server table has a rule for"
    assert set(enrollment_rules()) == {m for m in methods if "/skerry.api.v1.EnrollmentService/" in m}


async def call(address: str, creds: grpc.ChannelCredentials, rpc: Rpc) -> grpc.aio.AioRpcError | None:
    """Make the call; its error, or None if it answered (streams: the first message)."""
    async with grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS) as channel:
        multi = channel.unary_stream if rpc.streaming else channel.unary_unary
        stub = multi(rpc.method, request_serializer=rpc.request.SerializeToString, response_deserializer=bytes)
        try:
            if rpc.streaming:
                stream = stub(request_for(rpc), timeout=CALL_TIMEOUT)
                await stream.read()
                stream.cancel()
            else:
                await stub(request_for(rpc), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            return e
    return None


def refused(err: grpc.aio.AioRpcError | None, code: grpc.StatusCode, *words: str) -> bool:
    return err is not None and err.code() == code and all(w in (err.details() or "") for w in words)


async def test_every_rpc_refuses_revoked_foreign_and_unprivileged_callers(fleet_repo, tmp_path, pki, engine):
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine) as (hub, sealer):
        target = await enrolled(hub, pki, tmp_path / "target", TARGET)
        doomed = await enrolled(hub, pki, tmp_path / "doomed", TARGET)
        other = await enrolled(hub, pki, tmp_path / "other", OTHER)
        received = sealer.revocations.received
        cli_state = open_state("", state_dir=hub.config.state_dir)  # as `skerry cluster revoke` opens it
        Revocations(hub.config.state_dir / "enrollment", cli_state).revoke_fingerprint(
            identity_from_pem(doomed.cert.read_bytes()).fingerprint)
        cli_state.close()
        await asyncio.wait_for(sealer.revocations.wait_received(received + 1), CALL_TIMEOUT)

        hub_api, sealer_api = f"127.0.0.1:{hub.port}", f"127.0.0.1:{sealer.port}"
        enroll_listener = f"127.0.0.1:{hub.enroll_port}"
        server_of = {"skerry.api.v1.SealerService": sealer_api}
        creds = {name: channel_credentials(files) for name, files in {
            "revoked": doomed, "target": target, "other": other,
            "operator": pki.operator("ops"), "sealer": pki.server("sealer", ROLE_SEALER),
        }.items()}
        anonymous = grpc.ssl_channel_credentials(pki.ca_file.read_bytes())
        legit = {AGENT_OF: "target", AGENT_OF_OR_OPERATOR: "operator", AGENT: "target", OPERATOR: "operator",
                 SEALER: "sealer", ANY: "target"}
        failures = []

        def expect(ok: bool, rpc: Rpc, case: str, err) -> None:
            if not ok:
                got = f"{err.code().name}: {err.details()}" if err is not None else "answered"
                failures.append(f"{rpc.method} {case}: {got}")

        for rpc in all_rpcs():
            address = server_of.get(rpc.service, hub_api)
            kind = EXPECTED[rpc.method]
            err = await call(address, creds["revoked"], rpc)
            expect(refused(err, grpc.StatusCode.PERMISSION_DENIED, "revoked"), rpc, "(a) revoked", err)
            if kind in (AGENT_OF, AGENT_OF_OR_OPERATOR):
                err = await call(address, creds["other"], rpc)
                expect(refused(err, grpc.StatusCode.PERMISSION_DENIED, TARGET), rpc, "(b) other cluster", err)
            if kind in (OPERATOR, SEALER):
                err = await call(address, creds["target"], rpc)
                expect(refused(err, grpc.StatusCode.PERMISSION_DENIED, "needs role"), rpc, "(c) agent", err)
            err = await call(address, anonymous, rpc)
            expect(refused(err, grpc.StatusCode.UNAVAILABLE), rpc, "(d) no certificate", err)
            if rpc.service == "skerry.api.v1.EnrollmentService":
                err = await call(enroll_listener, anonymous, rpc)
                if kind == PUBLIC:
                    expect(err is None or not any(w in err.details() for w in AUTHZ_WORDS), rpc, "(e) public", err)
                else:
                    expect(refused(err, grpc.StatusCode.UNAUTHENTICATED), rpc, "(d) enroll listener", err)
            if kind != PUBLIC:
                err = await call(address, creds[legit[kind]], rpc)
                expect(err is None or (err.code() != grpc.StatusCode.UNAUTHENTICATED
                                       and not any(w in err.details() for w in AUTHZ_WORDS)), rpc, "(e) allowed", err)
        assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dropped", sorted(m for m in EXPECTED if "SealerService" not in m))
def test_a_hub_server_missing_a_rule_does_not_start(dropped, pki):
    from skerry.core.errors import ConfigError
    from skerry.core.rpc import GrpcServer
    from skerry.core.tls import ROLE_HUB, server_credentials

    rules = {m: r for m, r in hub_rules(PromotionPolicy).items() if m != dropped}
    service = dropped.split("/")[1]
    with pytest.raises(ConfigError, match=dropped):
        GrpcServer("127.0.0.1:0", server_credentials(pki.server("hub", ROLE_HUB)), register=[],
                   service_names=[service], rules=rules)



async def test_health_and_reflection_are_public_on_every_server_and_nothing_else_is():
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from skerry.api.v1 import hub_pb2
    from skerry.core.rpc import GrpcServer

    server = GrpcServer("127.0.0.1:0", None, register=[], service_names=[], rules={})
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
            watch = health.Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()

            async def ask():
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            async for answer in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(ask()):
                assert "grpc.health.v1.Health" in {s.name for s in answer.list_services_response.service}
                break
            # an RPC this server does not serve is unimplemented, not silently allowed
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ch.unary_unary("/skerry.api.v1.HubService/GetFleetStatus")(
                    hub_pb2.GetFleetStatusRequest().SerializeToString(), timeout=CALL_TIMEOUT)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)


async def test_a_served_rpc_missing_from_the_table_is_refused_fail_closed():
    from skerry.api.v1 import hub_pb2, hub_pb2_grpc
    from skerry.core.rpc import GrpcServer

    class Servicer(hub_pb2_grpc.HubServiceServicer):  # registered behind the table's back
        async def GetFleetStatus(self, request, context):
            return hub_pb2.GetFleetStatusResponse(revision="leaked")

    server = GrpcServer("127.0.0.1:0", None, service_names=[], rules={},
                        register=[lambda s: hub_pb2_grpc.add_HubServiceServicer_to_server(Servicer(), s)])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await hub_pb2_grpc.HubServiceStub(ch).GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=CALL_TIMEOUT)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no authorisation rule" in err.value.details()
    finally:
        await server.stop(0)
