"""A hub replica's cap on the agent streams it holds, over real mTLS on loopback (issue 14).

Past its cap (``--max-streams``; by default its open-file limit less a reserve) a replica refuses a new
stream at once with RESOURCE_EXHAUSTED, reason ``ReplicaFull``, and keeps serving the streams it holds;
an agent with another hub address goes there without waiting, one with a single address waits the
pushback and asks again. Agents' sleeps are injected: nothing here waits for real. The cap counts one
connection per agent: its signed reports share its watch's connection (counted in the kernel's table).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from skerry.agent.attest import ReportSigner
from skerry.agent.reconcile.model import Condition, ReconcileResult
from skerry.agent.stream import HubClient
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.client import Endpoints
from skerry.core.pushback import PUSHBACK_METADATA, REPLICA_FULL
from skerry.core.rpc import REASON_METADATA
from skerry.hub.admission import FULL_PUSHBACK_SECONDS, AdmissionGate

from .hubs import READ, bare_hub, bundle, channel, running_hub

CLUSTERS = ("oslo", "bergen", "tromso")


async def until(predicate, what: str, timeout: float = READ) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"no {what} within {timeout:g}s"
        await asyncio.sleep(0.02)


def watch(ch: grpc.aio.Channel, cluster: str):
    return hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster=cluster))


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(call.read(), READ)
    return err.value


def publish(store, clusters=CLUSTERS, tag: str = "") -> None:
    store.declare(CLUSTERS)
    for cluster in clusters:
        store.publish(cluster, bundle(cluster, 100, tag))


async def test_a_full_replica_refuses_the_next_stream_keeps_serving_its_own_and_admits_once_one_closes(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, servicer, _, address):
        servicer.admission = gate = AdmissionGate(max_streams=2)
        publish(store)
        async with channel(address, pki.agent("oslo")) as a, channel(address, pki.agent("bergen")) as b, \
                channel(address, pki.agent("tromso")) as c:
            oslo, bergen = watch(a, "oslo"), watch(b, "bergen")
            first = {w: (await asyncio.wait_for(w.read(), READ)).bundle.version for w in (oslo, bergen)}

            err = await refused(watch(c, "tromso"))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = dict(err.trailing_metadata())
            assert trailers[REASON_METADATA] == REPLICA_FULL
            assert FULL_PUSHBACK_SECONDS / 2 * 1000 <= int(trailers[PUSHBACK_METADATA]) <= FULL_PUSHBACK_SECONDS * 1000
            assert (gate.full, len(servicer.streams)) == (1, 2)

            publish(store, ("oslo", "bergen"), tag="2")  # the two it holds are still served
            for w in (oslo, bergen):
                assert (await asyncio.wait_for(w.read(), READ)).bundle.version > first[w]

            oslo.cancel()
            await until(lambda: len(servicer.streams) == 1, "closed stream")
            got = await asyncio.wait_for(watch(c, "tromso").read(), READ)
            assert got.bundle.cluster == "tromso" and len(servicer.streams) == 2


async def test_at_the_cap_an_agents_newer_watch_replaces_its_own_instead_of_being_refused(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, servicer, _, address):
        servicer.admission = AdmissionGate(max_streams=1)
        publish(store)
        async with channel(address, pki.agent("oslo")) as a, channel(address, pki.agent("oslo")) as again:
            old = watch(a, "oslo")
            await asyncio.wait_for(old.read(), READ)
            newer = watch(again, "oslo")  # reconnecting before the hub noticed its old connection died
            assert (await asyncio.wait_for(newer.read(), READ)).bundle.cluster == "oslo"
            err = await refused(old)
            assert err.code() == grpc.StatusCode.UNAVAILABLE and "superseded" in err.details()
            assert len(servicer.streams) == 1


@contextlib.asynccontextmanager
async def watching(client: HubClient):
    """The client's watch; afterwards it is closed, and the client's channel with it."""
    events = client.watch()
    try:
        yield events
    finally:
        await events.aclose()
        await client.close()


@contextlib.asynccontextmanager
async def full_replica(pki, tmp_path):
    """``(servicer, address)``: a replica holding all it may (one stream, bergen's)."""
    async with bare_hub(pki, tmp_path) as (store, servicer, _, address):
        servicer.admission = AdmissionGate(max_streams=1, rng=lambda: 0.5)
        publish(store)
        async with channel(address, pki.agent("bergen")) as ch:
            holder = watch(ch, "bergen")
            await asyncio.wait_for(holder.read(), READ)
            yield servicer, address, holder


async def test_an_agent_refused_by_a_full_replica_goes_to_its_next_address_at_once(pki, tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with full_replica(pki, tmp_path / "full") as (full, full_address, _), \
            bare_hub(pki, tmp_path / "room") as (store, room, _, room_address):
        publish(store)
        endpoints = Endpoints([full_address, room_address], what="hub", rng=lambda: 0.0)  # the full one first
        client = HubClient(endpoints, pki.agent("oslo"), "oslo", sleep=sleep, rng=lambda: 0.75)
        async with watching(client) as events:
            got = await asyncio.wait_for(anext(events), READ)
    assert got.bundle.cluster == "oslo" and client.address == room_address
    assert sleeps == [0.0]  # not the full replica's pushback
    assert full.admission.full == 1 and client.reconnects == 1


async def test_after_losing_a_replica_an_agent_waits_its_spread_once_not_again_at_a_full_one(pki, tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with bare_hub(pki, tmp_path / "lost") as (lost_store, lost, lost_server, lost_address), \
            full_replica(pki, tmp_path / "full") as (_, full_address, _), \
            bare_hub(pki, tmp_path / "room") as (room_store, _, _, room_address):
        lost.admission = AdmissionGate(rate=0.05, burst=10)  # its fleet of three comes back over 60 s
        publish(lost_store)
        publish(room_store)
        # the lost replica first, then the full one, then the one with room
        picks = iter([0.0, 0.0, 0.9])
        endpoints = Endpoints([lost_address, full_address, room_address], what="hub", rng=lambda: next(picks))
        client = HubClient(endpoints, pki.agent("oslo"), "oslo", sleep=sleep, rng=lambda: 0.75)
        async with watching(client) as events:
            await asyncio.wait_for(anext(events), READ)
            assert client.spread == pytest.approx(60.0)
            await lost_server.stop(0)
            got = await asyncio.wait_for(anext(events), READ)
    assert got.bundle.cluster == "oslo" and client.address == room_address
    # 0.75 of the lost replica's share of its window (60 s over 3 x 2), then straight on past the full one
    assert sleeps == [pytest.approx(7.5), 0.0]


async def test_with_one_address_an_agent_refused_as_full_waits_the_pushback_and_asks_the_same_hub(pki, tmp_path):
    async with full_replica(pki, tmp_path) as (servicer, address, holder):
        sleeps: list[float] = []
        reasons: list[str] = []

        async def sleep(seconds: float) -> None:  # while the agent waits, the replica gains room
            sleeps.append(seconds)
            reasons.append(client.last_error.reason)
            holder.cancel()
            await until(lambda: len(servicer.streams) == 0, "closed stream")

        client = HubClient(address, pki.agent("oslo"), "oslo", sleep=sleep)
        async with watching(client) as events:
            got = await asyncio.wait_for(anext(events), READ)
    assert got.bundle.cluster == "oslo" and client.address == address
    assert sleeps == [pytest.approx(FULL_PUSHBACK_SECONDS * 0.75)]  # the pushback (rng 0.5: 3/4 of it), exactly
    assert reasons == [REPLICA_FULL]  # what the agent says of its hub while it waits
    assert servicer.admission.full == 1


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=READ) as resp:
        text = resp.read().decode()
    return {(s.name, s.labels.get("reason", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_hub_holds_at_most_its_max_streams_and_counts_and_shows_the_refusals(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "hub", pki, engine, max_streams=1,
                           metrics_listen="127.0.0.1:0") as hub:
        address, port = f"127.0.0.1:{hub.port}", hub.ops.ops_server.port
        async with channel(address, pki.agent("oslo-dev")) as a, channel(address, pki.agent("bergen-dev")) as b:
            held = watch(a, "oslo-dev")
            await asyncio.wait_for(held.read(), READ)
            err = await refused(watch(b, "bergen-dev"))
            assert dict(err.trailing_metadata())[REASON_METADATA] == REPLICA_FULL
            metrics = scrape(port)
    assert metrics[("skerry_hub_streams_max", "")] == 1 and metrics[("skerry_hub_streams_open", "")] == 1
    assert metrics[("skerry_refusals_total", REPLICA_FULL)] == 1


def established(port: int) -> int:
    """TCP connections established to ``port`` on this host (the server's side), from the kernel's tables."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):  # gRPC listens on dual-stack sockets
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01"  # 01: ESTABLISHED
    return count


async def test_an_agents_signed_reports_go_over_its_watchs_connection(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "hub", pki, engine) as hub:
        files = pki.agent("oslo-dev")
        client = HubClient(f"127.0.0.1:{hub.port}", files, "oslo-dev")
        signer = ReportSigner(client.endpoints, files, channel=client.channel)
        try:
            async with watching(client) as events:
                got = (await asyncio.wait_for(anext(events), READ)).bundle
                result = ReconcileResult(cluster="oslo-dev", release=got.version, digest=got.digest, revision="",
                                         conditions=(Condition("Ready", "True", "Healthy"),), number=got.number)
                await asyncio.wait_for(signer.send(result, 1), READ)
                assert hub.attestations.latest("oslo-dev") is not None  # the report arrived
                assert established(hub.port) == 1
        finally:
            await signer.close()
