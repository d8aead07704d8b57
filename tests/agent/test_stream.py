"""HubClient: the bundle watch over mTLS, reconnect with full-jitter backoff, status reports."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from skerry.agent.stream import HubClient
from skerry.api.v1 import bundle_pb2, hub_pb2
from skerry.core import tls
from skerry.core.backoff import full_jitter
from skerry.core.errors import DeadlineExceeded, Unavailable

from .fakes import FakeHub
from .helpers import CLUSTER


def test_full_jitter_stays_within_the_exponential_envelope_and_the_cap():
    assert full_jitter(0, base=0.5, cap=30, rng=lambda: 0.999) < 0.5
    assert full_jitter(3, base=0.5, cap=30, rng=lambda: 0.999) == pytest.approx(4 * 0.999)
    assert full_jitter(50, base=0.5, cap=30, rng=lambda: 1.0) == 30
    assert full_jitter(5, base=0.5, cap=30, rng=lambda: 0.0) == 0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_watch_yields_bundles_and_identifies_as_the_agent(pki, bundles):
    async def scenario():
        hub = await FakeHub(pki).start()
        client = HubClient(hub.address, pki.agent(CLUSTER), CLUSTER)
        watch = client.watch(0, "")
        try:
            await hub.send(hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([])))
            first = await anext(watch)
            assert first.bundle.version == 1
            assert hub.requests[0].cluster == CLUSTER
            assert hub.peers[0].name == CLUSTER and hub.peers[0].has_role(tls.ROLE_AGENT)
            assert client.connected
        finally:
            await watch.aclose()
            await client.close()
            await hub.stop()

    run(scenario())


def test_watch_reconnects_after_the_hub_restarts_and_sends_the_current_position(pki, bundles):
    async def scenario():
        sleeps: list[float] = []

        async def fast_sleep(s):
            sleeps.append(s)
            await asyncio.sleep(0.05)

        hub = await FakeHub(pki).start()
        hub2 = FakeHub(pki, port=hub.port)
        position = [(0, "")]
        client = HubClient(hub.address, pki.agent(CLUSTER), CLUSTER, sleep=fast_sleep, rng=lambda: 0.5)
        watch = client.watch(position=lambda: position[0])
        try:
            await hub.send(hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([])))
            first = await anext(watch)
            position[0] = (first.bundle.version, first.bundle.digest)
            await hub.stop()
            await hub2.start()
            await hub2.send(hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([])))
            second = await anext(watch)
            assert second.bundle.version == 2
            assert hub2.requests[-1].last_version == 1
            assert hub2.requests[-1].last_digest == first.bundle.digest
            assert sleeps and client.reconnects >= 1
        finally:
            await watch.aclose()
            await client.close()
            await hub.stop()
            await hub2.stop()

    run(scenario())


def test_watch_keeps_retrying_with_backoff_while_the_hub_is_down(pki):
    async def scenario():
        sleeps: list[float] = []

        async def record(s):
            sleeps.append(s)
            if len(sleeps) >= 4:
                raise asyncio.CancelledError

        client = HubClient(
            "127.0.0.1:1",
            pki.agent(CLUSTER),
            CLUSTER,
            sleep=record,
            rng=lambda: 1.0,
            backoff_base=1,
            backoff_cap=5,
        )
        with pytest.raises(asyncio.CancelledError):
            async for _ in client.watch():
                pass
        assert sleeps == [1, 2, 4, 5]
        assert isinstance(client.last_error, Unavailable)
        assert "127.0.0.1:1" in str(client.last_error)
        await client.close()

    run(scenario())


def test_report_delivers_the_status_and_unreachable_hub_is_unavailable(pki):
    async def scenario():
        hub = await FakeHub(pki).start()
        client = HubClient(hub.address, pki.agent(CLUSTER), CLUSTER)
        try:
            await client.report(hub_pb2.ClusterStatus(cluster=CLUSTER, applied_version=3))
            assert hub.reports[0].applied_version == 3
        finally:
            await client.close()
            await hub.stop()
        dead = HubClient("127.0.0.1:1", pki.agent(CLUSTER), CLUSTER, rpc_timeout=2)
        with pytest.raises(Unavailable, match="hub 127.0.0.1:1"):
            await dead.report(hub_pb2.ClusterStatus(cluster=CLUSTER))
        await dead.close()

    run(scenario())


def test_a_report_whose_connection_is_replaced_in_flight_fails_as_unavailable_not_as_a_cancellation(pki):
    """The watch closes the channel when it moves to another hub; gRPC then cancels the report in flight.
    That cancellation must reach the reporter as a failed report it retries, not end its task."""

    async def scenario():
        hub = await FakeHub(pki).start()
        hub.answer_reports.clear()
        client = HubClient(hub.address, pki.agent(CLUSTER), CLUSTER, rpc_timeout=20)
        try:
            sending = asyncio.ensure_future(client.report(hub_pb2.ClusterStatus(cluster=CLUSTER)))
            await hub.wait_for(lambda: hub.reports)
            client.reload_credentials()  # closes the channel under the call, as a move to another hub does
            with pytest.raises(Unavailable, match="cut off"):
                await sending
        finally:
            hub.answer_reports.set()
            await client.close()
            await hub.stop()

    run(scenario())


def test_unreadable_tls_files_fail_fast_naming_the_file(tmp_path):
    from skerry.core.errors import ConfigError

    files = tls.TlsFiles(ca=tmp_path / "ca.crt", cert=tmp_path / "a.crt", key=tmp_path / "a.key")
    with pytest.raises(ConfigError, match="ca.crt"):
        HubClient("127.0.0.1:1", files, CLUSTER)


# --- chunk assembly, one loop step at a time ---------------------------------------------------

BLOB = b"x" * 100
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
HEADER = hub_pb2.WatchBundlesResponse(
    bundle=bundle_pb2.SignedBundle(cluster=CLUSTER, version=7, digest=BLOB_DIGEST),
    transfer=hub_pb2.BlobTransfer(size=len(BLOB), chunks=2),
)


def chunk(offset: int, data: bytes) -> hub_pb2.WatchBundlesResponse:
    return hub_pb2.WatchBundlesResponse(chunk=hub_pb2.BundleChunk(digest=BLOB_DIGEST, offset=offset, data=data))


class SteppedCall:
    """Stands in for the agent's end of a WatchBundles stream (grpc.aio's call: only ``read``): the test hands it
    each message in the event-loop step it chooses, which a stream over loopback cannot be made to do."""

    def __init__(self):
        self.messages: asyncio.Queue = asyncio.Queue()

    async def read(self):
        return await self.messages.get()


async def test_chunks_handed_in_loop_steps_assemble_into_the_bundle(pki):
    client = HubClient("127.0.0.1:1", pki.agent(CLUSTER), CLUSTER)
    call = SteppedCall()
    task = asyncio.create_task(client.assemble(call, HEADER))
    call.messages.put_nowait(chunk(0, BLOB[:60]))
    await asyncio.sleep(0)
    call.messages.put_nowait(chunk(60, BLOB[60:]))
    got = await asyncio.wait_for(task, 5)
    assert (got.bundle.version, got.bundle.bundle) == (7, BLOB)
    assert client.received_bytes == len(BLOB)


async def test_a_transfer_that_stalls_between_chunks_is_refused_naming_the_hub_and_the_bundle(pki):
    client = HubClient("127.0.0.1:1", pki.agent(CLUSTER), CLUSTER, chunk_idle=0.05)
    call = SteppedCall()
    call.messages.put_nowait(chunk(0, BLOB[:60]))  # and then nothing
    with pytest.raises(DeadlineExceeded, match=f"hub 127.0.0.1:1 stalled for 0.05s .*bundle {BLOB_DIGEST}"):
        await asyncio.wait_for(client.assemble(call, HEADER), 5)


@pytest.mark.parametrize("steps_between", [0, 1, 2, 3])
async def test_assembling_chunks_stops_when_cancelled_as_a_chunk_arrives(pki, steps_between):
    """A cancel (the agent stopping) that lands as a chunk arrives ends the assembly: under wait_for it was lost,
    and the watch went on reading (here the rest of the bundle follows the cancel: it handed the bundle on)."""
    client = HubClient("127.0.0.1:1", pki.agent(CLUSTER), CLUSTER)
    call = SteppedCall()
    task = asyncio.create_task(client.assemble(call, HEADER))
    for _ in range(3):
        await asyncio.sleep(0)  # parked waiting for the first chunk
    call.messages.put_nowait(chunk(0, BLOB[:60]))
    for _ in range(steps_between):
        await asyncio.sleep(0)
    task.cancel()
    call.messages.put_nowait(chunk(60, BLOB[60:]))
    await asyncio.wait({task}, timeout=5)  # a task still waiting here is cancelled again as the test's loop closes
    assert task.cancelled(), "the assembly went on after its cancel"
