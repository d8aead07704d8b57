"""WatchBundles as a transport, over real mTLS on loopback: release hints, the agent's chunk assembly with a
digest check, one watch per certificate, message-size and per-identity rate limits, health on shutdown.
Shared blobs on the stream: test_shared_blobs.py."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skerry.agent.stream import HubClient
from skerry.api.v1 import bundle_pb2, hub_pb2, hub_pb2_grpc
from skerry.core.bundle import MAX_BUNDLE_BYTES
from skerry.core.errors import InvalidInput
from skerry.core.rpc import MAX_MESSAGE_BYTES, RateLimiter
from skerry.hub.servicer import SERVICE_NAME

from .hubs import CHUNK, READ, bare_hub, bundle, channel


async def test_a_clusters_own_release_is_a_hint_without_bytes(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        signed = store.publish("oslo", bundle("oslo", 5 * CHUNK + 123))
        client = HubClient(address, pki.agent("oslo"), "oslo")
        watch = client.watch()
        try:
            got = await asyncio.wait_for(anext(watch), READ)
            assert (got.bundle.cluster, got.bundle.version, got.bundle.digest) == ("oslo", signed.release, signed.digest)
            assert not got.bundle.bundle  # the agent fetches it through TUF
            newer = store.publish("oslo", bundle("oslo", 100, tag="2"))
            got = await asyncio.wait_for(anext(watch), READ)
            assert (got.bundle.version, got.bundle.digest) == (newer.release, newer.digest)
        finally:
            await watch.aclose()
            await client.close()


async def test_chunks_that_do_not_match_the_digest_are_discarded_and_the_agent_reconnects(pki, tmp_path):
    from agent.fakes import FakeHub  # tests/agent/fakes.py: a hub whose events the test writes

    hub = await FakeHub(pki).start()
    client = HubClient(hub.address, pki.agent("oslo"), "oslo", backoff_base=0.01, backoff_cap=0.05)
    watch = client.watch()
    good = b"x" * 100
    digest = "sha256:" + hashlib.sha256(good).hexdigest()
    head = hub_pb2.WatchBundlesResponse(
        bundle=bundle_pb2.SignedBundle(cluster="oslo", version=7, digest=digest),
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


async def test_a_newer_watch_from_the_same_certificate_ends_the_older_one(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, servicer, _, address):
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


async def test_a_message_above_the_size_limit_is_refused(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (_, _, _, address):
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


async def test_one_identity_over_its_request_rate_is_slowed_down_without_affecting_others(pki, tmp_path):
    async with bare_hub(pki, tmp_path, limiter=RateLimiter(rate=1.0, burst=5)) as (_, _, _, address):
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


async def test_shutdown_reports_not_serving_before_it_stops(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, server, address):
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


@pytest.mark.parametrize(("size", "chunks"), [(MAX_BUNDLE_BYTES + 1, 13), (256 * 1024 * 1024, 256), (100, 101)])
async def test_an_announced_transfer_over_the_bundle_cap_is_refused_before_any_chunk(pki, tmp_path, size, chunks):
    """A hostile hub announcing more than any verifier would accept: refused from the header alone."""
    from agent.fakes import FakeHub

    hub = await FakeHub(pki).start()
    client = HubClient(hub.address, pki.agent("oslo"), "oslo", backoff_base=0.01, backoff_cap=0.05)
    watch = client.watch()
    head = hub_pb2.WatchBundlesResponse(
        bundle=bundle_pb2.SignedBundle(cluster="oslo", version=7, digest="sha256:" + "0" * 64),
        transfer=hub_pb2.BlobTransfer(size=size, chunks=chunks),
    )
    try:
        await hub.send(head)  # no chunk follows: a refusal can only come from the announcement
        pending = asyncio.ensure_future(anext(watch))
        await hub.wait_for(lambda: len(hub.requests) >= 2)
        assert isinstance(client.last_error, InvalidInput) and client.last_error.reason == "EndlessData"
        assert not pending.done()
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
    finally:
        await watch.aclose()
        await client.close()
        await hub.stop()
