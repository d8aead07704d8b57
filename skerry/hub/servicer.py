"""The hub's gRPC service: proto <-> domain translation, nothing else.

Who may call what is the hub's table (``skerry.hub.authz``), enforced by the
server's interceptor before any code here runs: a caller is authorised
before the cluster is looked up, so the hub never tells a stranger which
clusters exist. Errors are Skerry errors (``NotFound`` for a cluster not in
the fleet, ``Unavailable`` before the fleet was first loaded);
``skerry.core.rpc.ErrorInterceptor`` maps them to status codes.
"""

from __future__ import annotations

import bisect
import datetime as _dt
from collections.abc import Callable
from typing import Protocol

import structlog

from skerry.api.v1 import bundle_pb2, common_pb2, hub_pb2, hub_pb2_grpc
from skerry.core import release_number
from skerry.core.authz import Revocations, caller
from skerry.core.clock import Clock, SystemClock
from skerry.core.conditions import Condition
from skerry.core.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    SkerryError,
    Unavailable,
)
from skerry.core.pushback import SPREAD_METADATA, entry
from skerry.core.rpc import BUNDLE_CHUNK_BYTES, MAX_MESSAGE_BYTES
from skerry.hub.admission import AdmissionGate
from skerry.hub.bundles.store import HubStore, RenderFailure, SharedBlob, SignedBundle
from skerry.hub.catchup import CatchUp
from skerry.hub.fleet import FLEET_FILE, Fleet
from skerry.hub.presence import Presence
from skerry.hub.status import ClusterStatus, ObjectStatus, StatusBoard
from skerry.hub.sync import SyncResult

log = structlog.get_logger("skerry.hub.servicer")

SERVICE_NAME = hub_pb2.DESCRIPTOR.services_by_name["HubService"].full_name


class FleetView(Protocol):
    """What the servicer reads of the sync loop (``skerry.hub.sync.Syncer`` provides it)."""

    fleet: Fleet | None
    revision: str
    fleet_error: str | None

    async def sync_once(self, *, force: bool = False) -> SyncResult: ...


# --- proto <-> domain ---------------------------------------------------------------------


def sync_result_to_proto(result: SyncResult) -> hub_pb2.SyncResponse:
    return hub_pb2.SyncResponse(
        commit=result.commit, rendered=result.rendered, published=list(result.published), errors=dict(result.errors),
        fleet_error=result.fleet_error or "", source_error=result.source_error or "",
    )


def signed_bundle_to_proto(signed: SignedBundle) -> bundle_pb2.SignedBundle:
    """The watch event for a release: a hint to refresh (the agent verifies through TUF), with its bytes if any."""
    return bundle_pb2.SignedBundle(
        cluster=signed.cluster, version=signed.release, digest=signed.digest, bundle=signed.bundle,
        number=signed.number,
    )


# An agent may hold this many WatchBundles streams per certificate; a newer one ends the oldest
# (an agent reconnecting before the hub noticed its old connection died must win, not be refused).
MAX_WATCHES_PER_IDENTITY = 1
# How stale the fleet size behind the reconnect spread may be: counting sorts every cluster name.
FLEET_SIZE_SECONDS = 10.0
# Room left in one message for everything but the bundle bytes (framing) when an agent that cannot
# take chunks gets a whole shared blob.
_FRAMING_ALLOWANCE = 256 * 1024


def shared_chunks(blob: SharedBlob, chunk_bytes: int) -> list[bytes]:
    """The ``chunk`` events of a shared blob, serialised once and sent by reference on every stream.

    ``ErrorInterceptor`` passes ``bytes`` responses through unserialised. The blob always travels as
    chunks, one if it is small, so that the last message an idle stream has sent is this shared
    object: grpc.aio keeps a reference to the last response of a stream while it waits for the
    next, and a message joining a stream's header to the blob (one message instead of two)
    measured ~100 KiB of hub memory pinned per idle agent (bench/fleet.py, 2,000 agents).
    """
    wire = blob.wire.get(chunk_bytes)
    if wire is None:
        data = memoryview(blob.data)
        wire = [
            hub_pb2.WatchBundlesResponse(
                chunk=hub_pb2.BundleChunk(digest=blob.digest, offset=off, data=bytes(data[off : off + chunk_bytes]))
            ).SerializeToString()
            for off in range(0, len(data), chunk_bytes)
        ]
        blob.wire[chunk_bytes] = wire
    return wire


def bundle_messages(
    signed: SignedBundle, *, have_blob: str, chunks_ok: bool, chunk_bytes: int = BUNDLE_CHUNK_BYTES
) -> list[hub_pb2.WatchBundlesResponse | bytes]:
    """The watch events that carry ``signed`` to an agent that holds the blob ``have_blob``.

    A release without bytes (the cluster's own bundle: the agent fetches it through TUF) is one hint
    event. A shared blob's bytes are never sent again to an agent that holds them
    (``transfer.omitted``); otherwise they go as chunk messages serialised once for all streams
    (``shared_chunks``), or whole to an agent that announces no chunk support, if they fit in one
    message (else it gets the hint and fetches them).
    """
    head = bundle_pb2.SignedBundle(cluster=signed.cluster, version=signed.release, digest=signed.digest,
                                   number=signed.number)
    data = signed.bundle
    if signed.shared is None or not data:
        return [hub_pb2.WatchBundlesResponse(bundle=head)]
    if chunks_ok and have_blob and have_blob == signed.digest:
        return [hub_pb2.WatchBundlesResponse(bundle=head, transfer=hub_pb2.BlobTransfer(omitted=True))]
    if chunks_ok:
        wire = shared_chunks(signed.shared, chunk_bytes)
        header = hub_pb2.WatchBundlesResponse(bundle=head, transfer=hub_pb2.BlobTransfer(size=len(data), chunks=len(wire)))
        return [header, *wire]
    if len(data) <= MAX_MESSAGE_BYTES - _FRAMING_ALLOWANCE:
        head.bundle = data
    return [hub_pb2.WatchBundlesResponse(bundle=head)]


class _Stream:
    __slots__ = ("fingerprint", "cluster", "peer", "ended")

    def __init__(self, fingerprint: str, cluster: str, peer):
        self.fingerprint = fingerprint
        self.cluster = cluster
        self.peer = peer
        self.ended: SkerryError | None = None

    def check(self) -> None:
        if self.ended is not None:
            raise self.ended


class StreamRegistry:
    """Open WatchBundles streams by certificate fingerprint: to end them on revocation or supersession."""

    def __init__(self, wake: Callable[[str], None], per_identity: int = MAX_WATCHES_PER_IDENTITY):
        self._wake = wake
        self._per_identity = per_identity
        self._by_fp: dict[str, list[_Stream]] = {}
        self._open = 0  # kept, not summed: every stream opened asks (its reconnect spread)

    def __len__(self) -> int:
        return self._open

    def fingerprints(self) -> list[str]:
        """The certificate fingerprints with an open watch, in the order they opened."""
        return list(self._by_fp)

    def open(self, fingerprint: str, cluster: str, peer) -> _Stream:
        stream = _Stream(fingerprint, cluster, peer)
        streams = self._by_fp.setdefault(fingerprint, [])
        streams.append(stream)
        self._open += 1
        while len(streams) > self._per_identity:
            old = streams.pop(0)
            self._open -= 1
            old.ended = Unavailable("superseded by a newer watch from the same agent certificate")
            self._wake(old.cluster)
        return stream

    def close(self, stream: _Stream) -> None:
        streams = self._by_fp.get(stream.fingerprint)
        if streams is not None:
            if stream in streams:
                streams.remove(stream)
                self._open -= 1
            if not streams:
                del self._by_fp[stream.fingerprint]

    def recheck(self, check: Callable[[object], None]) -> int:
        """End every open stream whose peer no longer passes ``check``; returns how many ended."""
        ended = 0
        for streams in list(self._by_fp.values()):
            for stream in streams:
                if stream.ended is not None:
                    continue
                try:
                    check(stream.peer)
                except SkerryError as e:
                    stream.ended = e
                    ended += 1
                    self._wake(stream.cluster)
        return ended


def event_to_proto(event: SignedBundle | RenderFailure) -> hub_pb2.WatchBundlesResponse:
    if isinstance(event, SignedBundle):
        return hub_pb2.WatchBundlesResponse(bundle=signed_bundle_to_proto(event))
    return hub_pb2.WatchBundlesResponse(
        render_error=hub_pb2.RenderError(revision=event.revision, message=event.message)
    )


def status_from_proto(msg: hub_pb2.ClusterStatus, received_at: _dt.datetime) -> ClusterStatus:
    return ClusterStatus(
        cluster=msg.cluster,
        applied_version=msg.applied_version,
        applied_digest=msg.applied_digest,
        applied_number=release_number.plausible(msg.applied_number, msg.applied_version),
        revision=msg.revision,
        conditions=tuple(
            Condition(type=c.type, status=c.status, reason=c.reason, message=c.message)
            for c in msg.conditions
        ),
        objects=tuple(
            ObjectStatus(
                group=o.ref.group,
                version=o.ref.version,
                kind=o.ref.kind,
                namespace=o.ref.namespace,
                name=o.ref.name,
                action=o.action,
                message=o.message,
            )
            for o in msg.objects
        ),
        agent_version=msg.agent_version,
        observed_unix_ms=msg.observed_unix_ms,
        received_at=received_at,
    )


def status_to_proto(status: ClusterStatus) -> hub_pb2.ClusterStatus:
    return hub_pb2.ClusterStatus(
        cluster=status.cluster,
        applied_version=status.applied_version,
        applied_digest=status.applied_digest,
        applied_number=status.applied_number,
        revision=status.revision,
        conditions=[
            common_pb2.Condition(type=c.type, status=c.status, reason=c.reason, message=c.message)
            for c in status.conditions
        ],
        objects=[
            hub_pb2.ObjectStatus(
                ref=common_pb2.ObjectRef(
                    group=o.group, version=o.version, kind=o.kind, namespace=o.namespace, name=o.name
                ),
                action=o.action,
                message=o.message,
            )
            for o in status.objects
        ],
        agent_version=status.agent_version,
        observed_unix_ms=status.observed_unix_ms,
    )


# A GetFleetStatus page: cluster views up to this many serialised bytes, the message cap less room for
# the response's other fields and gRPC's framing. A page ends before the view that would cross it.
FLEET_PAGE_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024


def _framed(size: int) -> int:
    """Bytes an element of a repeated message field (number < 16) takes: tag, varint length, body."""
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def fit_view(view: hub_pb2.ClusterView, budget: int) -> hub_pb2.ClusterView:
    """``view`` within ``budget`` bytes: reported objects beyond what fits are dropped and counted
    (``reported_objects_omitted``); if even the rest of the report does not fit, it is all left out.

    A report is itself at most one message, so only a view of a cluster that reported close to the cap
    (tens of thousands of objects, long messages) is ever cut; its conditions and counters stay.
    """
    excess = view.ByteSize() - budget
    if excess <= 0:
        return view
    excess += 6  # room for reported_objects_omitted
    objects = view.reported.objects
    total = keep = len(objects)
    while keep and excess > 0:
        keep -= 1
        excess -= _framed(objects[keep].ByteSize())
    view.reported_objects_omitted = total - keep
    del objects[keep:]
    if view.ByteSize() > budget:  # the conditions alone do not fit: nothing of the report is shown
        view.ClearField("reported")
    return view


# --- the service --------------------------------------------------------------------------


class HubServicer(hub_pb2_grpc.HubServiceServicer):
    def __init__(
        self,
        store: HubStore,
        statuses: StatusBoard,
        fleet: FleetView,
        *,
        clock: Clock | None = None,
        revocations: Revocations | None = None,
        chunk_bytes: int = BUNDLE_CHUNK_BYTES,
        may_sync: Callable[[], bool] = lambda: True,
        admission: AdmissionGate | None = None,
        presence: Presence | None = None,
        catch_up: CatchUp | None = None,
    ):
        self._store = store
        self._statuses = statuses
        self._fleet = fleet
        self._clock = clock or SystemClock()
        self._revocations = revocations
        self._chunk_bytes = chunk_bytes
        self._may_sync = may_sync  # this process holds the writer lease (only the writer fetches and publishes)
        self.streams = StreamRegistry(store.wake)
        self._presence = presence  # whether this process may serve its copy (not just back from away)
        self._catch_up = catch_up or CatchUp()  # whether its copy has reached what an agent holds (``catchup``)
        self.admission = admission  # new streams past its budget are refused with a pushback (None: all admitted)
        self._counted = (-FLEET_SIZE_SECONDS, 0)  # (when, clusters): the fleet size the reconnect spread is made of

    def recheck_streams(self) -> int:
        """After the revocation list changed: end the open streams of revoked certificates."""
        if self._revocations is None:
            return 0
        ended = self.streams.recheck(self._revocations.check_caller)
        if ended:
            log.info("closed the open streams of revoked certificates", streams=ended)
        return ended

    def _fleet_size(self) -> int:
        """Clusters in the fleet, counted again at most every ``FLEET_SIZE_SECONDS`` (asked as every stream opens)."""
        now = self._clock.monotonic()
        if now - self._counted[0] >= FLEET_SIZE_SECONDS:
            self._counted = (now, len(self._store.clusters()))
        return self._counted[1]

    # --- checks ---

    def _check_present(self) -> None:
        if self._presence is not None:
            self._presence.check()

    def _require_known(self, cluster: str) -> None:
        if cluster in self._store:  # released: by this process, or by the writer (a replica's copy of the state)
            return
        if self._fleet.fleet is None:
            detail = f": {self._fleet.fleet_error}" if self._fleet.fleet_error else ""
            raise Unavailable(f"the hub has not loaded {FLEET_FILE} yet{detail}")
        raise NotFound(f"cluster {cluster!r} is not in the fleet ({FLEET_FILE})")

    # --- RPCs ---

    async def WatchBundles(self, request: hub_pb2.WatchBundlesRequest, context):
        self._check_present()
        if self.admission is not None:  # first: a refusal costs the hub nothing more
            self.admission.admit()
        peer = caller()
        cluster = request.cluster
        self._require_known(cluster)
        log.info("agent watching", cluster=cluster, last_version=request.last_version)
        stream = self.streams.open(peer.identity.fingerprint, cluster, peer)
        have_blob = request.have_blob
        chunks_ok = request.accepts_chunks
        try:
            # a copy behind what the agent holds waits to catch up, or sends it on: never an older release (a
            # revocation or a newer watch meanwhile ends the stream at the watch's first ``alive`` check)
            await self._catch_up.release(self._store, cluster, request.last_version)
            if self.admission is not None:  # the whole fleet at this hub's rate: agents take their replica's share
                spread = self.admission.spread(max(len(self.streams), self._fleet_size()))
                await context.send_initial_metadata((entry(SPREAD_METADATA, spread),))
            async for event in self._store.watch(cluster, last_digest=request.last_digest, alive=stream.check):
                if isinstance(event, SignedBundle):
                    self._check_present()  # ends the stream: the agent moves on
                    for message in bundle_messages(
                        event, have_blob=have_blob, chunks_ok=chunks_ok, chunk_bytes=self._chunk_bytes
                    ):
                        yield message
                        # An idle stream waits in store.watch below for the next release: holding the
                        # last message here would pin it per agent (see shared_chunks).
                        del message
                    have_blob = event.digest
                else:
                    yield event_to_proto(event)
        finally:
            self.streams.close(stream)

    async def ReportStatus(
        self, request: hub_pb2.ReportStatusRequest, context
    ) -> hub_pb2.ReportStatusResponse:
        if not request.HasField("status"):
            raise InvalidInput("status is required")
        cluster = request.status.cluster
        self._require_known(cluster)
        accepted = self._statuses.report(status_from_proto(request.status, self._clock.now()))
        if not accepted:
            log.info("stale status report ignored", cluster=cluster)
        return hub_pb2.ReportStatusResponse()

    async def Sync(self, request: hub_pb2.SyncRequest, context) -> hub_pb2.SyncResponse:
        """Fetch Git now (one fetch at a time: the sync loop's lock), then say what came of it."""
        if not self._may_sync():
            raise Unavailable("this hub replica does not hold the writer lease and publishes nothing; call again "
                              "(a new connection may reach the writer)")
        return sync_result_to_proto(await self._fleet.sync_once())

    async def GetFleetStatus(
        self, request: hub_pb2.GetFleetStatusRequest, context
    ) -> hub_pb2.GetFleetStatusResponse:
        wanted = request.cluster or caller().cluster  # an agent asking for nothing means its own cluster
        fleet = self._fleet.fleet
        if fleet is None:
            if wanted:
                self._require_known(wanted)
            return hub_pb2.GetFleetStatusResponse(revision=self._fleet.revision)
        if wanted:
            self._require_known(wanted)
            names = [wanted]
        else:
            names = sorted(c.name for c in fleet.clusters if c.name in self._store)
        if request.page_token:  # the last cluster of the previous page: robust to clusters added or removed
            names = names[bisect.bisect_right(names, request.page_token):]
        views: list[hub_pb2.ClusterView] = []
        used = 0
        for name in names[: request.page_size or len(names)]:
            view = fit_view(self._view(fleet, name), FLEET_PAGE_BYTES)
            size = _framed(view.ByteSize())
            if views and used + size > FLEET_PAGE_BYTES:
                break
            views.append(view)
            used += size
        more = len(views) < len(names)
        return hub_pb2.GetFleetStatusResponse(
            revision=self._fleet.revision, clusters=views, next_page_token=views[-1].cluster if more else ""
        )

    def _view(self, fleet: Fleet, name: str) -> hub_pb2.ClusterView:
        cluster = fleet.cluster(name)
        try:
            paths = list(fleet.paths_for(cluster))
        except ConfigError:
            paths = []
        view = hub_pb2.ClusterView(cluster=name, labels=dict(cluster.labels), paths=paths)
        current = self._store.current(name)
        if current is not None:
            view.desired_version = current.release
            view.desired_release = current.label
            view.desired_digest = current.digest
            view.desired_revision = current.revision
            view.desired_objects = current.objects
        error = self._store.error(name)
        if error is not None:
            view.render_error = error.message
        reported = self._statuses.get(name)
        if reported is not None:
            view.reported.CopyFrom(status_to_proto(reported))
            view.applied_release = reported.applied_label
        return view
