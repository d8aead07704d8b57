"""Agents across hub replicas, over real mTLS on loopback: a stopped or SIGKILLed replica, a connection
retired at its maximum age, and the enrollment and renewal paths given the same address list. Every
case asserts what came off the wire (bundle bytes, digests in order), not what was logged.

Replicas here are bare stores behind the real servicer and server (``hubs.bare_hub`` in-process,
``replica.py`` as its own process), each publishing the same shared blob: the same bytes under the
same digest, as replicas of one hub state serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import grpc
import pytest
from hub.helpers import FLEET_FILES  # tests/hub/helpers.py

from skerry.agent.enroll import CertificateRenewer, enroll
from skerry.agent.stream import STABLE_STREAM_SECONDS, HubClient
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.bundle import SHARED_CLUSTER
from skerry.core.client import Endpoints, aio_secure_channel, channel_options
from skerry.core.errors import ConfigError, PermissionDenied, Unavailable
from skerry.core.rpc import DEFAULT_MAX_CONNECTION_AGE_SECONDS, server_options
from skerry.core.tls import ROLE_HUB, TlsFiles, channel_credentials

from .hubs import CHUNK, READ, bare_hub, bundle, enrolled, running_hub

# The stated bound: from a replica stopped or killed to the agent watching another one (its reconnect
# backoff starts at 0.5 s; the rest is a TLS handshake on a loaded 2-core machine).
FAILOVER_SECONDS = 5.0
# A short maximum connection age for the tests (the hub's default is 30 minutes); its grace is as long.
AGE_SECONDS = 1.0
# Retired after the age (+10 % jitter) and the grace; the agent then dials again at once.
RETIRED_WITHIN = AGE_SECONDS * 1.1 + AGE_SECONDS + FAILOVER_SECONDS
TESTS = pathlib.Path(__file__).resolve().parents[1]


class Watcher:
    """An agent's watch running in the background: every event it hands on, in order."""

    def __init__(self, client: HubClient):
        self.client = client
        self.events: list = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        position = lambda: (self.events[-1].bundle.version, self.events[-1].bundle.digest) if self.events else (0, "")  # noqa: E731
        async for event in self.client.watch(position=position):
            self.events.append(event)

    async def event(self, n: int, timeout: float = READ):
        """The ``n``-th event (1-based), waiting for it."""
        await until(lambda: len(self.events) >= n or self._task.done(), timeout, f"event {n}")
        if self._task.done():
            self._task.result()  # the watch died: show why
        return self.events[n - 1]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.close()


async def until(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} within {timeout:g}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def blob(size: int, tag: str = ""):
    return bundle(SHARED_CLUSTER, size, tag)


def unused_address() -> str:
    """A loopback address nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# --- a replica stops -----------------------------------------------------------------------------


async def test_a_stopped_replica_moves_the_agent_to_another_without_resending_the_bundle(pki, tmp_path):
    first, second = blob(3 * CHUNK + 5), blob(2 * CHUNK, tag="2")
    async with bare_hub(pki, tmp_path / "a") as (store_a, _, server_a, a), \
            bare_hub(pki, tmp_path / "b") as (store_b, servicer_b, _, b):
        for store in (store_a, store_b):
            store.publish_shared(["oslo"], first)
        held = store_a.current("oslo")
        assert store_b.current("oslo").digest == held.digest
        # rng 0: the first address first, and no backoff sleep (the delay is drawn from [0, base))
        watcher = Watcher(HubClient(f"{a},{b}", pki.agent("oslo"), "oslo", rng=lambda: 0.0))
        client = watcher.client
        try:
            got = await watcher.event(1)
            assert client.address == a and got.bundle.bundle == held.shared.data
            assert client.received_bytes == len(held.shared.data)

            await server_a.stop(0)
            took = await until(lambda: len(servicer_b.streams) == 1, FAILOVER_SECONDS, "watch on replica b")
            assert client.address == b, took
            assert client.received_bytes == len(held.shared.data)  # b sent nothing: the agent holds it

            store_b.publish_shared(["oslo"], second)
            got = await watcher.event(2)
            newer = store_b.current("oslo")
            assert (got.bundle.digest, bytes(got.bundle.bundle)) == (newer.digest, newer.shared.data)
            assert [e.bundle.digest for e in watcher.events] == [held.digest, newer.digest]
            assert client.received_bytes == len(held.shared.data) + len(newer.shared.data)
        finally:
            await watcher.close()


@contextlib.contextmanager
def replica(pki, directory: pathlib.Path, blobs: pathlib.Path, *, max_age: float = 0.0):
    """A replica process (replica.py); yields ``(process, address, requests file)``; killed on exit."""
    directory.mkdir(parents=True)
    tls = pki.server("hub", ROLE_HUB)
    ready, requests = directory / "ready.json", directory / "requests.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    with open(directory / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(TESTS / "transport" / "replica.py"), "--tls-ca", str(tls.ca),
             "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--trust-dir", str(directory / "trust"),
             "--blobs", str(blobs), "--requests", str(requests), "--ready", str(ready),
             "--max-connection-age", str(max_age)],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"replica did not start: {(directory / 'stderr.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield proc, f"127.0.0.1:{json.loads(ready.read_text())['port']}", requests
    finally:
        proc.kill()
        proc.wait()


def watch_requests(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_sigkilled_replica_process_the_agent_resumes_on_another_and_nothing_is_sent_twice(pki, tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    first, second = blob(2 * CHUNK + 11), blob(CHUNK + 3, tag="2")
    (blobs / "1.json").write_bytes(first.encode())
    with replica(pki, tmp_path / "a", blobs) as (proc_a, a, _), replica(pki, tmp_path / "b", blobs) as (_, b, seen_b):
        watcher = Watcher(HubClient(f"{a},{b}", pki.agent("oslo"), "oslo", rng=lambda: 0.0))
        client = watcher.client
        try:
            got = await watcher.event(1)
            assert client.address == a and bytes(got.bundle.bundle) == first.encode()

            proc_a.kill()  # SIGKILL: no goodbye on the connection
            killed = time.monotonic()
            took = await until(lambda: watch_requests(seen_b), FAILOVER_SECONDS, "watch request at replica b")
            # it told b what it holds, so b (same digest) sends nothing
            assert watch_requests(seen_b) == [{"cluster": "oslo", "last_version": got.bundle.version,
                                               "last_digest": got.bundle.digest, "have_blob": got.bundle.digest}], took
            assert client.received_bytes == len(first.encode())

            (blobs / "2.json").write_bytes(second.encode())  # b publishes it; a is gone
            got2 = await watcher.event(2)
            assert bytes(got2.bundle.bundle) == second.encode() and client.address == b
            assert client.received_bytes == len(first.encode()) + len(second.encode())
            assert len(watcher.events) == 2 and time.monotonic() - killed < FAILOVER_SECONDS + READ
        finally:
            await watcher.close()


async def test_a_name_with_several_addresses_spreads_new_connections_over_them(pki, tmp_path):
    """One name, two addresses (what DNS answers for a headless Service): gRPC's pick_first would take the
    first every time; the client's shuffle sends each new connection to either (all 16 to one: p = 3e-5)."""
    async with bare_hub(pki, tmp_path / "a") as (store_a, _, _, a), bare_hub(pki, tmp_path / "b") as (store_b, _, _, b):
        store_a.publish_shared(["oslo"], blob(100, tag="a"))
        store_b.publish_shared(["oslo"], blob(100, tag="b"))
        which = {store_a.current("oslo").digest: "a", store_b.current("oslo").digest: "b"}
        reached = []
        for _ in range(16):
            async with aio_secure_channel(f"ipv4:{a},{b}", pki.agent("oslo"), server_name="127.0.0.1") as ch:
                call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
                reached.append(which[(await asyncio.wait_for(call.read(), READ)).bundle.digest])
                call.cancel()
        assert set(reached) == {"a", "b"}, reached


# --- maximum connection age ----------------------------------------------------------------------


async def test_a_connection_past_its_maximum_age_is_retired_and_the_agent_resumes_without_resending(pki, tmp_path):
    aged = server_options(max_connection_age=AGE_SECONDS)
    async with bare_hub(pki, tmp_path, options=aged) as (store, servicer, _, address):
        store.publish_shared(["oslo"], blob(2 * CHUNK))
        held = store.current("oslo")
        watcher = Watcher(HubClient(address, pki.agent("oslo"), "oslo"))
        client = watcher.client
        try:
            await watcher.event(1)
            opened = time.monotonic()
            await until(lambda: client.reconnects >= 1, RETIRED_WITHIN, "retired stream")
            assert time.monotonic() - opened >= AGE_SECONDS * 0.9  # not before its age (gRPC's -10 % jitter)
            assert isinstance(client.last_error, Unavailable) and "max connection age" in str(client.last_error)
            await until(lambda: len(servicer.streams) == 1, FAILOVER_SECONDS, "watch again")
            assert client.received_bytes == len(held.shared.data)

            store.publish_shared(["oslo"], blob(CHUNK, tag="2"))
            got = await watcher.event(2)
            assert got.bundle.digest == store.current("oslo").digest
            assert client.received_bytes == len(held.shared.data) + len(store.current("oslo").shared.data)
        finally:
            await watcher.close()


async def test_grpc_jitters_each_connections_maximum_age(pki, tmp_path):
    """gRPC core draws each connection's age from [0.9, 1.1] x the maximum (kMaxConnectionAgeJitter): twelve
    connections opened together close over a spread of ages (equal ages: a range of a few ms; twelve uniform
    draws over +-0.2 s span less than 0.1 s with p < 1e-5)."""
    age = 2.0

    async def lifetime() -> float:
        options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
        async with grpc.aio.secure_channel(address, channel_credentials(pki.agent("oslo")), options=options) as ch:
            await hub_pb2_grpc.HubServiceStub(ch).ReportStatus(
                hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster="oslo")), timeout=READ)
            opened = time.monotonic()
            while (state := ch.get_state()) == grpc.ChannelConnectivity.READY:
                await ch.wait_for_state_change(state)  # GOAWAY at the age: the channel leaves READY
            return time.monotonic() - opened

    async with bare_hub(pki, tmp_path, options=server_options(max_connection_age=age)) as (_, _, _, address):
        ages = await asyncio.gather(*(lifetime() for _ in range(12)))
    assert all(0.9 * age - 0.2 <= a <= 1.1 * age + 1.0 for a in ages), ages
    assert max(ages) - min(ages) > 0.1, ages


async def test_retired_connections_move_a_fleet_to_the_replica_that_joined(pki, tmp_path):
    """A fleet on replica a; b is added; a's connections reach their age and the agents move to b."""
    aged = server_options(max_connection_age=AGE_SECONDS)
    async with bare_hub(pki, tmp_path / "a", options=aged) as (store_a, servicer_a, _, a), \
            bare_hub(pki, tmp_path / "b") as (store_b, servicer_b, _, b):
        content = blob(CHUNK + 1)
        for store in (store_a, store_b):
            store.publish_shared(["oslo", "bergen"], content)
        size = len(store_a.current("oslo").shared.data)
        watchers = [Watcher(HubClient(f"{a},{b}", pki.agent(c), c, rng=lambda: 0.0)) for c in ("oslo", "bergen")]
        try:
            for w in watchers:
                await w.event(1)
            assert len(servicer_a.streams) == 2 and len(servicer_b.streams) == 0
            await until(lambda: len(servicer_b.streams) == 2, RETIRED_WITHIN, "both agents on replica b")
            assert [w.client.address for w in watchers] == [b, b]
            assert [w.client.received_bytes for w in watchers] == [size, size]
            assert all(len(w.events) == 1 for w in watchers)
        finally:
            for w in watchers:
                await w.close()


async def test_the_hub_retires_agent_connections_at_its_max_connection_age(fleet_repo, tmp_path, pki, engine):
    """The real hub (``--max-connection-age``), a real enrolled identity: retired, back, and the release it
    holds is not sent again; the next commit's is."""
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine, max_connection_age=AGE_SECONDS) as app:
        files = await enrolled(app, pki, tmp_path / "agent", "oslo-dev")
        watcher = Watcher(HubClient(f"127.0.0.1:{app.port}", files, "oslo-dev"))
        client = watcher.client
        try:
            first = await watcher.event(1)
            await until(lambda: client.reconnects >= 1, RETIRED_WITHIN, "retired stream")
            assert "max connection age" in str(client.last_error)
            await until(lambda: len(app.servicer.streams) == 1, FAILOVER_SECONDS, "watch again")

            fleet_repo.commit("two replicas", {"base/deployment.yaml": FLEET_FILES["base/deployment.yaml"].replace(
                "replicas: 1", "replicas: 2")})
            await app.syncer.sync_once()
            second = await watcher.event(2)
            assert second.bundle.version > first.bundle.version
            assert [e.bundle.digest for e in watcher.events] == [first.bundle.digest, second.bundle.digest]
        finally:
            await watcher.close()


def test_the_hub_flag_and_variable_set_the_age_and_a_bound_holds(tmp_path):
    from skerry.cli import build_parser
    from skerry.core.config import flag_values
    from skerry.hub.config import HubConfig

    args = build_parser().parse_args(["hub", "serve", "--repo", "/r", "--max-connection-age", "45m"])
    assert HubConfig.from_env({}, **flag_values(args, HubConfig)).max_connection_age == 45 * 60
    off = HubConfig.from_env({"SKERRY_HUB_REPO": "/r", "SKERRY_HUB_MAX_CONNECTION_AGE": "0"})
    assert off.max_connection_age == 0
    assert not any(k == "grpc.max_connection_age_ms" for k, _ in server_options(max_connection_age=0))
    default = dict(server_options(max_connection_age=HubConfig.from_env({"SKERRY_HUB_REPO": "/r"}).max_connection_age))
    assert default["grpc.max_connection_age_ms"] == DEFAULT_MAX_CONNECTION_AGE_SECONDS * 1000
    assert default["grpc.max_connection_age_grace_ms"] == 30_000
    with pytest.raises(ConfigError, match="max_connection_age"):
        server_options(max_connection_age=30 * 86400)


@pytest.mark.parametrize(("lasted", "delays"), [(STABLE_STREAM_SECONDS, [0.5, 0.5, 0.5]), (1.0, [0.5, 1.0, 2.0])])
async def test_only_a_stream_that_served_a_while_starts_the_backoff_over(pki, tmp_path, lasted, delays):
    """Retired every ~0.6 s with nothing to send: each stream 'lasts' ``lasted`` on the injected clock."""
    ticks = itertools.count(0.0, lasted)  # read when a stream opens and when it ends
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    aged = server_options(max_connection_age=0.3)
    async with bare_hub(pki, tmp_path, options=aged) as (_, _, _, address):
        client = HubClient(address, pki.agent("oslo"), "oslo", rng=lambda: 1.0, sleep=sleep,
                           monotonic=lambda: next(ticks))
        watcher = Watcher(client)
        try:
            await until(lambda: len(sleeps) >= 3, 3 * RETIRED_WITHIN, "three retired streams")
            assert sleeps[:3] == delays  # full jitter drawn at 1.0: the whole envelope of each attempt
        finally:
            await watcher.close()


# --- enrollment and renewal ----------------------------------------------------------------------


async def test_enrollment_and_renewal_take_the_address_list_and_pass_over_a_dead_replica(fleet_repo, tmp_path, pki,
                                                                                        engine):
    dead = unused_address()
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        token, _ = app.enrollment.tokens.issue("oslo-dev")
        # the sort key is the same for both: the order stays as given, the dead address first
        got = await enroll(f"{dead},127.0.0.1:{app.enroll_port}", token, pki.ca_file, tmp_path / "agent",
                           rng=lambda: 0.0)
        assert got.cluster == "oslo-dev"
        # a refusal is an answer: the next address (unreachable, which would be the error) is not tried
        with pytest.raises(PermissionDenied, match="already used"):
            await enroll(f"127.0.0.1:{app.enroll_port},{dead}", token, pki.ca_file, tmp_path / "again",
                         rng=lambda: 0.0)
        files = TlsFiles(ca=pki.ca_file, cert=got.cert, key=got.key)

        live = f"127.0.0.1:{app.port}"
        endpoints = Endpoints(f"{dead},{live}", rng=lambda: 0.0)
        assert endpoints.current == dead
        renewer = CertificateRenewer(endpoints, files, "oslo-dev")
        with pytest.raises(Unavailable, match=dead):
            await renewer.renew_once()
        assert endpoints.current == live  # and so for every hub path sharing it
        before = got.cert.read_bytes()
        renewed = await renewer.renew_once()
        assert renewer.renewals == 1 and renewed.cert.read_bytes() != before
