"""`skerry cluster revoke` end to end, in the deployed shape: the sealer shares no disk with the hub.

Within 1 s of the command the revoked agent's open WatchBundles stream ends; within 2 s its next Fetch,
ReportStatus, IssueNonce and Unseal are refused; a sealer restarted while the hub is down still
refuses it (the list it last received from the hub is persisted).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import grpc

from skerry.api.v1 import hub_pb2, hub_pb2_grpc, sealer_pb2, sealer_pb2_grpc, trust_pb2, trust_pb2_grpc
from skerry.core.client import Endpoints
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.sealedsecret import encryption_label
from skerry.core.tls import channel_credentials
from skerry.sealer import crypto
from skerry.sealer.app import SealerApp
from skerry.sealer.revocations import HubRevocations, follow

from .hubs import CALL_TIMEOUT, enrolled, fleet_of_servers

CLUSTER = "oslo-prod"
DEADLINE = 2.0  # seconds from `skerry cluster revoke` to every refusal
STREAM_DEADLINE = 1.0  # ... and to the end of the revoked agent's open stream


def unseal_request(sealer) -> sealer_pb2.UnsealRequest:
    key = sealer.registry.sealing_key()
    label = encryption_label("shop", "db", "strict")
    return sealer_pb2.UnsealRequest(namespace="shop", name="db", scope="strict",
                                    encrypted_data={"password": crypto.seal_value(key.public_key, b"s3cret", label)})


async def refused(call) -> str:
    try:
        result = call()
        await (result.read() if hasattr(result, "read") else result)
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
        assert "revoked" in e.details(), e.details()
        return e.details()
    raise AssertionError("the call of a revoked certificate was answered")


async def test_a_revoked_agent_loses_stream_pull_reports_nonces_and_unseal_within_two_seconds(
    fleet_repo, tmp_path, pki, engine
):
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine) as (hub, sealer):
        agent = await enrolled(hub, pki, tmp_path / "agent", CLUSTER)
        creds = channel_credentials(agent)
        request = unseal_request(sealer)
        async with (
            grpc.aio.secure_channel(f"127.0.0.1:{hub.port}", creds, options=CHANNEL_OPTIONS) as hub_ch,
            grpc.aio.secure_channel(f"127.0.0.1:{sealer.port}", creds, options=CHANNEL_OPTIONS) as sealer_ch,
        ):
            hub_api, trust_api = hub_pb2_grpc.HubServiceStub(hub_ch), trust_pb2_grpc.TrustServiceStub(hub_ch)
            sealer_api = sealer_pb2_grpc.SealerServiceStub(sealer_ch)
            fetch = trust_pb2.FetchRequest(path="metadata/timestamp.json")
            status = hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster=CLUSTER))
            nonce = trust_pb2.IssueNonceRequest(cluster=CLUSTER)
            # Before: everything works, and the watch is open.
            watch = hub_api.WatchBundles(hub_pb2.WatchBundlesRequest(cluster=CLUSTER))
            assert (await asyncio.wait_for(watch.read(), CALL_TIMEOUT)).WhichOneof("event")
            assert (await trust_api.Fetch(fetch, timeout=CALL_TIMEOUT).read()).total_size > 0
            await hub_api.ReportStatus(status, timeout=CALL_TIMEOUT)
            assert (await trust_api.IssueNonce(nonce, timeout=CALL_TIMEOUT)).nonce
            assert dict((await sealer_api.Unseal(request, timeout=CALL_TIMEOUT)).data) == {"password": b"s3cret"}
            received = sealer.revocations.received

            out = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "skerry", "cluster", "revoke", CLUSTER,
                                 "--state-dir", str(hub.config.state_dir)], capture_output=True, text=True)
            revoked_at = time.monotonic()
            assert out.returncode == 0, out.stderr

            await refused(lambda: asyncio.wait_for(watch.read(), DEADLINE))  # the open stream ends ...
            assert time.monotonic() - revoked_at < STREAM_DEADLINE  # ... within a second
            await refused(lambda: trust_api.Fetch(fetch, timeout=DEADLINE))
            await refused(lambda: hub_api.ReportStatus(status, timeout=DEADLINE))
            await refused(lambda: trust_api.IssueNonce(nonce, timeout=DEADLINE))
            # The sealer heard it from the hub (the same moment the hub re-read its list) ...
            await asyncio.wait_for(sealer.revocations.wait_received(received + 1), DEADLINE)
            await refused(lambda: sealer_api.Unseal(request, timeout=DEADLINE))
            assert time.monotonic() - revoked_at < DEADLINE

        # ... and persisted it: restarted while the hub is down, it still refuses.
        await sealer.stop(0)
        await hub.stop(grace=0)
        restarted = SealerApp(sealer.config, registry=sealer.registry)
        await restarted.start()
        try:
            async with grpc.aio.secure_channel(f"127.0.0.1:{restarted.port}", creds, options=CHANNEL_OPTIONS) as ch:
                await refused(lambda: sealer_pb2_grpc.SealerServiceStub(ch).Unseal(request, timeout=CALL_TIMEOUT))
        finally:
            await restarted.stop(0)


async def test_a_sealer_given_the_hubs_replicas_follows_the_list_from_one_that_answers(
    fleet_repo, tmp_path, pki, engine
):
    """``--hub a,b``: the feed from a replica that is down is taken up from another (Endpoints)."""
    async with fleet_of_servers(fleet_repo, tmp_path, pki, engine) as (hub, sealer):
        with socket.socket() as s:  # a port nothing listens on: a replica that is down
            s.bind(("127.0.0.1", 0))
            down = f"127.0.0.1:{s.getsockname()[1]}"
        endpoints = Endpoints(f"{down},127.0.0.1:{hub.port}", what="hub", rng=lambda: 0.0)
        assert endpoints.current == down
        revocations = HubRevocations(tmp_path / "second-sealer" / "revocations.json")
        task = asyncio.create_task(follow(endpoints, channel_credentials(sealer.config.tls_files), revocations))
        try:
            await asyncio.wait_for(revocations.wait_received(1), CALL_TIMEOUT)
        finally:
            task.cancel()
        assert endpoints.current == f"127.0.0.1:{hub.port}" and endpoints.switches == 1
        assert revocations.revoked == sealer.revocations.revoked
