"""Reconnect storms over real mTLS on loopback: the hub's stream admission answers RESOURCE_EXHAUSTED with gRPC's
pushback, the agent waits it out on the same hub, and after losing a stream waits over the spread the hub
advertised. Clocks and sleeps are injected: nothing here waits for real."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from skerry.agent.stream import HubClient
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.errors import Unavailable
from skerry.core.pushback import PUSHBACK_METADATA
from skerry.core.rpc import REASON_METADATA, server_options
from skerry.hub.admission import REASON, AdmissionGate

from .hubs import READ, bare_hub, bundle, channel


async def test_an_over_budget_stream_gets_a_pushback_and_the_agent_waits_at_least_that_long(pki, tmp_path):
    now = [0.0]  # the hub's admission clock: only the agent's waits move it
    gate = AdmissionGate(rate=1.0, burst=1, clock=lambda: now[0], rng=lambda: 0.5)
    async with bare_hub(pki, tmp_path) as (store, servicer, _, address):
        servicer.admission = gate
        store.publish("oslo", bundle("oslo", 100))
        store.publish("bergen", bundle("bergen", 100))
        first = HubClient(address, pki.agent("oslo"), "oslo")
        watching = first.watch()
        try:
            await asyncio.wait_for(anext(watching), READ)  # the burst: admitted
            assert first.spread == pytest.approx(2.0)  # the fleet (oslo, bergen) at one a second
            async with channel(address, pki.agent("bergen")) as ch:
                call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="bergen"))
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await asyncio.wait_for(call.read(), READ)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = dict(err.value.trailing_metadata())
            assert trailers[REASON_METADATA] == REASON
            assert trailers[PUSHBACK_METADATA] == "2500"  # behind the next token (1 s), its own slot (1 s), jitter

            sleeps: list[float] = []

            async def sleep(seconds: float) -> None:  # the agent's wait, moving the hub's clock instead of sleeping
                sleeps.append(seconds)
                now[0] += seconds

            second = HubClient(address, pki.agent("bergen"), "bergen", sleep=sleep, rng=lambda: 0.0)
            watch2 = second.watch()
            try:
                got = await asyncio.wait_for(anext(watch2), READ)
                assert got.bundle.cluster == "bergen"
                # refused once (next in the queue: 3.5 s), waited exactly that, then admitted on the same hub
                assert sleeps == [pytest.approx(3.5)]
                assert second.reconnects == 1 and second.address == address
                assert (gate.admitted, gate.refused) == (2, 2)
            finally:
                await watch2.aclose()
                await second.close()
        finally:
            await watching.aclose()
            await first.close()


async def test_after_losing_its_hub_the_agent_waits_over_the_spread_the_hub_advertised(pki, tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        raise asyncio.CancelledError  # one wait is all this test needs

    async with bare_hub(pki, tmp_path) as (store, servicer, server, address):
        servicer.admission = AdmissionGate(rate=0.05, burst=10)  # a fleet of two: come back over 40 s
        store.publish("oslo", bundle("oslo", 100))
        client = HubClient(address, pki.agent("oslo"), "oslo", sleep=sleep, rng=lambda: 0.75)
        watching = client.watch()
        await asyncio.wait_for(anext(watching), READ)
        assert client.spread == pytest.approx(40.0)
        await server.stop(0)  # the hub is gone
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(anext(watching), READ)
        await client.close()
    assert isinstance(client.last_error, Unavailable)
    assert sleeps == [pytest.approx(30.0)]  # 0.75 of the 40 s window, not of the 0.5 s backoff



async def test_a_connection_retired_at_its_maximum_age_resumes_within_the_backoff_not_the_spread(pki, tmp_path):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        raise asyncio.CancelledError

    # retired after 0.5 s (+-10 %) and as much grace: the one real wait here, about a second
    async with bare_hub(pki, tmp_path, options=server_options(max_connection_age=0.5)) as (store, servicer, _, address):
        servicer.admission = AdmissionGate(rate=0.05, burst=10)  # a 40 s spread, were the hub lost
        store.publish("oslo", bundle("oslo", 100))
        client = HubClient(address, pki.agent("oslo"), "oslo", sleep=sleep, rng=lambda: 0.75)
        watching = client.watch()
        await asyncio.wait_for(anext(watching), READ)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(anext(watching), READ)
        await client.close()
    assert "max connection age" in str(client.last_error)
    assert sleeps == [pytest.approx(0.375)]  # 0.75 of the 0.5 s backoff
