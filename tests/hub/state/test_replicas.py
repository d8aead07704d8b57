"""Hub replicas on one state: a serving replica streams what the writer published; a standby takes over."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request

import grpc

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.api.v1 import common_pb2, hub_pb2, hub_pb2_grpc
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.tls import ROLE_HUB, channel_credentials
from skerry.hub.app import HubApp
from skerry.hub.config import HubConfig
from skerry.hub.state import open_state
from skerry.hub.writer import Duties, Writer
from tests.hub.helpers import BROKEN_PROD, FLEET_FILES

READ_TIMEOUT = 30
CLUSTER = "oslo-prod"


def config(fleet_repo, tmp_path, pki, dev_trust, name: str, role: str) -> HubConfig:
    return HubConfig(
        metrics_listen="127.0.0.1:0", ready_file=tmp_path / f"{name}.ready.json",
        repo=str(fleet_repo.path), interval=3600, tls=pki.server("hub", ROLE_HUB), listen="127.0.0.1:0",
        state_dir=tmp_path / name, state=f"sqlite:///{tmp_path / 'hub.db'}", hub_id=name, role=role,
        trust_dir=dev_trust.dir if role != "serve" else None,
        release_keys=dev_trust.release_keys if role != "serve" else (), lease_ttl=3.0,
    )


@contextlib.asynccontextmanager
async def watching(app: HubApp, pki):
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{app.port}", channel_credentials(pki.agent(CLUSTER)), options=CHANNEL_OPTIONS
    ) as channel:
        call = hub_pb2_grpc.HubServiceStub(channel).WatchBundles(hub_pb2.WatchBundlesRequest(cluster=CLUSTER))
        yield call
        call.cancel()


async def next_bundle(call):
    message = await asyncio.wait_for(call.read(), READ_TIMEOUT)
    assert message is not grpc.aio.EOF
    return message.bundle


def scale(fleet_repo, count: int) -> str:
    return fleet_repo.commit("scale", {"overlays/prod/kustomization.yaml": f"""
        resources: [../../base]
        replicas: [{{name: web, count: {count}}}]
    """})


async def test_a_serving_replica_streams_each_release_and_a_standby_takes_over_the_writing(
    fleet_repo, tmp_path, pki, engine, dev_trust
):
    writer = HubApp(config(fleet_repo, tmp_path, pki, dev_trust, "hub-a", "both"), engine=engine)
    await writer.start()
    served = HubApp(config(fleet_repo, tmp_path, pki, dev_trust, "hub-b", "serve"), engine=engine)
    standby = HubApp(config(fleet_repo, tmp_path, pki, dev_trust, "hub-c", "both"), engine=engine)
    try:
        await served.start()
        await standby.start()
        assert writer.writer.is_writer and not served.writer.is_writer and not standby.writer.is_writer
        for app in (writer, served, standby):  # the replicas never synced: ready once caught up with the state
            await wait_for(lambda app=app: ready(app) == 200)
        agent = TufVerifier(CLUSTER, "prod", dev_trust.root, tmp_path / "agent",
                            lambda: GrpcFetcher(f"127.0.0.1:{served.port}", pki.agent(CLUSTER)))
        async with watching(served, pki) as call:
            first = await next_bundle(call)
            assert first.version == writer.store.current(CLUSTER).release
            assert (await asyncio.to_thread(agent.update)).release == first.version

            commit = scale(fleet_repo, 4)
            await writer.syncer.sync_once()
            second = await next_bundle(call)  # pushed by the replica, which learnt it from the state
            verified = await asyncio.to_thread(agent.update)
            assert verified.release == second.version > first.version and verified.bundle.revision == commit

            await writer.stop(grace=0)  # gives the lease up: the standby takes it and writes
            await wait_for(lambda: standby.writer.is_writer)
            commit = scale(fleet_repo, 5)
            await standby.syncer.sync_once()
            third = await next_bundle(call)
            verified = await asyncio.to_thread(agent.update)
            assert verified.release == third.version > second.version and verified.bundle.revision == commit
        with standby.state.read() as tx:
            assert tx.last_release(CLUSTER) == third.version  # no release was made twice
    finally:
        for app in (writer, served, standby):
            await app.stop(grace=0)


def ready(app: HubApp) -> int:
    """The status of the hub's /readyz (what a Service's readiness probe asks)."""
    port = json.loads(app.config.ready_file.read_text())["metrics_port"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


async def wait_for(condition, deadline: float = READ_TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)



async def test_writer_duties_stop_when_the_lease_is_taken_over_and_start_again_when_it_is_back(tmp_path):
    spec = f"sqlite:///{tmp_path / 'hub.db'}"
    mine, theirs = open_state(spec, state_dir=tmp_path), open_state(spec, state_dir=tmp_path)
    writer = Writer(mine, "hub-a", ttl=0.3)
    running: list[asyncio.Task] = []
    stopped = []

    async def start():
        running.append(asyncio.create_task(asyncio.sleep(3600)))
        return [running[-1]]

    async def stop():
        stopped.append(running[-1].cancelled() or running[-1].done())

    duties = Duties(writer, start, stop, poll=0.05)
    task = asyncio.create_task(duties.run())
    try:
        await wait_for(lambda: duties.terms == 1)
        await asyncio.sleep(0.4)  # renewals keep it: longer than the lease itself
        assert writer.is_writer and not stopped
        mine.release_lease(writer.lease)  # (as if it had expired) another process takes over
        other = theirs.acquire_lease("hub-b", 0.3)
        assert other is not None
        await wait_for(lambda: stopped)
        assert stopped == [True] and not writer.is_writer  # its tasks were cancelled before stop ran
        await wait_for(lambda: duties.terms == 2)  # hub-b's lease ran out unrenewed: taken again
        assert writer.is_writer and writer.lease.epoch > other.epoch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        mine.close()
        theirs.close()


@contextlib.asynccontextmanager
async def hub_stub(app: HubApp, files):
    async with grpc.aio.secure_channel(f"127.0.0.1:{app.port}", channel_credentials(files),
                                       options=CHANNEL_OPTIONS) as channel:
        yield hub_pb2_grpc.HubServiceStub(channel)


async def fleet_until(ops, shows, deadline: float = READ_TIMEOUT) -> hub_pb2.GetFleetStatusResponse:
    """GetFleetStatus, asked again until ``shows(response)`` (the replica follows the state every second)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        response = await ops.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=10)
        if shows(response):
            return response
        assert loop.time() < end, f"the replica never showed it: {response}"
        await asyncio.sleep(0.3)  # within the operator's rate limit (5 calls a second)


async def test_a_serving_replica_shows_the_fleets_reports_and_streams_the_render_errors_the_writer_found(
    fleet_repo, tmp_path, pki, engine, dev_trust
):
    writer = HubApp(config(fleet_repo, tmp_path, pki, dev_trust, "hub-a", "both"), engine=engine)
    await writer.start()
    served = HubApp(config(fleet_repo, tmp_path, pki, dev_trust, "hub-b", "serve"), engine=engine)
    try:
        await served.start()
        await wait_for(lambda: ready(served) == 200)
        release = writer.store.current(CLUSTER).release
        report = hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(
            cluster=CLUSTER, applied_version=release, applied_digest=writer.store.current(CLUSTER).digest,
            revision=writer.syncer.revision, observed_unix_ms=2000,
            conditions=[common_pb2.Condition(type="Ready", status="True", reason="Applied")]))
        async with hub_stub(writer, pki.agent(CLUSTER)) as agent:  # the agent reports to the writer...
            await agent.ReportStatus(report, timeout=10)
        async with hub_stub(served, pki.operator("ops")) as ops:  # ...an operator asks the replica
            fleet = await fleet_until(ops, lambda r: any(v.cluster == CLUSTER and v.HasField("reported")
                                                         for v in r.clusters))
            assert fleet.revision == writer.syncer.revision
            assert [v.cluster for v in fleet.clusters] == sorted(writer.syncer.fleet.cluster_names)
            view = next(v for v in fleet.clusters if v.cluster == CLUSTER)
            assert view.reported.applied_version == release and view.desired_version == release
            assert list(view.paths) == list(writer.syncer.fleet.paths_for(CLUSTER))
            assert dict(view.labels) == dict(writer.syncer.fleet.cluster(CLUSTER).labels)

            async with watching(served, pki) as call:
                assert (await next_bundle(call)).version == release
                commit = fleet_repo.commit("break", BROKEN_PROD)
                await writer.syncer.sync_once()
                event = await asyncio.wait_for(call.read(), READ_TIMEOUT)  # the replica streams the writer's error
                assert event.WhichOneof("event") == "render_error"
                assert event.render_error.revision == commit
                assert event.render_error.message == writer.store.error(CLUSTER).message
            fleet = await fleet_until(ops, lambda r: any(v.render_error for v in r.clusters))
            view = next(v for v in fleet.clusters if v.cluster == CLUSTER)
            assert view.render_error == writer.store.error(CLUSTER).message and view.desired_version == release

            fleet_repo.commit("heal", FLEET_FILES)
            await writer.syncer.sync_once()
            assert writer.store.error(CLUSTER) is None
            await fleet_until(ops, lambda r: not any(v.render_error for v in r.clusters))
    finally:
        for app in (writer, served):
            await app.stop(grace=0)
