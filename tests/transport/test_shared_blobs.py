"""Shared blobs: one bundle for many clusters, stored and hashed once, directed per cluster in one pass,
and sent on every stream as the same serialised chunks; each agent verifies it against its own director
entry and the release target it names (the bytes only stand in for the download when they match)."""

from __future__ import annotations

import asyncio

import pytest
from devtrust import DevTrust

from skerry.agent.stream import MAX_PUSHED_FILES, HubClient
from skerry.agent.trust import TufVerifier
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.bundle import SHARED_CLUSTER
from skerry.core.canonical import sha256_digest
from skerry.hub.bundles.store import HubStore
from skerry.hub.servicer import metadata_event
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


class CountingFetcher(RepositoryFetcher):
    def __init__(self, repo, fetched: list[str]):
        super().__init__(repo)
        self.fetched = fetched

    def _fetch(self, url: str):
        self.fetched.append(url)
        return super()._fetch(url)


async def test_the_metadata_pushed_before_a_bundle_event_reaches_the_verifier_which_then_fetches_nothing(pki, tmp_path):
    async with bare_hub(pki, tmp_path, push=True) as (store, _, _, address):
        repo = DevTrust(tmp_path / "trust").repository()
        fetched: list[str] = []
        agent = TufVerifier("oslo", "default", tmp_path / "trust" / "root.json", tmp_path / "agent-oslo",
                            lambda: CountingFetcher(repo, fetched))
        client = HubClient(address, pki.agent("oslo"), "oslo")
        watch = client.watch()
        try:
            store.publish_shared(["oslo"], shared(CHUNK + 5, "1"))
            first = await asyncio.wait_for(anext(watch), READ)
            assert {f.path for f in first.bundle.metadata} >= {"timestamp.json"}
            assert first.bundle.root_version == repo.root.version
            await asyncio.to_thread(agent.verify_message, first.bundle)
            store.publish_shared(["oslo"], shared(CHUNK + 5, "2"))
            second = await asyncio.wait_for(anext(watch), READ)
            fetched.clear()
            v = await asyncio.to_thread(agent.verify_message, second.bundle)
            assert v is not None and v.digest == store.current("oslo").digest
            assert fetched == []  # every file of the refresh and the blob came with the event
        finally:
            await watch.aclose()
            await client.close()


async def test_more_pushed_metadata_than_the_agent_takes_is_a_transfer_fault(pki, tmp_path):
    def flood(cluster: str):
        return tuple(metadata_event(f"{i}.snapshot.json", b"{}") for i in range(MAX_PUSHED_FILES + 1)), 1

    async with bare_hub(pki, tmp_path, push=flood) as (store, _, _, address):
        store.publish_shared(["oslo"], shared(100))
        client = HubClient(address, pki.agent("oslo"), "oslo", sleep=lambda _: asyncio.sleep(3600))
        task = asyncio.create_task(anext(client.watch()))
        try:
            async with asyncio.timeout(READ):
                while client.last_error is None:
                    await asyncio.sleep(0.05)
            assert client.last_error.reason == "EndlessData" and not task.done()
        finally:
            task.cancel()
            await client.close()
