"""The hub's gRPC API over real mutual TLS on 127.0.0.1: watching bundles, reports, fleet status, authz."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.api.v1 import common_pb2, hub_pb2, hub_pb2_grpc
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.tls import ROLE_HUB, channel_credentials
from skerry.hub.app import HubApp
from skerry.hub.config import HubConfig

from .helpers import BROKEN_PROD, GitRepo, scale_prod

READ_TIMEOUT = 30


@contextlib.asynccontextmanager
async def running_hub(repo, tmp_path, pki, engine, dev_trust):
    config = HubConfig(
        repo=str(repo.path),
        trust_dir=dev_trust.dir,
        release_keys=dev_trust.release_keys,
        interval=3600,  # tests drive sync_once themselves
        tls=pki.server("hub", ROLE_HUB),
        listen="127.0.0.1:0",  # gRPC binds with SO_REUSEPORT: a fixed port would share another test's hub
        state_dir=tmp_path / "state",
        ready_file=tmp_path / "ready.json",
    )
    app = HubApp(config, engine=engine)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=0)


@contextlib.asynccontextmanager
async def hub_stub(port: int, files):
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", channel_credentials(files), options=CHANNEL_OPTIONS
    ) as channel:
        yield hub_pb2_grpc.HubServiceStub(channel)


def verifier(app: HubApp, pki, dev_trust, tmp_path, cluster: str, env: str) -> TufVerifier:
    """What the cluster's agent runs: a stock TUF client over the hub's TrustService."""
    address = f"127.0.0.1:{app.port}"
    return TufVerifier(cluster, env, dev_trust.root, tmp_path / f"agent-{cluster}",
                       lambda: GrpcFetcher(address, pki.agent(cluster)))


async def read(call):
    message = await asyncio.wait_for(call.read(), READ_TIMEOUT)
    assert message is not grpc.aio.EOF
    return message


async def refused_watch(stub, cluster: str) -> grpc.aio.AioRpcError:
    """The error a WatchBundles call for ``cluster`` ends with (it must end with one)."""
    call = stub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster=cluster))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), READ_TIMEOUT)
    return info.value


async def test_agent_gets_its_current_bundle_then_a_new_one_after_a_commit(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with (
        running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, pki.agent("oslo-prod")) as stub,
    ):
        agent = verifier(app, pki, dev_trust, tmp_path, "oslo-prod", "prod")
        call = stub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo-prod"))
        first = (await read(call)).bundle
        assert first.cluster == "oslo-prod" and first.version > 0
        verified = await asyncio.to_thread(agent.update)
        assert verified.digest == first.digest and verified.release == first.version
        assert verified.bundle.revision == fleet_repo.head()
        assert verified.bundle.paths == ("platform/monitoring", "overlays/prod")

        commit = fleet_repo.commit("scale", scale_prod(4))
        await app.syncer.sync_once()
        second = (await read(call)).bundle
        newer = await asyncio.to_thread(agent.update)
        assert newer.digest == second.digest and newer.release == second.version
        assert newer.release > verified.release and newer.bundle.revision == commit
        call.cancel()


async def test_agent_that_has_the_current_bundle_is_not_sent_it_again(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with (
        running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, pki.agent("oslo-dev")) as stub,
    ):
        current = app.store.current("oslo-dev")
        call = stub.WatchBundles(
            hub_pb2.WatchBundlesRequest(
                cluster="oslo-dev", last_version=current.release, last_digest=current.digest
            )
        )
        commit = fleet_repo.commit(
            "annotate",
            {
                "overlays/dev/kustomization.yaml": """
            resources: [../../base]
            commonAnnotations: {team: platform}
        """
            },
        )
        await asyncio.sleep(0.2)  # the stream is open and idle
        await app.syncer.sync_once()
        first_sent = (await read(call)).bundle
        assert first_sent.version > current.release and first_sent.digest != current.digest
        latest = app.store.current("oslo-dev")
        assert (first_sent.digest, latest.revision) == (latest.digest, commit)
        call.cancel()


async def test_render_error_is_streamed_and_the_previous_bundle_stays(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with (
        running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, pki.agent("oslo-prod")) as stub,
    ):
        call = stub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo-prod"))
        good = (await read(call)).bundle
        commit = fleet_repo.commit("break", BROKEN_PROD)
        await app.syncer.sync_once()
        event = await read(call)
        assert event.WhichOneof("event") == "render_error"
        assert event.render_error.revision == commit
        assert event.render_error.message.startswith("overlays/prod/kustomization.yaml: resources[1]")
        assert app.store.current("oslo-prod").digest == good.digest
        call.cancel()


@pytest.mark.parametrize(
    ("role", "name", "cluster", "code", "named"),
    [
        ("agent", "oslo-dev", "oslo-prod", grpc.StatusCode.PERMISSION_DENIED, ("skerry:agent:oslo-dev", "'oslo-prod'")),
        ("operator", "ops", "oslo-prod", grpc.StatusCode.PERMISSION_DENIED, ()),
        ("agent", "ghost", "ghost", grpc.StatusCode.NOT_FOUND, ("'ghost'",)),
    ],
    ids=["agent-of-another-cluster", "operator", "unknown-cluster"],
)
async def test_a_watch_is_refused_to_a_caller_it_is_not_for(
    fleet_repo, tmp_path, pki, engine, dev_trust, role, name, cluster, code, named
):
    async with (
        running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, getattr(pki, role)(name)) as stub,
    ):
        error = await refused_watch(stub, cluster)
        assert error.code() == code
        assert all(text in error.details() for text in named), error.details()


async def test_client_without_a_certificate_is_refused(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app:
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{app.port}", creds) as channel:
            stub = hub_pb2_grpc.HubServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def status_report(cluster: str, version: int, observed: int) -> hub_pb2.ReportStatusRequest:
    return hub_pb2.ReportStatusRequest(
        status=hub_pb2.ClusterStatus(
            cluster=cluster,
            applied_version=version,
            applied_digest="sha256:abc",
            revision="c1",
            conditions=[
                common_pb2.Condition(type="Ready", status="True", reason="Applied", message="all good")
            ],
            objects=[
                hub_pb2.ObjectStatus(
                    ref=common_pb2.ObjectRef(
                        group="apps", version="v1", kind="Deployment", namespace="web", name="web"
                    ),
                    action="configured",
                )
            ],
            agent_version="0.1.0",
            observed_unix_ms=observed,
        )
    )


async def test_reported_status_shows_in_fleet_status_for_operators(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app:
        async with hub_stub(app.port, pki.agent("oslo-prod")) as agent:
            await agent.ReportStatus(status_report("oslo-prod", 7, 2000), timeout=10)
            await agent.ReportStatus(status_report("oslo-prod", 6, 1000), timeout=10)  # older: ignored
        async with hub_stub(app.port, pki.operator("ops")) as ops:
            fleet = await ops.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=10)
        assert fleet.revision == fleet_repo.head()
        views = {v.cluster: v for v in fleet.clusters}
        assert set(views) == {"oslo-dev", "bergen-dev", "oslo-prod"}
        prod = views["oslo-prod"]
        current = app.store.current("oslo-prod")
        assert dict(prod.labels) == {"region": "no-oslo", "env": "prod"}
        assert list(prod.paths) == ["platform/monitoring", "overlays/prod"]
        assert (prod.desired_version, prod.desired_digest, prod.desired_revision) == (
            current.release,
            current.digest,
            fleet_repo.head(),
        )
        assert prod.desired_objects == current.objects > 0
        assert prod.reported.applied_version == 7 and prod.reported.conditions[0].type == "Ready"
        assert prod.reported.objects[0].ref.kind == "Deployment"
        assert not views["oslo-dev"].HasField("reported")


async def test_fleet_status_shows_render_errors(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with (
        running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, pki.operator("ops")) as ops,
    ):
        fleet_repo.commit("break", BROKEN_PROD)
        await app.syncer.sync_once()
        view = (
            await ops.GetFleetStatus(hub_pb2.GetFleetStatusRequest(cluster="oslo-prod"), timeout=10)
        ).clusters[0]
        assert view.render_error.startswith("overlays/prod/kustomization.yaml: resources[1]")
        assert view.desired_version > 0  # the previous bundle is still the desired state


async def test_agent_may_report_and_read_only_its_own_cluster(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with (
        running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, pki.agent("oslo-dev")) as agent,
    ):
        own = await agent.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=10)
        assert [v.cluster for v in own.clusters] == ["oslo-dev"]
        for call in (
            agent.GetFleetStatus(hub_pb2.GetFleetStatusRequest(cluster="oslo-prod"), timeout=10),
            agent.ReportStatus(status_report("oslo-prod", 1, 1), timeout=10),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "oslo-dev" in info.value.details() and "oslo-prod" in info.value.details()


async def test_unknown_cluster_in_report_or_fleet_status_is_not_found(fleet_repo, tmp_path, pki, engine, dev_trust):
    async with running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app:
        async with hub_stub(app.port, pki.agent("ghost")) as agent:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await agent.ReportStatus(status_report("ghost", 1, 1), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        async with hub_stub(app.port, pki.operator("ops")) as ops:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ops.GetFleetStatus(hub_pb2.GetFleetStatusRequest(cluster="ghost"), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_before_the_fleet_loads_agents_are_told_to_come_back(tmp_path, pki, engine, dev_trust):
    repo = GitRepo(tmp_path / "empty")
    repo.commit("no fleet yet", {"README.md": "soon\n"})
    async with (
        running_hub(repo, tmp_path, pki, engine, dev_trust) as app,
        hub_stub(app.port, pki.agent("oslo-dev")) as stub,
    ):
        error = await refused_watch(stub, "oslo-dev")
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "skerry.yaml" in error.details()
