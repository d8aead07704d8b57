"""Shared blobs: one bundle for many clusters, stored and hashed once, directed per cluster in one pass,
and sent on every stream as the same serialised chunks; each agent verifies it against its own director
entry and the release target it names (the bytes only stand in for the download when they match)."""

from __future__ import annotations

import asyncio

import pytest
from devtrust import DevTrust

from skerry.agent.stream import HubClient
from skerry.agent.trust import TufVerifier
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.bundle import SHARED_CLUSTER
from skerry.core.canonical import sha256_digest
from skerry.hub.bundles.store import HubStore
from tests.agent.helpers import RepositoryFetcher

from .hubs import CHUNK, READ, bare_hub, bundle, channel


def shared(size: int = 4096, tag: str = ""):
    return bundle(SHARED_CLUSTER, size, tag)


def verifier(tmp_path, store_repo, cluster: str) -> TufVerifier:
    """What the cluster's agent runs (its fetcher reads the repository the hub serves)."""
    return TufVerifier(cluster, "default", tmp_path / "trust" / "root.json", tmp_path / f"agent-{cluster}",
                       lambda: RepositoryFetcher(store_repo))


def test_publish_shared_hashes_once_and_every_cluster_references_the_same_bytes(dev_trust):
    repo = dev_trust.repository()
    store = HubStore(repo)
    names = [f"c{i}" for i in range(50)]
    assert store.publish_shared(names, shared(64 * 1024)) == names
    currents = [store.current(n) for n in names]
    assert all(c.bundle is currents[0].bundle and c.shared is currents[0].shared for c in currents)
    paths = {repo.directed(n).path for n in names}
    assert len({path.rsplit("/", 1)[1] for path in paths}) == 1  # every target names the same blob
    assert {repo.directed(n).hashes["sha256"] for n in names} == {currents[0].digest.split(":")[1]}


def test_unchanged_shared_content_gives_no_new_release(dev_trust):
    store = HubStore(dev_trust.repository())
    b = shared()
    store.publish_shared(["oslo", "bergen"], b)
    assert store.publish_shared(["oslo", "bergen"], b) == []
    assert store.publish_shared(["oslo", "bergen", "tromso"], b) == ["tromso"]


def test_a_shared_bundle_must_not_name_a_cluster(dev_trust):
    with pytest.raises(ValueError, match="names no cluster"):
        HubStore(dev_trust.repository()).publish_shared(["oslo"], bundle("oslo", 100))


# --- over the wire -------------------------------------------------------------------------------


async def test_agents_of_two_clusters_receive_and_verify_one_shared_blob(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        store.publish_shared(["oslo", "bergen"], shared(3 * CHUNK + 7))
        for name in ("oslo", "bergen"):
            client = HubClient(address, pki.agent(name), name)
            watch = client.watch()
            try:
                got = await asyncio.wait_for(anext(watch), READ)
                assert got.bundle.bundle == store.current(name).shared.data
                v = await asyncio.to_thread(verifier(tmp_path, DevTrust(tmp_path / "trust").repository(), name).verify_message, got.bundle)
                assert v.bundle.cluster == name and v.digest == store.current(name).shared.digest
            finally:
                await watch.aclose()
                await client.close()
        # the chunk messages were serialised once, for both streams
        assert list(store.current("oslo").shared.wire) == [CHUNK]
        assert len(store.current("oslo").shared.wire[CHUNK]) == 4


async def test_a_small_shared_blob_is_one_chunk_serialised_once_for_every_stream(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        store.publish_shared(["oslo", "bergen"], shared(CHUNK // 2))
        for name in ("oslo", "bergen"):
            async with channel(address, pki.agent(name)) as ch:
                call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(
                    hub_pb2.WatchBundlesRequest(cluster=name, accepts_chunks=True)
                )
                head = await asyncio.wait_for(call.read(), READ)
                chunk = await asyncio.wait_for(call.read(), READ)
                call.cancel()
            assert head.bundle.cluster == name and head.transfer.chunks == 1 and not head.bundle.bundle
            assert bytes(chunk.chunk.data) == store.current(name).shared.data
        assert len(store.current("oslo").shared.wire[CHUNK]) == 1  # one serialised chunk for both streams


async def test_an_agent_without_chunk_support_gets_the_whole_blob_and_a_held_blob_is_not_resent(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        store.publish_shared(["oslo"], shared(1000))
        blob = store.current("oslo").shared
        async with channel(address, pki.agent("oslo")) as ch:
            call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
            whole = await asyncio.wait_for(call.read(), READ)
            call.cancel()
            assert whole.bundle.bundle == blob.data and not whole.HasField("transfer")
            assert sha256_digest(bytes(whole.bundle.bundle)) == whole.bundle.digest
            call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(
                hub_pb2.WatchBundlesRequest(cluster="oslo", accepts_chunks=True, have_blob=blob.digest)
            )
            msg = await asyncio.wait_for(call.read(), READ)
            call.cancel()
            assert msg.transfer.omitted and not msg.bundle.bundle
