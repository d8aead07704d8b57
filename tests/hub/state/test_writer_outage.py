"""A writer hub (``--role both``) whose PostgreSQL stops keeps serving agents from memory, and publishes nothing.

The hub runs in-process on a real PostgreSQL server of this module's own (the test stops it; the session's
server is shared). With the server stopped, every read of the state waits out the pool's timeout
(``skerry.hub.state.postgres.POOL_TIMEOUT``, 30 s): one made on the hub's event loop holds every agent's
stream and fetch for that long. The writer's own loops look at the state during the outage: the trust loop
(ticking every 0.1 s here) and a sync of a commit made during the outage. A new agent connecting to the
writer must still get its current bundle, signed and unexpired, verified from scratch, within its
deadline (well under the pool timeout); once the database is back, the writer releases the commit.

Checked against the code before the fix: the trust loop's re-read of the trust repository and the sync's
release transaction ran on the event loop; the agent's first watch event or fetch missed the deadline.

The writes the writer makes for a caller or after a sync (CI's release signatures, a promotion call's audit
entry, the records a sync leaves for the replicas) wait the same way off the loop, in the same world, and on
the hub's state-write threads (``skerry.hub.state.threads``), not asyncio's default executor: the test's new
agent runs on that default executor (this process's, the hub's), with its default size, so writes that held
it would starve the agent as they would starve the hub's own serving calls that run there (enrollment, trust
files read off the loop). Checked against the code before that fix: with a refused call's audit entry per
default thread waiting out the stopped database, the agent missed its deadline.

A publication refused while the database is away cannot be forgotten at once either (forgetting it reads
the state back): the last test checks that the process, once the database is back, serves the state's
files and not the ones it signed and never committed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as _dt
import os
import pathlib
import shutil
import time

import grpc
import pytest

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.api.v1 import hub_pb2, hub_pb2_grpc, promotion_pb2, promotion_pb2_grpc, trust_pb2, trust_pb2_grpc
from skerry.core.client import secure_channel
from skerry.core.clock import FixedClock
from skerry.core.tls import ROLE_HUB
from skerry.hub.app import HubApp
from skerry.hub.bundles.store import HubStore
from skerry.hub.config import HubConfig
from skerry.hub.replica import RENDER_ERROR_RECORD, Follower
from skerry.hub.state import StateUnavailable
from skerry.hub.state.postgres import PostgresState
from skerry.hub.state.trust_files import TrustFiles
from skerry.hub.trust.keys import load_signer
from skerry.hub.trust.publishing import SERIALIZER
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.writer import Releases, Writer
from tests.devtrust import DevTrust
from tests.hub.state.test_replicas import scale
from tests.hub.state.test_trust_in_state import bundle

CLUSTER = "oslo-prod"
# A new agent's budget for its first watch event and its verification: far below the pool's 30 s timeout.
DEADLINE = 10.0
# How long the writer's loops get to start reading the stopped database before the agent connects.
SETTLE = 0.5
# After the outage: the pool reconnects with a back-off, the next sync releases the commit.
RECOVERY = 90.0
# asyncio's default executor: a ThreadPoolExecutor made without a size has this many threads (Python's rule).
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


def new_agent(address: str, pki, dev_trust, state_dir: pathlib.Path):
    """A new agent of ``CLUSTER``: its first watch event, then a TUF refresh from scratch over TrustService."""
    files = pki.agent(CLUSTER)
    with secure_channel(address, files) as channel:
        watch = hub_pb2_grpc.HubServiceStub(channel).WatchBundles(
            hub_pb2.WatchBundlesRequest(cluster=CLUSTER), timeout=DEADLINE)
        event = next(message for message in watch if message.HasField("bundle"))
        watch.cancel()
    verifier = TufVerifier(CLUSTER, "prod", dev_trust.root, state_dir,
                           lambda: GrpcFetcher(address, files, timeout=DEADLINE))
    return event.bundle.version, verifier.verify_message(event.bundle)


async def writer_hub(fleet_repo, tmp_path, pki, engine, dev_trust, dsn: str) -> HubApp:
    """A started writer hub (``--role both``) on ``dsn``, its trust loop ticking every 0.1 s."""
    hub = await hub_process(fleet_repo, tmp_path, pki, engine, dev_trust, dsn, "hub-a")
    assert hub.store.current(CLUSTER) is not None and hub.writer.is_writer
    return hub


async def hub_process(fleet_repo, tmp_path, pki, engine, dev_trust, dsn: str, hub_id: str) -> HubApp:
    """A started hub process ``hub_id`` (``--role both``: the writer if the lease is free, else a standby)."""
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(dsn + "\n")
    cfg = HubConfig(
        repo=str(fleet_repo.path), interval=3600, trust_refresh=0.1, tls=pki.server("hub", ROLE_HUB),
        listen="127.0.0.1:0", state_dir=tmp_path / f"state-{hub_id}", state="postgresql", state_dsn_file=dsn_file,
        hub_id=hub_id, role="both", trust_dir=dev_trust.dir, release_keys=dev_trust.release_keys,
    )
    hub = HubApp(cfg, engine=engine)
    await hub.start()
    return hub


async def served_within_deadline(hub: HubApp, pki, dev_trust, state_dir: pathlib.Path):
    """A new agent's first event and verification from ``hub``, or the test fails: the hub's event loop did not
    answer, or the agent's calls found no thread of the default executor (the hub's, left to its serving path)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(
            new_agent, f"127.0.0.1:{hub.port}", pki, dev_trust, state_dir), DEADLINE)
    except (TimeoutError, grpc.RpcError) as e:
        pytest.fail(f"a new agent got no verified bundle from the writer within {DEADLINE:.0f}s: {e!r}")


async def test_a_new_agent_gets_its_bundle_from_the_writer_while_its_database_is_stopped(
    fleet_repo, tmp_path, pki, engine, dev_trust, database
):
    server, dsn = database
    hub = await writer_hub(fleet_repo, tmp_path, pki, engine, dev_trust, dsn)
    port = server.port
    try:
        released = hub.store.current(CLUSTER)
        server.stop("fast")
        commit = scale(fleet_repo, 5)  # the writer's next sync builds it; it cannot release it
        hub.syncer.request_sync()
        await asyncio.sleep(SETTLE)
        streamed, verified = await served_within_deadline(hub, pki, dev_trust, tmp_path / "agent")
        assert streamed == released.release
        assert verified is not None and verified.release == released.release
        assert verified.bundle.revision == released.revision != commit
        assert verified.expires > _dt.datetime.now(_dt.UTC)
        assert hub.store.current(CLUSTER) == released  # nothing published while the database was away
    finally:
        server.start(port=port)
    try:
        async with asyncio.timeout(RECOVERY):
            while (current := hub.store.current(CLUSTER)).revision != commit:
                hub.syncer.request_sync()
                await asyncio.sleep(0.5)
        assert current.release > released.release
        with hub.state.read() as tx:
            assert tx.last_release(CLUSTER) == current.release
    finally:
        await hub.stop(grace=0)


async def releases_next(hub: HubApp, fleet_repo, replicas: int) -> str:
    """Commit ``replicas`` to the fleet and ask ``hub`` to sync until it released that commit (the caller
    bounds the wait); the commit."""
    commit = scale(fleet_repo, replicas)
    while hub.store.current(CLUSTER).revision != commit:
        hub.syncer.request_sync()
        await asyncio.sleep(0.5)
    return commit


def called(address: str, files, stub, method: str, request):
    """One unary call on a connection of its own: the response, or the status code it ended with."""
    with secure_channel(address, files) as channel:
        try:
            return getattr(stub(channel), method)(request, timeout=RECOVERY)
        except grpc.RpcError as e:
            return e.code()


async def until_answered(pool, *args):
    """``called(*args)`` on ``pool``'s threads, asked again while it ends UNAVAILABLE or FAILED_PRECONDITION
    (the database is away, or the writer is taking its lease back): one clear status, then a retry."""
    loop = asyncio.get_running_loop()
    while (answer := await loop.run_in_executor(pool, called, *args)) in RETRIED:
        await asyncio.sleep(0.5)
    return answer


RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)


async def test_the_writers_writes_wait_off_its_event_loop_while_its_database_is_stopped(
    fleet_repo, tmp_path, pki, engine, dev_trust, database
):
    """CI's release signatures (SubmitRelease), a promotion call's audit entry (ListEnvironments; and of calls
    refused by the authorisation table, one per default executor thread and more) and what a sync records for the
    replicas (a render error), each started while the writer's PostgreSQL is stopped, wait for it off the event
    loop and off the default executor: a new agent is still served within its deadline. Once the database is
    back, each is done, or ended with one clear status and is done when asked again, and the writer releases a
    new commit (none of its loops died of it). Checked against the code before the fix: the agent missed its
    deadline (the writes ran on the event loop; later, they held every default executor thread)."""
    server, dsn = database
    hub = await writer_hub(fleet_repo, tmp_path, pki, engine, dev_trust, dsn)
    address, ci = f"127.0.0.1:{hub.port}", pki.operator("ci")
    data = b'{"a bundle": "CI signs"}'  # a release CI signs: the next version of the bin that would hold it
    role = hub.trust.proposal_role("prod", CLUSTER, data)
    proposal = hub.trust.release_proposal("prod", CLUSTER, data, "ci-revision")
    proposal.sign(load_signer(dev_trust.dir / "offline" / "release-prod-1.key"))
    submit = (address, ci, trust_pb2_grpc.TrustServiceStub, "SubmitRelease",
              trust_pb2.SubmitReleaseRequest(role=role, metadata=proposal.to_bytes(SERIALIZER)))
    listing = (address, ci, promotion_pb2_grpc.PromotionServiceStub, "ListEnvironments",
               promotion_pb2.ListEnvironmentsRequest())
    refused = (address, pki.agent(CLUSTER), *listing[2:])  # an agent may not: its refusal is audited
    # More refused calls (each answered at once, its audit entry written after): more than the default executor
    # has threads. One identity each: a caller's burst of calls is rate-limited.
    strangers = [(address, pki.agent(f"stranger-{i}"), *listing[2:]) for i in range(DEFAULT_THREADS + 1)]
    client = concurrent.futures.ThreadPoolExecutor(4)  # CI and the refused callers: other processes' threads
    calls: list[asyncio.Future] = []
    port = server.port
    try:
        server.stop("fast")
        try:
            calls += [asyncio.ensure_future(until_answered(client, *submit)),
                      asyncio.ensure_future(until_answered(client, *listing)),
                      asyncio.get_running_loop().run_in_executor(client, called, *refused)]
            hub.store.set_error("oslo-dev", "overlays/dev: does not render", hub.syncer.revision)  # as a render would
            calls.append(asyncio.create_task(hub.syncer.sync_once()))  # the head is built: only what a sync records
            loop = asyncio.get_running_loop()
            stranger_calls = [loop.run_in_executor(client, called, *stranger) for stranger in strangers]
            assert set(await asyncio.gather(*stranger_calls)) == {grpc.StatusCode.PERMISSION_DENIED}
            await asyncio.sleep(SETTLE)
            await served_within_deadline(hub, pki, dev_trust, tmp_path / "agent")
        finally:
            server.start(port=port)
        async with asyncio.timeout(RECOVERY):
            submitted, listed, denied, _ = await asyncio.gather(*calls)
            while not await asyncio.to_thread(audited_refusal, hub.promoter.audit):
                await asyncio.sleep(0.2)
            while not await asyncio.to_thread(recorded_error, hub.state, "oslo-dev"):
                await hub.syncer.sync_once()  # a record the outage refused is written after the next sync
                await asyncio.sleep(0.5)
            await releases_next(hub, fleet_repo, 7)
    except TimeoutError:
        pytest.fail(f"the writer did not finish its writes once its database was back: {calls}")
    finally:
        for call in calls:
            call.cancel()
        client.shutdown(wait=False, cancel_futures=True)
        await hub.stop(grace=0)
    # published (by this call, or by the follower from the signatures a refused call had kept)
    assert hub.trust.md[role].signed == proposal.signed, submitted
    assert [e.name for e in listed.environments] == ["dev", "prod"]
    assert denied == grpc.StatusCode.PERMISSION_DENIED


def audited_refusal(audit) -> bool:
    return any(e["method"] == "ListEnvironments" and e["outcome"] == "denied" for e in audit.entries)


def recorded_error(state, cluster: str) -> bool:
    with state.read() as tx:
        return tx.record(RENDER_ERROR_RECORD, cluster) is not None


# A state read that finds the stopped server gives up after this long (the hub's default is 30 s).
QUICK_POOL_TIMEOUT = 1.0


class Host:
    """One hub process's publishing half on its own connections, with its own copy of the trust directory."""

    def __init__(self, dsn: str, trust_dir: pathlib.Path, holder: str, clock):
        self.state = PostgresState(dsn, pool_timeout=QUICK_POOL_TIMEOUT)
        self.writer = Writer(self.state, holder)
        self.files = TrustFiles(self.state, self.writer)
        self.writer.try_acquire()
        keys = DevTrust(trust_dir).release_keys
        self.repo = TrustRepository.open(trust_dir, clock=clock, release_keys=keys, storage=self.files)
        self.store = HubStore(self.repo, environment_of=lambda cluster: "prod", releases=Releases(self.writer, self.files))


async def test_a_writer_that_could_not_forget_a_refused_publication_serves_the_states_versions_once_back(
    tmp_path, dev_trust, database
):
    # The writer re-signs its timestamp while the database is away: the commit fails, and so does the read
    # that would make it forget what it signed. Another writer then publishes the same version numbers;
    # the first, following the state, must serve the state's files, not the ones it signed and never
    # committed (it used to: a version it already held was never read again, and a new agent of it was
    # refused a snapshot or timestamp that differed from the state's).
    server, dsn = database
    clock = FixedClock(_dt.datetime.now(_dt.UTC))
    for name in ("host-a", "host-b"):
        shutil.copytree(dev_trust.dir, tmp_path / name)
    first = Host(dsn, tmp_path / "host-a", "hub-a", clock)
    first.store.publish(CLUSTER, bundle("c1"))
    follower = Follower(first.state, first.store, first.repo, writer=first.writer)
    first.writer.ttl = 1.0  # the other process need not wait long for it once the database is back
    first.writer.renew()
    port = server.port
    server.stop("fast")
    try:
        clock.advance(13 * 3600)  # the timestamp is past half its lifetime: re-signed at the next refresh
        with pytest.raises(StateUnavailable):
            first.repo.refresh()
    finally:
        server.start(port=port)
    clock.advance(1)  # the other writer's versions differ from the refused ones
    second = await asyncio.to_thread(taken_over, dsn, tmp_path / "host-b", clock)
    assert second.repo.refresh()  # the same version numbers, committed
    with second.state.read() as tx:
        stored = tx.trust_newest()

    async def follows() -> bool:
        try:
            await follower.apply([])
        except StateUnavailable:  # its pool reconnects with a back-off
            return False
        return all(first.repo.held(f"metadata/{'timestamp.json' if role == 'timestamp' else f'{v}.{role}.json'}")
                   == data for role, (v, data) in stored.items())

    try:
        async with asyncio.timeout(RECOVERY):
            while not await follows():
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail("the first writer still serves trust files it signed and never committed, not the state's")


def taken_over(dsn: str, trust_dir: pathlib.Path, clock) -> Host:
    """Another process that waits for the first one's lease to run out and takes it."""
    host = Host(dsn, trust_dir, "hub-b", clock)
    deadline = time.monotonic() + RECOVERY
    while not (host.writer.is_writer or host.writer.try_acquire()):
        assert time.monotonic() < deadline, "the first writer's lease never ran out"
        time.sleep(0.2)
    return host
