"""WatchBundles as a transport, over real mTLS on loopback: release events, the agent's chunk assembly
with a digest check, one watch per certificate, message-size and per-identity rate limits, health on
shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skerry.agent.stream import HubClient
from skerry.api.v1 import bundle_pb2, hub_pb2, hub_pb2_grpc
from skerry.core.bundle import Bundle
from skerry.core.errors import InvalidInput
from skerry.core.rpc import CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, GrpcServer, RateLimiter
from skerry.core.tls import ROLE_HUB, channel_credentials, server_credentials
from skerry.hub.bundles.store import HubStore
from skerry.hub.servicer import SERVICE_NAME, HubServicer
from skerry.hub.status import StatusBoard

READ = 20.0
CHUNK = 64 * 1024


class StaticFleetView:
    """Stands in for the sync loop's view (no Git here): the fleet is 'loaded'."""

    fleet = object()
    revision = "0" * 40
    fleet_error = None


def bundle(cluster: str, size: int, tag: str = "") -> Bundle:
    data = secrets.token_hex(size // 2)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big{tag}", "namespace": "x"},
          "data": {"blob": data}}
    return Bundle(cluster=cluster, revision="a" * 40, source_url="file:///fleet", paths=("p",),
                  engine="plain", engine_version="0", objects=(cm,))


@contextlib.asynccontextmanager
async def bare_hub(pki, dev_trust, *, limiter=None):
    store = HubStore(dev_trust.repository())
    store.declare(["oslo", "bergen"])
    servicer = HubServicer(store, StatusBoard(), StaticFleetView())
    server = GrpcServer(
        "127.0.0.1:0",
        server_credentials(pki.server("hub", ROLE_HUB)),
        register=[lambda s: hub_pb2_grpc.add_HubServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        limiter=limiter,
    )
    port = await server.start()
    try:
        yield store, servicer, server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def channel(address, files):
    async with grpc.aio.secure_channel(address, channel_credentials(files), options=CHANNEL_OPTIONS) as ch:
        yield ch


async def test_a_release_event_names_the_release_and_its_digest_and_carries_no_bytes(pki, dev_trust):
    async with bare_hub(pki, dev_trust) as (store, _, _, address):
        signed = store.publish("oslo", bundle("oslo", 5 * CHUNK + 123))
        client = HubClient(address, pki.agent("oslo"), "oslo")
        watch = client.watch()
        try:
            got = await asyncio.wait_for(anext(watch), READ)
            assert (got.bundle.cluster, got.bundle.version, got.bundle.digest) == ("oslo", signed.release, signed.digest)
            assert not got.bundle.bundle and not got.bundle.metadata  # the agent fetches both through TUF
            newer = store.publish("oslo", bundle("oslo", 100, tag="2"))
            got = await asyncio.wait_for(anext(watch), READ)
            assert (got.bundle.version, got.bundle.digest) == (newer.release, newer.digest)
        finally:
            await watch.aclose()
            await client.close()


async def test_chunks_that_do_not_match_the_digest_are_discarded_and_the_agent_reconnects(pki, dev_trust):
    from agent.fakes import FakeHub  # tests/agent/fakes.py: a hub whose events the test writes

    hub = await FakeHub(pki).start()
    client = HubClient(hub.address, pki.agent("oslo"), "oslo", backoff_base=0.01, backoff_cap=0.05)
    watch = client.watch()
    good = b"x" * 100
    digest = "sha256:" + hashlib.sha256(good).hexdigest()
    head = hub_pb2.WatchBundlesResponse(
        bundle=bundle_pb2.SignedBundle(cluster="oslo", version=7, digest=digest, metadata=b"{}"),
        transfer=hub_pb2.BlobTransfer(size=100, chunks=1),
    )
    bad = hub_pb2.WatchBundlesResponse(chunk=hub_pb2.BundleChunk(digest=digest, offset=0, data=b"y" * 100))
    try:
        await hub.send(head)
        await hub.send(bad)
        pending = asyncio.ensure_future(anext(watch))
        await hub.wait_for(lambda: len(hub.requests) >= 2)  # it gave up on the stream and came back
        assert isinstance(client.last_error, InvalidInput) and "do not match" in str(client.last_error)
        assert not pending.done()  # nothing was handed on
        hub.backlog.clear()
        await hub.send(head)
        await hub.send(hub_pb2.WatchBundlesResponse(chunk=hub_pb2.BundleChunk(digest=digest, offset=0, data=good)))
        got = await asyncio.wait_for(pending, READ)
        assert got.bundle.bundle == good
    finally:
        await watch.aclose()
        await client.close()
        await hub.stop()


async def test_a_newer_watch_from_the_same_certificate_ends_the_older_one(pki, dev_trust):
    async with bare_hub(pki, dev_trust) as (store, servicer, _, address):
        store.publish("oslo", bundle("oslo", 1000))
        async with channel(address, pki.agent("oslo")) as a, channel(address, pki.agent("oslo")) as b:
            old = hub_pb2_grpc.HubServiceStub(a).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
            await asyncio.wait_for(old.read(), READ)
            new = hub_pb2_grpc.HubServiceStub(b).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
            await asyncio.wait_for(new.read(), READ)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(old.read(), READ)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "superseded" in err.value.details()
            assert len(servicer.streams) == 1
            new.cancel()


async def test_a_message_above_the_size_limit_is_refused(pki, dev_trust):
    async with bare_hub(pki, dev_trust) as (_, _, _, address):
        async with channel(address, pki.agent("oslo")) as ch:
            huge = hub_pb2.ClusterStatus(cluster="oslo", revision="r" * (MAX_MESSAGE_BYTES + 1024))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await hub_pb2_grpc.HubServiceStub(ch).ReportStatus(
                    hub_pb2.ReportStatusRequest(status=huge), timeout=READ
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the connection and the hub carry on
            ok = await hub_pb2_grpc.HubServiceStub(ch).ReportStatus(
                hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster="oslo")), timeout=READ
            )
            assert ok is not None


async def test_one_identity_over_its_request_rate_is_slowed_down_without_affecting_others(pki, dev_trust):
    async with bare_hub(pki, dev_trust, limiter=RateLimiter(rate=1.0, burst=5)) as (_, _, _, address):
        async with channel(address, pki.agent("oslo")) as noisy, channel(address, pki.agent("bergen")) as calm:
            codes = []
            for _ in range(12):
                try:
                    await hub_pb2_grpc.HubServiceStub(noisy).ReportStatus(
                        hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster="oslo")), timeout=READ
                    )
                    codes.append("OK")
                except grpc.aio.AioRpcError as e:
                    codes.append(e.code().name)
            assert codes[:5] == ["OK"] * 5 and "RESOURCE_EXHAUSTED" in codes[5:]
            await hub_pb2_grpc.HubServiceStub(calm).ReportStatus(
                hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster="bergen")), timeout=READ
            )


async def test_shutdown_reports_not_serving_before_it_stops(pki, dev_trust):
    async with bare_hub(pki, dev_trust) as (store, _, server, address):
        store.publish("oslo", bundle("oslo", 100))
        async with channel(address, pki.agent("oslo")) as ch:
            watch = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
            await asyncio.wait_for(watch.read(), READ)
            health = health_pb2_grpc.HealthStub(ch)
            assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=READ)).status == 1
            stopping = asyncio.ensure_future(server.stop(grace=2.0, drain=1.0))
            await asyncio.sleep(0.05)
            # Health says NOT_SERVING while the server still answers (the drain before the stop).
            status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=READ)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            await asyncio.wait_for(stopping, 10)
