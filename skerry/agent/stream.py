"""The agent's side of the hub: the bundle watch and status reports, over grpc.aio with mutual TLS.

``HubClient.watch`` is an endless async iterator over ``WatchBundlesResponse``:
when the stream fails or ends it reconnects after an exponential backoff
with full jitter (``uniform(0, min(cap, base * 2**attempt))``), resetting
once a message arrives. Each (re)connect asks for what the caller has
verified so far (``position``), so the hub only resends what is newer.
Unary calls carry deadlines; failures become Skerry errors naming the hub.

Transport (the caller always sees whole ``bundle`` events): the request
announces ``accepts_chunks`` and the digest of the blob held in memory
(``have_blob``). A bundle whose bytes did not change arrives with
``transfer.omitted`` and is filled in from that blob; a bundle above one
message arrives as a header plus ``chunk`` events, assembled in order, bounded
by ``MAX_BUNDLE_BYTES`` and ``CHUNK_IDLE_SECONDS``, and checked against its
SHA-256 digest before it is handed on (the verifier checks it again against
the signed metadata). Any transfer fault drops the blob and reconnects.
``reload_credentials`` swaps in a renewed certificate: the channel is closed
and the watch reconnects on a new TLS connection with the new identity.

Reconnect storms (``skerry.core.pushback``): a hub past its admission budget refuses a new stream
with a pushback; the client waits exactly that long and asks the same hub again on the same
connection (no new handshake, its place in the hub's queue kept). Each stream that opens carries
the hub's reconnect spread; after losing a stream the wait is a full-jitter draw over the wider of
the backoff and the lost replica's share of that spread over the other replicas
(``core.backoff.reconnect_delay``), so the agents of a dead replica arrive at the others at their
admission rate, not at once. A stream
the hub retired at its maximum age is no lost hub: it resumes within the backoff. Nor is a replica
that refused with reason ``ReplicaBehind`` (its copy of the hub state is older than the release this
agent holds, ``skerry.hub.catchup``): the agent moves to another replica within the backoff. A hub at
its cap on open streams (``ReplicaFull``) is left at once for another address, its connection closed;
its pushback is waited only when there is no other address or every one of them was full in a row.

Failover: the hub is a ``core.client.Endpoints`` (one address, a list of replicas, or one Service
address). Every reconnect chooses afresh, at random among the addresses other than the one just
left, and dials a new channel when the address changed or the connection failed (a Service address
then lets the network pick a backend again). Nothing is re-sent on the way: the request carries the
verified position and the held blob's digest, and every replica serves the same state. A stream that
stayed up ``STABLE_STREAM_SECONDS`` (a hub retiring connections at their maximum age, a replica
stopped after hours) ends no failure streak: the backoff starts over. ``received_bytes`` counts the
bundle bytes that came off the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import structlog

from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core import bundle, pushback
from skerry.core.backoff import reconnect_delay
from skerry.core.client import Endpoints
from skerry.core.client import channel_options as client_options
from skerry.core.errors import DeadlineExceeded, InvalidInput, ResourceExhausted, SkerryError, Unavailable
from skerry.core.rpc import REASON_METADATA, error_from_rpc
from skerry.core.tls import TlsFiles, channel_credentials

log = structlog.get_logger("skerry.agent.stream")

# Reconnect backoff: full jitter, doubling from RECONNECT_BASE_SECONDS up to RECONNECT_CAP_SECONDS.
# The cap bounds how long an agent may sleep after its hub came back; 15 s keeps a fleet-wide
# reconnect after a hub restart well inside a minute, while 10,000 agents retrying a hub that is
# still down cost it under 700 refused connections per second.
RECONNECT_BASE_SECONDS = 0.5
RECONNECT_CAP_SECONDS = 15.0
# gRPC keeps its own connection backoff per channel (1 s x 1.6, +-20 % jitter, up to 120 s), and a
# call on a channel in TRANSIENT_FAILURE fails at once: after our jittered sleep the watch hit the
# old channel's backoff and slept again, so a restarted hub saw its fleet come back over ~2 caps
# (bench/fleet.py: 2,000 agents, 31 s after the hub was up). So after a connection failure the
# watch drops the channel and dials a fresh one (its own subchannel, no inherited backoff): our
# full jitter alone spreads the reconnects over one cap. The channel's backoff still governs
# status reports between watches; it is capped like ours.
CHANNEL_BACKOFF_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", int(RECONNECT_CAP_SECONDS * 1000)),
]
# Largest bundle the agent assembles from chunks: the cap every verifier applies
# (skerry.core.bundle.MAX_BUNDLE_BYTES), so a hostile or broken hub cannot make the agent allocate
# more than a bundle it could ever apply. It is checked against the announced size before any
# buffer exists, and against every chunk as it arrives.
MAX_BUNDLE_BYTES = bundle.MAX_BUNDLE_BYTES
# Most chunks one bundle may have (the hub sends 1 MiB chunks; this leaves room for smaller ones).
MAX_CHUNKS = 1024
# A transfer that stalls this long between chunks is abandoned and the watch reconnects.
CHUNK_IDLE_SECONDS = 30.0
# A watch that stayed open this long before it ended counts as a success: the next reconnect starts
# the backoff over. Twice the reconnect cap: a hub that accepts and then fails at once still backs
# off, while hubs retiring connections at their maximum age (minutes) never push an agent's retry
# delay toward the cap. A watch that receives a message resets the backoff too.
STABLE_STREAM_SECONDS = 2 * RECONNECT_CAP_SECONDS
# How gRPC core ends the streams of a connection the hub retired at its maximum age (UNAVAILABLE with these
# details; grpcio 1.x, src/core/ext/filters/channel_idle). Not a lost hub: the agent reconnects within the
# backoff, not over the hub's reconnect spread (gRPC already jitters the ages by +-10 %).
RETIRED_DETAILS = "max connection age"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()



def _cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (stop it), as opposed to gRPC cancelling one call of
    a channel this client closed (a reconnect: the caller turns it into a retried failure)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

class HubClient:
    def __init__(
        self,
        hub: str | Endpoints,
        tls_files: TlsFiles,
        cluster: str,
        *,
        server_name: str | None = None,
        rpc_timeout: float = 10.0,
        chunk_idle: float = CHUNK_IDLE_SECONDS,
        backoff_base: float = RECONNECT_BASE_SECONDS,
        backoff_cap: float = RECONNECT_CAP_SECONDS,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        channel_options: list[tuple[str, object]] | None = None,
    ):
        # one address, or several (hub replicas) this client and the agent's other hub paths share
        self.endpoints = hub if isinstance(hub, Endpoints) else Endpoints(hub, what="hub", rng=rng)
        self.cluster = cluster
        self._tls_files = tls_files
        self._credentials = channel_credentials(tls_files)  # reads the files now: fail fast
        self._blob = b""  # bytes of the last bundle received, reused when the hub omits them
        self._blob_digest = ""
        self._call = None
        # later options replace earlier ones of the same key (gRPC alone would keep the first)
        self._options = client_options(server_name, [*CHANNEL_BACKOFF_OPTIONS, *(channel_options or [])])
        self._rpc_timeout = rpc_timeout
        self._chunk_idle = chunk_idle
        self._base = backoff_base
        self._cap = backoff_cap
        self._rng = rng
        self._sleep = sleep
        self._monotonic = monotonic
        self._channel: grpc.aio.Channel | None = None
        self._channel_address = ""
        self._stub_: hub_pb2_grpc.HubServiceStub | None = None
        self.connected = False
        self.last_error: SkerryError | None = None
        self.reconnects = 0
        self._full = 0  # hubs in a row that refused a watch as full (ReplicaFull)
        self.spread = 0.0  # the reconnect window the hub of the last opened stream advertised (seconds)
        self.received_bytes = 0  # bundle bytes received off the wire (whole bundles and chunks)

    @property
    def address(self) -> str:
        """The hub address in use (or next to be dialled)."""
        return self._channel_address or self.endpoints.current

    @property
    def peer(self) -> str:
        return f"hub {self.address}"

    def _stub(self) -> hub_pb2_grpc.HubServiceStub:
        address = self.endpoints.current
        if self._stub_ is not None and self._channel_address != address:
            self._drop_channel(self._channel_address)  # another hub path moved on: follow it
        if self._stub_ is None:
            self._channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            self._channel_address = address
            self._stub_ = hub_pb2_grpc.HubServiceStub(self._channel)
        return self._stub_

    def channel(self) -> tuple[str, grpc.aio.Channel]:
        """The hub address in use and its channel (dialled if there is none). The agent's signed reports go over
        it too (``attest.ReportSigner``): one connection per agent at its hub, each one of the hub's files."""
        self._stub()
        return self._channel_address, self._channel

    async def watch(
        self,
        last_version: int = 0,
        last_digest: str = "",
        *,
        position: Callable[[], tuple[int, str]] | None = None,
    ) -> AsyncIterator[hub_pb2.WatchBundlesResponse]:
        """Bundles and render errors for this cluster, forever; reconnects on failure.

        ``position`` (if given) is asked before every (re)connect for the
        ``(version, digest)`` the caller has verified; otherwise
        ``last_version``/``last_digest`` are sent each time.
        """
        attempt = 0
        while True:
            version, digest = position() if position is not None else (last_version, last_digest)
            request = hub_pb2.WatchBundlesRequest(
                cluster=self.cluster,
                last_version=version,
                last_digest=digest,
                accepts_chunks=True,
                have_blob=self._blob_digest,
            )
            stub = self._stub()
            address = self._channel_address
            call = stub.WatchBundles(request)
            self._call = call
            opened = self._monotonic()
            error: SkerryError
            pushed: float | None = None
            swapped = not_lost = full = False
            try:
                advertised = pushback.spread(await call.initial_metadata())  # sent as the stream opens
                if advertised is not None:
                    self.spread = advertised
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        break
                    response = await self.assemble(call, response)
                    if not self.connected:
                        log.info("watching the hub", hub=address, last_version=version)
                    self.connected = True
                    self.last_error = None
                    attempt = 0
                    yield response
                error = Unavailable(f"hub {address} ended the bundle stream")
            except grpc.aio.AioRpcError as e:
                error = error_from_rpc(e, f"hub {address}")
                trailers = e.trailing_metadata()
                pushed = pushback.pushback(trailers)
                reason = dict(trailers or ()).get(REASON_METADATA)  # the hub's named refusal
                full = reason == pushback.REPLICA_FULL  # another replica at once
                if reason == pushback.BEHIND_REASON:  # another replica serves
                    error = Unavailable(str(error), reason=pushback.BEHIND_REASON)
                not_lost = (e.code() == grpc.StatusCode.UNAVAILABLE and e.details() == RETIRED_DETAILS
                           or error.reason == pushback.BEHIND_REASON)
            except SkerryError as e:  # a transfer fault: start over without the blob
                self._blob, self._blob_digest = b"", ""
                error = e
            except asyncio.CancelledError:
                if _cancelled_from_outside():
                    raise
                # our own cancel from reload_credentials: reconnect now with the new certificate
                error = Unavailable("reconnecting with the renewed certificate")
                swapped = True
            finally:
                call.cancel()
                self._call = None
            if swapped:
                self.connected = False
                continue
            self.connected = False
            served = self._monotonic() - opened >= STABLE_STREAM_SECONDS  # then not a failure streak
            attempt = 0 if served else attempt
            spread = 0.0 if not_lost else self.spread  # a retired connection, a replica behind
            await self._sleep(self._interrupted(address, error, served=served, attempt=attempt, pushed=pushed,
                                                spread=spread, full=full))
            attempt += 1

    def _interrupted(
        self, address: str, error: SkerryError, *, served: bool, attempt: int, pushed: float | None = None,
        spread: float = 0.0, full: bool = False,
    ) -> float:
        """Book an ended watch: move to another replica (if any) unless the hub said when to come back to it;
        the wait before reconnect ``attempt``: the pushback, else full jitter over the backoff or the lost
        hub's share of ``spread`` (the fleet's window: a hub of ``k`` held ~1/k of it) over the other ``k - 1``
        (its agents go to them at random, each admitting at its rate). A ``full`` replica (``ReplicaFull``):
        another one at once, its pushback only once as many in a row were full as there are addresses."""
        if full:  # named as the hub named it (in the log, and in what the agent reports of its hub)
            error = ResourceExhausted(str(error), reason=pushback.REPLICA_FULL)
        self.last_error = error
        self.reconnects += 1
        self._full = self._full + 1 if full else 0  # replicas in a row that were full
        if full:  # no connection held to it (each is one of its descriptors); with one address, the same again
            self._drop_channel(address)
            following = self.endpoints.failed(address)
            pushed = 0.0 if self._full < len(self.endpoints.addresses) else pushed
        elif pushed is not None:  # a place in this hub's queue: keep it, and the connection
            following = address
        else:
            if isinstance(error, Unavailable):
                self._drop_channel(address)  # the next attempt dials afresh (CHANNEL_BACKOFF_OPTIONS)
            following = self.endpoints.failed(address)  # another replica, at random, if there is one
        delay = reconnect_delay(attempt, base=self._base, cap=self._cap, spread=spread,
                                replicas=len(self.endpoints.addresses), pushback=pushed, rng=self._rng)
        # a long-served stream ending is routine (the hub retires connections at their maximum age), and so
        # is a busy hub's pushback
        (log.info if served or pushed is not None else log.warning)(
            "hub watch interrupted; reconnecting",
            hub=address,
            next_hub=following,
            reason=error.reason,
            error=str(error),
            retry_in=round(delay, 3),
        )
        return delay

    async def assemble(self, call, response: hub_pb2.WatchBundlesResponse) -> hub_pb2.WatchBundlesResponse:
        """A whole ``bundle`` event from an omitted or chunked transfer (other events pass through); the chunks
        are the next messages of ``call`` (what ``read()`` returns), each within ``chunk_idle`` seconds."""
        kind = response.WhichOneof("event")
        if kind == "chunk":
            raise InvalidInput(f"{self.peer} sent a bundle chunk without a bundle header")
        if kind != "bundle":
            return response
        signed = response.bundle
        transfer = response.transfer if response.HasField("transfer") else None
        if transfer is not None and transfer.omitted:
            if not self._blob_digest or signed.digest != self._blob_digest:
                raise InvalidInput(f"{self.peer} omitted the bytes of {signed.digest}, which this agent does not hold")
            data = self._blob
        elif transfer is not None and transfer.chunks:
            data = await self._read_chunks(call, signed.digest, transfer.size, transfer.chunks)
        else:
            data = signed.bundle
            self.received_bytes += len(data)
            if len(data) > MAX_BUNDLE_BYTES:
                raise InvalidInput(f"{self.peer} sent a {len(data)}-byte bundle; the agent takes at most "
                                   f"{MAX_BUNDLE_BYTES} bytes", reason="EndlessData")
        out = hub_pb2.WatchBundlesResponse()
        out.bundle.CopyFrom(signed)
        out.bundle.bundle = data
        self._blob, self._blob_digest = data, signed.digest
        return out

    async def _read_chunks(self, call, digest: str, size: int, count: int) -> bytes:
        if not 0 < size <= MAX_BUNDLE_BYTES or not 0 < count <= min(MAX_CHUNKS, size):
            raise InvalidInput(
                f"{self.peer} announced a {size}-byte bundle in {count} chunks; the agent takes at most "
                f"{MAX_BUNDLE_BYTES} bytes in {MAX_CHUNKS} chunks",
                reason="EndlessData",
            )
        buf = bytearray()
        for _ in range(count):
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancel that lands as a chunk arrives
                async with asyncio.timeout(self._chunk_idle):
                    msg = await call.read()
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{self.peer} stalled for {self._chunk_idle:g}s in the middle of bundle {digest}"
                ) from None
            if msg is grpc.aio.EOF or msg.WhichOneof("event") != "chunk":
                raise InvalidInput(f"{self.peer} interrupted the chunks of bundle {digest}")
            chunk = msg.chunk
            self.received_bytes += len(chunk.data)
            if chunk.digest != digest or chunk.offset != len(buf) or len(buf) + len(chunk.data) > size:
                raise InvalidInput(f"{self.peer} sent a chunk out of order for bundle {digest}")
            buf += chunk.data
        data = bytes(buf)
        if len(data) != size or _digest(data) != digest:
            raise InvalidInput(f"{self.peer} sent bundle bytes that do not match {digest}; discarded")
        return data

    def _drop_channel(self, address: str) -> None:
        """Close the channel if it still goes to ``address`` (a newer one is left alone)."""
        if self._channel_address != address:
            return
        channel, self._channel, self._stub_, self._channel_address = self._channel, None, None, ""
        if channel is not None:
            asyncio.ensure_future(channel.close(grace=0))

    def reload_credentials(self, tls_files: TlsFiles | None = None) -> None:
        """Use the (renewed) certificate files from now on; the watch reconnects with them."""
        self._credentials = channel_credentials(tls_files or self._tls_files)
        channel, self._channel, self._stub_, self._channel_address = self._channel, None, None, ""
        if self._call is not None:
            self._call.cancel()
        if channel is not None:
            asyncio.ensure_future(channel.close(grace=0.5))

    async def report(self, status: hub_pb2.ClusterStatus) -> None:
        """Send one status report (deadline ``rpc_timeout``) to the hub the watch uses. Raises a ``SkerryError``.

        A failed report does not move the agent to another hub: the watch decides that, and the next
        report follows it.
        """
        stub = self._stub()
        address = self._channel_address
        try:
            await stub.ReportStatus(hub_pb2.ReportStatusRequest(status=status), timeout=self._rpc_timeout)
        except grpc.aio.AioRpcError as e:
            raise error_from_rpc(e, f"hub {address}") from None
        except asyncio.CancelledError:
            if _cancelled_from_outside():
                raise
            # gRPC cancels the calls of a closed channel: the watch moved to another hub (or reconnects with a
            # renewed certificate) while this report was in flight. Not our cancellation: a failed report, retried.
            raise Unavailable(f"hub {address}: the report was cut off when its connection was replaced") from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub_ = None
        self._channel_address = ""
