"""Agents' calls that wait on a stopped database hold the hub's agent state threads, not its default executor.

Some calls that serve agents touch the hub state: IssueNonce writes a nonce, GetAttestation reads the last
signed report (as do enrollment's redeem and SubmitSignedReport). With the writer's PostgreSQL stopped, each
waits for it (up to the pool's timeout, 30 s). They run on the hub's agent state threads
(``skerry.hub.state.threads``): more of them at once than asyncio's default executor has threads leave that
executor free for the rest of the hub (TUF refreshes, the follower, revocation reloads), and for this test's
new agent, which runs there (this process's executor, the hub's, with its default size) and must still get
its bundle, signed and verified, within its deadline. Once the database is back every call is answered
(those the outage refused with one clear status, when asked again). Checked against the code before the
fix: the agents' calls held every default executor thread and the new agent missed its deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import grpc
import pytest

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from tests.hub.state.test_writer_outage import (
    CLUSTER,
    DEFAULT_THREADS,
    RECOVERY,
    served_within_deadline,
    until_answered,
    writer_hub,
)

# How long the agents' calls get to reach the hub (a TLS handshake each, on a loaded machine) before the new
# agent connects.
ARRIVE = 1.0


def agents_calls(address: str, pki, count: int) -> list[tuple]:
    """``count`` calls of as many agents (one identity each: a caller's burst is rate-limited), each touching
    the state: a nonce asked for (a write), or the last signed report (a read; none was sent)."""
    calls = []
    for i in range(count):
        cluster = f"attester-{i}"
        method, request = (("IssueNonce", trust_pb2.IssueNonceRequest(cluster=cluster)) if i % 2 == 0 else
                           ("GetAttestation", trust_pb2.GetAttestationRequest(cluster=cluster)))
        calls.append((address, pki.agent(cluster), trust_pb2_grpc.TrustServiceStub, method, request))
    return calls


async def test_agents_calls_waiting_on_a_stopped_database_leave_a_new_agent_served(
    fleet_repo, tmp_path, pki, engine, dev_trust, database
):
    server, dsn = database
    hub = await writer_hub(fleet_repo, tmp_path, pki, engine, dev_trust, dsn)
    asked = agents_calls(f"127.0.0.1:{hub.port}", pki, DEFAULT_THREADS + 1)  # more than the default executor holds
    client = concurrent.futures.ThreadPoolExecutor(len(asked))  # the agents: other processes' threads
    port = server.port
    server.stop("fast")
    # each asked again while it ends with one clear status (the database away): an agent's retry
    answered = asyncio.gather(*(until_answered(client, *call) for call in asked))
    try:
        try:
            await asyncio.sleep(ARRIVE)
            released = hub.store.current(CLUSTER)
            streamed, verified = await served_within_deadline(hub, pki, dev_trust, tmp_path / "agent")
            assert streamed == released.release
            assert verified is not None and verified.release == released.release
        finally:
            server.start(port=port)
        async with asyncio.timeout(RECOVERY):
            answers = await answered
    except TimeoutError:
        pytest.fail(f"the agents' calls were not answered once the database was back: {answered}")
    finally:
        answered.cancel()  # (each, if the test failed before they were answered)
        client.shutdown(wait=False, cancel_futures=True)
        await hub.stop(grace=0)
    for (*_, method, _request), answer in zip(asked, answers, strict=True):
        if method == "IssueNonce":
            assert isinstance(answer, trust_pb2.IssueNonceResponse) and answer.nonce and answer.counter >= 1, answer
        else:
            assert answer == grpc.StatusCode.NOT_FOUND  # no report sent: read, and none found
