"""WatchBundles as a transport, over real mTLS on loopback: chunks with a digest check, no blob sent
twice, one watch per certificate, message-size and per-identity rate limits, health on shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skerry.agent.stream import HubClient
from skerry.api.v1 import bundle_pb2, hub_pb2, hub_pb2_grpc
from skerry.core.bundle import MAX_BUNDLE_BYTES
from skerry.core.clock import FixedClock
from skerry.core.errors import InvalidInput
from skerry.core.rpc import MAX_MESSAGE_BYTES, RateLimiter
from skerry.hub.servicer import SERVICE_NAME

from .hubs import CHUNK, READ, bare_hub, bundle, channel


async def test_a_bundle_above_the_chunk_size_arrives_in_chunks_and_is_reassembled(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        signed = store.publish("oslo", bundle("oslo", 5 * CHUNK + 123))
        async with channel(address, pki.agent("oslo")) as ch:
            call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(
                hub_pb2.WatchBundlesRequest(cluster="oslo", accepts_chunks=True)
            )
            head = await asyncio.wait_for(call.read(), READ)
            assert head.transfer.chunks == 6 and head.transfer.size == len(signed.bundle)
            assert not head.bundle.bundle
            chunks = [await asyncio.wait_for(call.read(), READ) for _ in range(6)]
            assert all(len(c.chunk.data) <= CHUNK for c in chunks)
            assert b"".join(c.chunk.data for c in chunks) == signed.bundle
            call.cancel()
        client = HubClient(address, pki.agent("oslo"), "oslo")
        watch = client.watch()
        try:
            got = await asyncio.wait_for(anext(watch), READ)
            assert got.bundle.bundle == signed.bundle and got.bundle.metadata == signed.metadata
            assert "sha256:" + hashlib.sha256(got.bundle.bundle).hexdigest() == signed.digest
        finally:
            await watch.aclose()
            await client.close()


async def test_an_agent_without_chunk_support_gets_whole_bundles(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        signed = store.publish("oslo", bundle("oslo", 3 * CHUNK))
        async with channel(address, pki.agent("oslo")) as ch:
            call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
            whole = await asyncio.wait_for(call.read(), READ)
            assert whole.bundle.bundle == signed.bundle and not whole.HasField("transfer")
            call.cancel()


async def test_an_unchanged_blob_is_never_sent_twice_to_the_same_agent(pki, tmp_path):
    # Metadata lives 2 s, so publishing the same content 1.1 s later re-signs it: a new release, same bytes.
    clock = FixedClock(dt.datetime.now(dt.UTC))
    async with bare_hub(pki, tmp_path, expiry=dt.timedelta(seconds=2), clock=clock) as (store, _, _, address):
        content = bundle("oslo", 2 * CHUNK)
        first = store.publish("oslo", content)
        client = HubClient(address, pki.agent("oslo"), "oslo")
        watch = client.watch()
        try:
            got1 = await asyncio.wait_for(anext(watch), READ)
            assert got1.bundle.version == first.release
            clock.advance(1.1)
            second = store.publish("oslo", content)
            assert second is not None and second.release > first.release and second.digest == first.digest
            got2 = await asyncio.wait_for(anext(watch), READ)
            assert got2.bundle.version == second.release and got2.bundle.bundle == first.bundle
        finally:
            await watch.aclose()
            await client.close()
        # On the wire the second release carried no bytes.
        async with channel(address, pki.agent("oslo")) as ch:
            call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(
                hub_pb2.WatchBundlesRequest(cluster="oslo", accepts_chunks=True, have_blob=first.digest)
            )
            msg = await asyncio.wait_for(call.read(), READ)
            assert msg.transfer.omitted and not msg.bundle.bundle and msg.bundle.version == second.release
            call.cancel()


async def test_chunks_that_do_not_match_the_digest_are_discarded_and_the_agent_reconnects(pki, tmp_path):
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
        bundle=bundle_pb2.SignedBundle(cluster="oslo", version=7, digest="sha256:" + "0" * 64, metadata=b"{}"),
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
