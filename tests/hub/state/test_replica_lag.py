"""A serving replica behind the writer never hands an agent something older than the agent holds.

Real parts: the hub state (SQLite and PostgreSQL), a writer publishing through its fenced lease, a
replica with its own connections, trust repository, store and real ``Follower`` (held behind by not
running its poll: the test makes it look at the change log when it wants, as its loop would), the
real servicers behind the real gRPC server with mutual TLS, and the real agent's watch client and TUF
verifier. The bound each wait may take is a parameter (``CatchUp(seconds=...)``): nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import grpc
import pytest

from skerry.agent.stream import HubClient
from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.api.v1 import hub_pb2, hub_pb2_grpc, trust_pb2, trust_pb2_grpc
from skerry.core.bundle import Bundle
from skerry.core.client import Endpoints
from skerry.core.errors import Unavailable, VerificationError
from skerry.core.pushback import BEHIND_REASON
from skerry.core.rpc import CHANNEL_OPTIONS, REASON_METADATA, GrpcServer
from skerry.core.tls import ROLE_HUB, channel_credentials, server_credentials
from skerry.hub.authz import hub_rules
from skerry.hub.bundles.store import HubStore
from skerry.hub.catchup import CatchUp
from skerry.hub.promotion_policy import PromotionPolicy
from skerry.hub.replica import Follower, StoredFleet
from skerry.hub.servicer import SERVICE_NAME, HubServicer
from skerry.hub.state import open_state
from skerry.hub.state.feed import ChangeFeed
from skerry.hub.state.trust_files import TrustFiles
from skerry.hub.status import StatusBoard
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.trust.servicer import SERVICE_NAME as TRUST_SERVICE
from skerry.hub.trust.servicer import TrustServicer
from skerry.hub.writer import Releases, Writer
from tests.trust.fetchers import RepositoryFetcher

CLUSTER = "lag-prod"
OTHER = "lag-prod-2"  # another cluster of the environment: its releases move the timestamp, not CLUSTER's
READ = 20.0  # the longest a read that must succeed may take on a loaded machine
LONG = 30.0  # a catch-up bound no test reaches: the follower is made to look first
SHORT = 0.3  # a catch-up bound the tests wait out
NOTHING_YET = 0.3  # how long a stream held for a catch-up is watched to send nothing


def bundle(cluster: str, revision: str) -> Bundle:
    return Bundle(cluster=cluster, revision=revision, source_url="/srv/fleet", paths=("overlays/prod",),
                  engine="kustomize", engine_version="v5.5.0",
                  objects=({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"},
                            "data": {"n": revision}},))


class WriterHub:
    """The writer's publishing half: it holds the lease and commits each release to the state."""

    def __init__(self, backend, dev_trust):
        self.state = backend.open()
        self.writer = Writer(self.state, "hub-a")
        self.writer.try_acquire()
        files = TrustFiles(self.state, self.writer)
        self.repo = TrustRepository.open(dev_trust.dir, release_keys=dev_trust.release_keys, storage=files)
        self.store = HubStore(self.repo, environment_of=lambda cluster: "prod", releases=Releases(self.writer, files))

    def publish(self, cluster: str, revision: str):
        return self.store.publish(cluster, bundle(cluster, revision))


class Replica:
    """A serving replica (no keys): its own copy, followed by a real ``Follower`` whose looks the test makes."""

    def __init__(self, backend, tmp_path, catch_up: CatchUp):
        self.state = backend.open()
        files = TrustFiles(self.state)
        self.repo = TrustRepository(tmp_path / "no-trust-dir", storage=files, online={})
        self.store = HubStore(self.repo)
        self.feed = ChangeFeed(self.state)
        self.follower = Follower(self.state, self.store, self.repo, blob=files.blob, catch_up=catch_up)
        self.hub = HubServicer(self.store, StatusBoard(), StoredFleet(), catch_up=catch_up)
        self.trust = TrustServicer(self.repo, self.store, None, lambda cluster: "prod", catch_up=catch_up)

    async def look(self) -> None:
        """One look at the change log, as the follower's loop makes after each wake-up."""
        await self.follower.apply(await asyncio.to_thread(self.feed.poll))


@contextlib.asynccontextmanager
async def serving(replica: Replica, pki):
    server = GrpcServer(
        "127.0.0.1:0", server_credentials(pki.server("hub", ROLE_HUB)),
        register=[lambda s: hub_pb2_grpc.add_HubServiceServicer_to_server(replica.hub, s),
                  lambda s: trust_pb2_grpc.add_TrustServiceServicer_to_server(replica.trust, s)],
        service_names=[SERVICE_NAME, TRUST_SERVICE], rules=hub_rules(PromotionPolicy),
    )
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def replica_of(backend, tmp_path, pki, seconds: float):
    """A replica caught up with the state as it is now, serving; more of the writer's commits wait for a look."""
    replica = Replica(backend, tmp_path / "replica", CatchUp(seconds=seconds))
    await replica.follower.reload()
    async with serving(replica, pki) as address:
        yield replica, address


@contextlib.asynccontextmanager
async def stub(address: str, pki, service=hub_pb2_grpc.HubServiceStub):
    async with grpc.aio.secure_channel(address, channel_credentials(pki.agent(CLUSTER)), options=CHANNEL_OPTIONS) as ch:
        yield service(ch)


def agent(dev_trust, tmp_path, fetcher) -> tuple[TufVerifier, dict]:
    """The agent's verifier, and where it fetches from (``source["fetcher"]``, changed by the test)."""
    source = {"fetcher": fetcher}
    return TufVerifier(CLUSTER, "prod", dev_trust.root, tmp_path / "agent", lambda: source["fetcher"]()), source


def in_process(repo: TrustRepository):
    return lambda: RepositoryFetcher(repo, [])


def over_grpc(address: str, pki):
    return lambda: GrpcFetcher(address, pki.agent(CLUSTER))


async def test_an_agent_ahead_of_the_replica_is_sent_nothing_older_and_the_newest_once_it_caught_up(
    backend, dev_trust, tmp_path, pki
):
    writer = WriterHub(backend, dev_trust)
    first = writer.publish(CLUSTER, "c1")
    async with replica_of(backend, tmp_path, pki, LONG) as (replica, address), stub(address, pki) as hub:
        held = writer.publish(CLUSTER, "c2")  # the agent verified it on the writer; this replica did not look yet
        verifier, source = agent(dev_trust, tmp_path, in_process(writer.repo))
        assert (await asyncio.to_thread(verifier.update)).release == held.release
        newest = writer.publish(CLUSTER, "c3")
        assert replica.store.current(CLUSTER).release == first.release < held.release

        call = hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster=CLUSTER, last_version=held.release,
                                                            last_digest=held.digest, accepts_chunks=True))
        read = asyncio.ensure_future(call.read())
        done, _ = await asyncio.wait({read}, timeout=NOTHING_YET)
        assert not done, "the replica sent a release older than the agent's"

        await replica.look()
        event = (await asyncio.wait_for(read, READ)).bundle
        assert (event.version, event.digest) == (newest.release, newest.digest)
        source["fetcher"] = over_grpc(address, pki)  # and the metadata it fetches from this replica verifies
        verified = await asyncio.to_thread(verifier.update)
        assert (verified.release, verified.digest) == (newest.release, newest.digest)
        call.cancel()


async def test_a_replica_that_does_not_catch_up_in_the_bound_ends_the_watch_as_behind(backend, dev_trust, tmp_path, pki):
    writer = WriterHub(backend, dev_trust)
    writer.publish(CLUSTER, "c1")
    async with replica_of(backend, tmp_path, pki, SHORT) as (replica, address), stub(address, pki) as hub:
        held = writer.publish(CLUSTER, "c2")
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster=CLUSTER, last_version=held.release,
                                                            last_digest=held.digest))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), READ)  # no bundle came first: the refusal is the first message
        assert loop.time() - started >= SHORT
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(refused.value.trailing_metadata())[REASON_METADATA] == BEHIND_REASON

        await replica.look()  # caught up: the same request is served (nothing to send: it holds the newest)
        call = hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster=CLUSTER, last_version=held.release,
                                                            last_digest=held.digest))
        newer = writer.publish(CLUSTER, "c3")
        await replica.look()
        event = (await asyncio.wait_for(call.read(), READ)).bundle
        assert (event.version, event.digest) == (newer.release, newer.digest)
        call.cancel()


async def test_metadata_older_than_the_agent_trusts_is_not_served_until_the_replica_caught_up(
    backend, dev_trust, tmp_path, pki
):
    writer = WriterHub(backend, dev_trust)
    held = writer.publish(CLUSTER, "c1")
    async with replica_of(backend, tmp_path, pki, LONG) as (replica, address):
        writer.publish(OTHER, "c1")  # a newer timestamp; the cluster's own release is the same
        verifier, source = agent(dev_trust, tmp_path, in_process(writer.repo))
        assert (await asyncio.to_thread(verifier.update)).release == held.release
        assert replica.store.current(CLUSTER).release == held.release  # the watch has nothing to wait for

        source["fetcher"] = over_grpc(address, pki)
        refresh = asyncio.ensure_future(asyncio.to_thread(verifier.update))
        done, _ = await asyncio.wait({refresh}, timeout=NOTHING_YET)
        assert not done, "the replica served metadata older than the agent trusts"
        await replica.look()
        assert await asyncio.wait_for(refresh, READ) is None  # verified: the release it already applied
        assert verifier.last_release == held.release


async def test_a_replica_whose_metadata_stays_behind_refuses_the_fetch_and_the_agent_keeps_its_trust(
    backend, dev_trust, tmp_path, pki
):
    writer = WriterHub(backend, dev_trust)
    held = writer.publish(CLUSTER, "c1")
    async with replica_of(backend, tmp_path, pki, SHORT) as (replica, address):
        writer.publish(OTHER, "c1")
        verifier, source = agent(dev_trust, tmp_path, in_process(writer.repo))
        await asyncio.to_thread(verifier.update)
        trusted = writer.repo.md["timestamp"].signed.version
        async with stub(address, pki, trust_pb2_grpc.TrustServiceStub) as trust:
            call = trust.Fetch(trust_pb2.FetchRequest(path="metadata/timestamp.json", trusted_timestamp=trusted))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(call.read(), READ)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(refused.value.trailing_metadata())[REASON_METADATA] == BEHIND_REASON

        source["fetcher"] = over_grpc(address, pki)
        with pytest.raises(Unavailable) as failed:  # the hub is unavailable to it, not an attack
            await asyncio.to_thread(verifier.update)
        assert not isinstance(failed.value, VerificationError)
        await replica.look()
        assert await asyncio.to_thread(verifier.update) is None and verifier.last_release == held.release


async def test_the_agent_sent_on_by_a_replica_behind_watches_another_within_its_backoff(
    backend, dev_trust, tmp_path, pki
):
    writer = WriterHub(backend, dev_trust)
    writer.publish(CLUSTER, "c1")
    behind = Replica(backend, tmp_path / "behind", CatchUp(seconds=SHORT))
    await behind.follower.reload()
    held = writer.publish(CLUSTER, "c2")
    current = Replica(backend, tmp_path / "current", CatchUp(seconds=SHORT))
    await current.follower.reload()
    waits: list[tuple[float, str]] = []

    async def sleep(seconds: float) -> None:  # the agent's reconnect wait, recorded instead of slept
        waits.append((seconds, client.last_error.reason))

    async with serving(behind, pki) as b, serving(current, pki) as c:
        hubs = Endpoints(f"{b},{c}", what="hub", rng=lambda: 0.0)  # the first address first
        client = HubClient(hubs, pki.agent(CLUSTER), CLUSTER, sleep=sleep, rng=lambda: 0.75)
        client.spread = 40.0  # as the hub it watched before advertised: a lost hub's agents would wait over it
        watching = client.watch(position=lambda: (held.release, held.digest))
        try:
            newer = writer.publish(CLUSTER, "c3")
            await current.look()
            event = (await asyncio.wait_for(anext(watching), READ)).bundle
            assert (event.version, event.digest) == (newer.release, newer.digest)  # never c1, from either
            assert client.address == c
            # one refusal, then the other replica at once: 0.75 of the 0.5 s backoff, not of the 20 s a lost
            # replica's share of the 40 s spread would be
            assert waits == [(pytest.approx(0.375), BEHIND_REASON)]
        finally:
            await watching.aclose()
            await client.close()


class SqliteFile:
    """Opens handles on one SQLite hub state file, as the hub processes on it would (closed by ``close_all``)."""

    def __init__(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.opened = directory, []

    def open(self):
        self.opened.append(open_state(f"sqlite:///{self.dir / 'hub.db'}", state_dir=self.dir))
        return self.opened[-1]

    def close_all(self) -> None:
        for state in self.opened:
            state.close()


async def test_a_hub_restored_from_an_older_backup_refuses_an_agent_ahead_of_it_within_the_bound(
    dev_trust, tmp_path, pki
):
    live, backup = SqliteFile(tmp_path / "live"), SqliteFile(tmp_path / "backup")
    try:
        writer = WriterHub(live, dev_trust)
        writer.publish(CLUSTER, "c1")
        with contextlib.closing(sqlite3.connect(live.dir / "hub.db")) as source, \
                contextlib.closing(sqlite3.connect(backup.dir / "hub.db")) as copy:
            source.backup(copy)  # the backup an operator restores later
        held = writer.publish(CLUSTER, "c2")
        verifier, source = agent(dev_trust, tmp_path, in_process(writer.repo))
        assert (await asyncio.to_thread(verifier.update)).release == held.release

        async with replica_of(backup, tmp_path / "restored", pki, SHORT) as (_, address), stub(address, pki) as hub:
            call = hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster=CLUSTER, last_version=held.release,
                                                                last_digest=held.digest))
            with pytest.raises(grpc.aio.AioRpcError) as refused:  # not c1, and not a stream held open for ever
                await asyncio.wait_for(call.read(), READ)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert dict(refused.value.trailing_metadata())[REASON_METADATA] == BEHIND_REASON

            source["fetcher"] = over_grpc(address, pki)
            with pytest.raises(Unavailable) as failed:
                await asyncio.to_thread(verifier.update)
            assert not isinstance(failed.value, VerificationError)
            assert verifier.last_release == held.release  # it keeps what it holds
    finally:
        live.close_all()
        backup.close_all()
