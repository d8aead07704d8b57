"""Every hub process serves what the writer published: its copy, followed from the state's change log.

Agents watch any hub process (writer, standby or ``--role serve``), which serves
them from memory: each cluster's current release in the store
(``skerry.hub.bundles.store``) and the TUF files in the trust repository.
``Follower`` keeps that copy current. It waits on the change feed
(``skerry.hub.state.feed``: PostgreSQL's NOTIFY as a wake-up, SQLite polling,
and in any case a re-read of the change log by sequence number every
``FOLLOW_SECONDS``), then reloads the trust repository's newest files before it
adopts the changed clusters' releases, so an agent woken by the store finds
the metadata naming its release when it fetches. The store wakes each changed
cluster's open watch streams. A follower that fell behind the pruned log
reloads everything. What it reads of the state it reads off the event loop (a
database away would otherwise hold every agent's stream and fetch), and a
trust repository left ``stale`` by a publication refused while the database
was away is read back whole (``settle``). The writer follows too: its own
commits are already in its copy and change nothing; and it publishes release signatures another process
collected up to their threshold (``signatures``: a replica stores them, only the
writer may publish: ``writer``).

Only the writer syncs, so what the sync alone knows is recorded for the
others by ``SyncRecords`` after each sync, in the writer's fenced
transaction (off the loop, on the threads it is handed: ``off_loop``, the hub's state-write threads):
the fleet as ``skerry.yaml`` last loaded (records ``fleet``:
``clusters`` when the fleet changed, ``head`` the commit and fleet error) and
each cluster's render error (``render-error``/<cluster>). A replica's
``Follower`` takes them into ``StoredFleet`` and the store, so its
GetFleetStatus lists the fleet and its watch streams carry render errors;
``ServedFleet`` is what the servicer reads: the sync's own view on the writer,
the recorded one elsewhere.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Callable, Mapping

import structlog

from skerry.core.errors import ConfigError, Unavailable
from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
from skerry.hub.catchup import CatchUp
from skerry.hub.fleet import Cluster, Fleet
from skerry.hub.presence import Presence
from skerry.hub.state import Change, Fenced, HubState, StateUnavailable
from skerry.hub.state.feed import FOLLOW_SECONDS, ChangeFeed, FellBehind
from skerry.hub.state.threads import OffLoop
from skerry.hub.state.trust_files import CHANGE_KIND as TRUST_CHANGE
from skerry.hub.state.trust_files import SIGNATURES_RECORD
from skerry.hub.sync import Syncer, SyncResult
from skerry.hub.trust.releasing import SubmitResult
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.writer import Writer

log = structlog.get_logger("skerry.hub.replica")

# Records the writer keeps for the others: the fleet (keys ``clusters`` and ``head``), each cluster's render error.
FLEET_RECORD, FLEET_CLUSTERS, FLEET_HEAD = "fleet", "clusters", "head"
RENDER_ERROR_RECORD = "render-error"


class SyncRecords:
    """The writer's side: after each sync, record the fleet and the render errors for the replicas."""

    def __init__(self, state: HubState, writer: Writer, store: HubStore, syncer: Syncer, *,
                 off_loop: OffLoop = asyncio.to_thread):
        self._state = state
        self._off_loop = off_loop
        self._writer = writer
        self._store = store
        self._syncer = syncer
        self._epoch: int | None = None  # the lease term the fields below were read in
        self._errors: dict[str, tuple[str, str]] = {}
        self._head: dict | None = None
        self._fleet: Fleet | None = None  # the fleet object last looked at (the sync parses anew per commit)
        self._fleet_doc: dict | None = None
        self._recording = asyncio.Lock()

    def _start_term(self) -> None:
        """What the state holds now (another writer may have recorded since): only differences are written."""
        with self._state.read() as tx:
            self._errors = {c: (d["revision"], d["message"]) for c, d in tx.records(RENDER_ERROR_RECORD).items()}
            self._head = tx.record(FLEET_RECORD, FLEET_HEAD)
            self._fleet_doc = tx.record(FLEET_RECORD, FLEET_CLUSTERS)
        self._fleet = None

    async def observe(self, _result: SyncResult, _seconds: float) -> None:
        """A ``Syncer`` observer; a process that lost the lease records nothing (the next writer will), and a
        database away is one line: what changed is still unrecorded, so the next sync writes it."""
        try:
            await self.record()
        except (Fenced, StateUnavailable) as e:
            log.warning("cannot record the fleet and render errors for the replicas; retried after the next sync",
                        reason=e.reason, error=str(e))

    async def record(self) -> int:
        """Write what changed since the last record in one fenced transaction; how many records it wrote.
        What changed is read on the event loop (the store and the sync live there); the state is read and
        written off it (a database away must not hold every agent's stream)."""
        lease = self._writer.lease
        if lease is None:
            raise Fenced(f"{self._writer.holder} is not the writer; nothing recorded")
        async with self._recording:  # one at a time: each compares with what the one before recorded
            if lease.epoch != self._epoch:
                await self._off_loop(self._start_term)
                self._epoch = lease.epoch
            fleet = self._syncer.fleet
            errors = {}
            for cluster in self._store.clusters():
                failure = self._store.error(cluster)
                if failure is not None:
                    errors[cluster] = (failure.revision, failure.message, failure.at)
            head = {"revision": self._syncer.revision, "error": self._syncer.fleet_error}
            changed = {c: e for c, e in errors.items() if self._errors.get(c) != e[:2]}
            gone = [c for c in self._errors if c not in errors]
            doc = fleet_doc(fleet) if fleet is not None and fleet is not self._fleet else self._fleet_doc
            fleet_changed = doc != self._fleet_doc
            if not (changed or gone or fleet_changed or head != self._head):
                self._fleet = fleet
                return 0
            await self._off_loop(self._write, doc if fleet_changed else None, head if head != self._head else None, {
                **{c: {"revision": revision, "message": message, "at": at.isoformat()}
                   for c, (revision, message, at) in changed.items()},
                **dict.fromkeys(gone)})
            written = len(changed) + len(gone) + int(fleet_changed) + int(head != self._head)
            self._fleet, self._fleet_doc, self._head = fleet, doc, head
            self._errors = {c: e[:2] for c, e in errors.items()}
            return written

    def _write(self, fleet: dict | None, head: dict | None, errors: Mapping[str, dict | None]) -> None:
        with self._writer.write() as tx:
            if fleet is not None:
                tx.put_record(FLEET_RECORD, FLEET_CLUSTERS, fleet)
            if head is not None:
                tx.put_record(FLEET_RECORD, FLEET_HEAD, head)
            tx.put_records(RENDER_ERROR_RECORD, errors)  # a broken base fails every cluster: many to a statement


def fleet_doc(fleet: Fleet) -> dict:
    """What a replica shows of the fleet: each cluster's labels, environment and paths (resolved)."""
    clusters = []
    for c in fleet.clusters:
        try:
            paths = list(fleet.paths_for(c))
        except ConfigError:
            paths = []  # matches no path: shown with none, as the writer shows it
        clusters.append({"name": c.name, "labels": dict(c.labels), "environment": c.environment, "paths": paths})
    return {"environments": list(fleet.environments), "clusters": clusters}


class StoredFleet:
    """The fleet as the writer recorded it (a ``skerry.hub.servicer.FleetView`` without a sync)."""

    def __init__(self) -> None:
        self.fleet: Fleet | None = None
        self.revision = ""
        self.fleet_error: str | None = None

    def adopt(self, key: str, doc: Mapping | None) -> None:
        if key == FLEET_CLUSTERS:
            self.fleet = None if doc is None else Fleet(
                environments=tuple(doc["environments"]),
                clusters=tuple(Cluster(name=c["name"], labels=dict(c["labels"]), environment=c["environment"],
                                       paths=tuple(c["paths"])) for c in doc["clusters"]),
                paths=())
        elif key == FLEET_HEAD:
            self.revision = str((doc or {}).get("revision") or "")
            self.fleet_error = (doc or {}).get("error")

    async def sync_once(self, *, force: bool = False) -> SyncResult:
        raise Unavailable("this hub replica does not sync: the writer does")


class ServedFleet:
    """What the servicer shows of the fleet: the sync's own on the writer, the recorded one on the others."""

    def __init__(self, syncer: Syncer, stored: StoredFleet, is_writer: Callable[[], bool]):
        self._syncer = syncer
        self._stored = stored
        self._is_writer = is_writer

    def _view(self):
        if self._is_writer() or (self._stored.fleet is None and self._syncer.fleet is not None):
            return self._syncer
        return self._stored

    @property
    def fleet(self) -> Fleet | None:
        return self._view().fleet

    @property
    def revision(self) -> str:
        return self._view().revision

    @property
    def fleet_error(self) -> str | None:
        return self._view().fleet_error

    async def sync_once(self, *, force: bool = False) -> SyncResult:
        return await self._syncer.sync_once(force=force)


class Follower:
    def __init__(self, state: HubState, store: HubStore, trust: TrustRepository, *,
                 blob: Callable[[str], bytes | None] | None = None, interval: float = FOLLOW_SECONDS,
                 writer: Writer | None = None, fleet: StoredFleet | None = None, presence: Presence | None = None,
                 catch_up: CatchUp | None = None, off_loop: OffLoop = asyncio.to_thread):
        """``presence``: told of each look at the change log, read or failed (what the servicers ask before
        they serve this copy: ``skerry.hub.presence``); ``catch_up``: told after each change taken in (what
        a watch or fetch of an agent ahead of this copy waits for: ``skerry.hub.catchup``); ``off_loop``: where
        its state writes run (release signatures kept; its reads run on the default executor, one at a time)."""
        self._state = state
        self._off_loop = off_loop
        self._store = store
        self._trust = trust
        self._blob = blob
        self._interval = interval
        self._writer = writer
        self._fleet = fleet
        self._presence = presence or Presence()
        self._catch_up = catch_up or CatchUp()
        self.applied = 0  # changes applied so far
        self.caught_up = False  # read the whole state once, and the last look at the change log worked

    async def run(self) -> None:
        feed: ChangeFeed | None = None  # made, with a full reload, at the start and after anything went wrong
        while True:
            started = self._presence.alive()
            try:
                if feed is None:
                    feed = await asyncio.to_thread(ChangeFeed, self._state)
                    await self.reload()  # anything committed before the feed's position
                else:
                    await self.apply(await asyncio.to_thread(feed.wait, self._interval))
                self.caught_up = True
                self._presence.looked(started)
            except FellBehind as e:
                log.warning("fell behind the change log; reloading everything", error=str(e))
                feed = None
            except StateUnavailable as e:  # changes read but not taken in would be lost: reload them all
                log.error("cannot follow the hub state; serving what we have", error=str(e))
                self.caught_up, feed = False, None
                self._presence.looked(started)  # the database is away, not this process: serve what we have
                await asyncio.sleep(self._interval)

    async def apply(self, changes: list[Change]) -> None:
        """Take in what ``changes`` name: the trust repository's newest files, then the changed clusters."""
        if self._trust.stale:
            await self.settle()
        elif any(c.kind == TRUST_CHANGE for c in changes):
            await asyncio.to_thread(self._trust.load)
        clusters = sorted({c.key for c in changes if c.kind == BUNDLE_RECORD})
        if clusters:
            docs = await asyncio.to_thread(self._read, clusters)
            await self._adopt({cluster: docs.get(cluster) for cluster in clusters})
        synced = {(c.kind, c.key) for c in changes if c.kind in (FLEET_RECORD, RENDER_ERROR_RECORD)}
        if synced:
            docs = await asyncio.to_thread(self._read_synced, synced)
            self._adopt_synced(docs)
        if self._writer is not None and self._writer.is_writer:
            for role in sorted({c.key for c in changes if c.kind == SIGNATURES_RECORD}):
                try:
                    await self._publish_collected(role)
                except Exception:  # noqa: BLE001 - retried with the next signature; logged
                    log.exception("cannot publish collected release signatures", role=role)
        self.applied += len(changes)
        self._catch_up.advanced()

    async def settle(self) -> None:
        """The trust repository as the state holds it, read off the loop and taken on it (``stale``: after a
        publication refused while the database was away, it may hold versions the state never committed)."""
        self._trust.become(await asyncio.to_thread(self._trust.reloaded))

    async def ready_to_publish(self) -> None:
        """Before the writer publishes on the loop (``Syncer``'s ``before_publish``): the database answers, the
        lease is held (``Writer.confirm``) and the trust repository holds what the state does."""
        if self._writer is None:
            raise Fenced("this hub replica does not publish")
        await self._writer.confirm()
        if self._trust.stale:
            await self.settle()

    async def _publish_collected(self, role: str) -> None:
        """Another process collected ``role``'s release signatures up to its threshold: publish them."""
        md = await asyncio.to_thread(self._trust.pending, role)
        if md is not None and len(md.signatures) >= self._trust.role_threshold(role):
            await self.submit_release(role, md.to_bytes())

    async def submit_release(self, role: str, data: bytes) -> SubmitResult:
        """Release signatures (CI's ``SubmitRelease``, or collected by another process): checked and kept off
        the event loop; at the threshold, published on the loop once the database answered and this process
        holds the lease (``ready_to_publish``: ``Fenced`` on a replica, whose kept signatures the writer's
        follower publishes)."""
        md, result = await self._off_loop(self._trust.collect_release, role, data)
        if result.published:
            await self.ready_to_publish()
            self._trust.publish_collected(result.role, md, result.signatures)
        return result

    def _read_synced(self, keys) -> dict[tuple[str, str], dict | None]:
        by_kind: dict[str, list[str]] = {}
        for kind, key in sorted(keys):
            by_kind.setdefault(kind, []).append(key)
        with self._state.read() as tx:
            found = {kind: tx.records_of(kind, names) for kind, names in by_kind.items()}
        return {(kind, key): found[kind].get(key) for kind, key in sorted(keys)}

    def _read_all_synced(self) -> dict[tuple[str, str], dict | None]:
        with self._state.read() as tx:
            return {(kind, key): doc for kind in (FLEET_RECORD, RENDER_ERROR_RECORD)
                    for key, doc in tx.records(kind).items()}

    def _adopt_synced(self, docs: Mapping[tuple[str, str], Mapping | None]) -> None:
        """The fleet and render errors the writer recorded (the writer's own sync knows them first)."""
        if self._writer is not None and self._writer.is_writer:
            return
        for (kind, key), doc in docs.items():
            if kind == FLEET_RECORD and self._fleet is not None:
                self._fleet.adopt(key, doc)
            elif kind == RENDER_ERROR_RECORD and doc is None:
                if key in self._store:
                    self._store.clear_error(key)
            elif kind == RENDER_ERROR_RECORD:
                self._store.set_error(key, str(doc["message"]), str(doc["revision"]),
                                      at=_dt.datetime.fromisoformat(doc["at"]))

    def _read(self, clusters: list[str]) -> dict[str, dict]:
        with self._state.read() as tx:
            return tx.records_of(BUNDLE_RECORD, clusters)

    async def reload(self) -> None:
        """Take the whole published state: the trust repository's newest files, every cluster's release."""
        if self._trust.stale:
            await self.settle()
        else:
            await asyncio.to_thread(self._trust.load)
        docs = await asyncio.to_thread(self._read_all)
        for cluster in set(self._store.clusters()) - set(docs):
            if self._store.current(cluster) is not None:  # released, and its record is gone: removed
                self._store.adopt(cluster, None)
        await self._adopt(docs)
        synced = await asyncio.to_thread(self._read_all_synced)
        for cluster in self._store.clusters():  # errors the writer no longer records
            if (RENDER_ERROR_RECORD, cluster) not in synced:
                synced[(RENDER_ERROR_RECORD, cluster)] = None
        self._adopt_synced(synced)
        self._catch_up.advanced()

    async def _adopt(self, docs: Mapping[str, Mapping | None]) -> None:
        """Take records into the store; the shared blobs the newer ones name are read first, off the loop."""
        wanted = sorted({str(doc["digest"]).removeprefix("sha256:") for cluster, doc in docs.items()
                         if doc is not None and doc.get("shared") and self._newer(cluster, doc)})
        blobs = await asyncio.to_thread(self._read_blobs, wanted) if wanted and self._blob is not None else {}
        for cluster, doc in docs.items():
            self._store.adopt(cluster, doc, blobs.get)

    def _newer(self, cluster: str, doc: Mapping) -> bool:
        """Whether the store would take ``doc`` as the cluster's new current release."""
        current = self._store.current(cluster) if cluster in self._store else None
        return current is None or current.release < int(doc["release"])

    def _read_blobs(self, hexdigests: list[str]) -> dict[str, bytes | None]:
        return {hexdigest: self._blob(hexdigest) for hexdigest in hexdigests}

    def _read_all(self) -> dict[str, dict]:
        with self._state.read() as tx:
            return tx.records(BUNDLE_RECORD)
