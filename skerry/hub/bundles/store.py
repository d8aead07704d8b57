"""The current signed bundle of each cluster, its last render error, and watchers.

Release counter
---------------
Every signed release of a cluster carries a counter (the TUF metadata
``version``) that agents refuse to see go down (rollback protection). A
release is one transaction of ``releases`` (``skerry.hub.writer.Releases``,
fenced by the writer lease): the counter per cluster (strictly increasing
across restarts, writers and clock steps; the state's first counter is above
every unix-millisecond counter older hubs used), its number people read
(``counter - release_floor``: r1, r2... per cluster; ``skerry.core.release_number``),
the TUF files the director signed for it (counter and number in the target's
``custom``), and the cluster's ``bundle`` record (``bundle_record``: release,
number, digest, content digest, revision). If that transaction is refused (this
process is no longer the writer, the database is gone), nothing of it is kept
and the cluster keeps its current release. ``restore``/``adopt`` take the
records back: a restarted hub or a new writer compares a re-render with the
stored content digest (no new release for unchanged content), and a serving
replica (``skerry.hub.replica``) serves and streams what the writer released.

A new release is made only when the cluster's desired state changed.
"Changed" compares the *content digest*
(``skerry.hub.bundles.builder.content_digest``: the bundle without
``source.revision``), not the digest of the bundle bytes, which differs
for every commit: a commit that does not change what a cluster renders
gives that cluster no new release, and its agent nothing to re-apply. Its
served bundle keeps naming the commit at which its content last changed.

Releases are TUF director targets (``skerry.hub.trust.repository``): a
cluster gets a new release only once the release side signed its bundle
(``release-<env>``); until then the bundle waits in ``pending`` and
``retry_pending`` (called when a release role is published) tries again.
The director's online metadata is re-signed by the trust repository, not
re-released here. A watch event tells the agent to refresh; it fetches and
verifies the metadata through the TrustService.

Shared blobs (``publish_shared``)
--------------------------------
When many clusters render to the same objects, the bundle is published once
as a ``SharedBlob`` (the document with no cluster name: encoded and hashed
once, one ``bytes`` object referenced by every cluster's release), stored
once in the trust repository and directed per cluster in one pass
(``direct_many``). The watch event carries the blob's bytes (serialised once
for every stream), which the agent uses only if they match the verified
release target.

Watchers
--------
``watch(cluster)`` is an async iterator of ``SignedBundle`` and
``RenderFailure`` events: first the current bundle (unless the watcher
already has that digest) and the current render error, then each newer one.
A slow watcher skips intermediate releases and gets the newest (desired
state is level-based). Each cluster has one ``asyncio.Event`` that is
replaced on every change; a watcher holds a reference to it and waits, so a
watcher costs one suspended generator and one future (the hub must hold
~10,000 of them). All mutating methods must be called on the event loop's
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Protocol

import structlog

from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.core.canonical import sha256_digest
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import NotFound
from skerry.core.release_number import number_of
from skerry.hub.bundles.builder import content_digest
from skerry.hub.bundles.releases import (
    BUNDLE_RECORD,
    RenderFailure,
    RestoredBlobs,
    SharedBlob,
    SignedBundle,
    WatchEvent,
    bundle_record,
)
from skerry.hub.writer import InMemoryReleases

log = structlog.get_logger("skerry.hub.store")


class _Cluster:
    __slots__ = ("current", "error", "changed", "removed")

    def __init__(self) -> None:
        self.current: SignedBundle | None = None
        self.error: RenderFailure | None = None
        self.changed = asyncio.Event()
        self.removed = False

    def notify(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()


class LedgerTx(Protocol):
    def next_release(self, cluster: str) -> int: ...

    def next_releases(self, clusters: Iterable[str]) -> dict[str, int]: ...

    def release_floor(self) -> int: ...

    def put_record(self, kind: str, key: str, doc: Mapping | None) -> None: ...

    def put_records(self, kind: str, docs: Mapping[str, Mapping | None]) -> None: ...

    def alive(self) -> None: ...


class Ledger(Protocol):
    """Where releases are recorded (``skerry.hub.writer.Releases``: the hub state; ``InMemoryReleases`` in tests).

    ``open()`` is one transaction (fenced: it commits only while this process is the writer).
    """

    def open(self) -> contextlib.AbstractContextManager[LedgerTx]: ...


def render_of(bundle: Bundle) -> str:
    """``"<engine> <version>"``: provenance the director records beside a bundle (not part of its digest)."""
    return f"{bundle.engine} {bundle.engine_version}".strip()


class Director(Protocol):
    """The trust repository's director side (``skerry.hub.trust.repository.TrustRepository``)."""

    def direct(self, cluster: str, env: str, data: bytes, *, revision: str, release: int, number: int = 0,
               render: str = ""): ...

    def direct_many(self, clusters, data: bytes, *, revision: str, release, number=None,
                    render: str = "", alive: Callable[[], None] | None = None): ...


class AwaitingRelease(Exception):
    """The bundle was rendered but no release key set signed it yet; the cluster keeps its current one."""


class HubStore:
    """Each cluster's current release, as the director (a trust repository) names it."""

    def __init__(
        self,
        director: Director,
        *,
        clock: Clock | None = None,
        environment_of: Callable[[str], str] | None = None,
        releases: Ledger | None = None,
    ):
        self._ledger: Ledger = releases if releases is not None else InMemoryReleases()
        self._restored = RestoredBlobs()
        self._director = director
        self._environment_of = environment_of or (lambda cluster: "default")
        self._pending: dict[str, tuple[Bundle, bytes, str]] = {}
        self._clock = clock or SystemClock()
        self._clusters: dict[str, _Cluster] = {}

    # --- clusters -----------------------------------------------------------------------------

    def declare(self, clusters: Iterable[str]) -> list[str]:
        """Make the set of known clusters exactly ``clusters``; returns the removed ones.

        Watchers of a removed cluster end with ``NotFound``; its bundle is no longer served.
        """
        wanted = set(clusters)
        for name in wanted - set(self._clusters):
            self._clusters[name] = _Cluster()
        removed = sorted(set(self._clusters) - wanted)
        if removed:
            with self._ledger.open() as tx:
                tx.put_records(BUNDLE_RECORD, dict.fromkeys(removed))
        for name in removed:
            state = self._clusters.pop(name)
            state.removed = True
            state.notify()
        return removed

    def restore(self, records: Mapping[str, Mapping], blob: Callable[[str], bytes | None] | None = None) -> None:
        """Each cluster's current release as ``records`` (``bundle_record``) name it (``blob(hex)``: a blob's bytes)."""
        for cluster, doc in records.items():
            self.adopt(cluster, doc, blob)

    def adopt(self, cluster: str, doc: Mapping | None, blob: Callable[[str], bytes | None] | None = None) -> bool:
        """Take one stored record (None: the cluster was removed); True if the current release changed."""
        if doc is None:
            state = self._clusters.pop(cluster, None)
            if state is not None:  # removed: its watchers end
                state.removed = True
                state.notify()
            return state is not None
        state = self._clusters.setdefault(cluster, _Cluster())
        if state.current is not None and state.current.release >= int(doc["release"]):
            return False
        state.current = self._restored.signed(cluster, doc, blob)
        self._pending.pop(cluster, None)
        state.error = None
        state.notify()
        return True

    def clusters(self) -> list[str]:
        return sorted(self._clusters)

    def __contains__(self, cluster: str) -> bool:
        return cluster in self._clusters

    def _state(self, cluster: str) -> _Cluster:
        try:
            return self._clusters[cluster]
        except KeyError:
            raise NotFound(f"cluster {cluster!r} is not in the fleet") from None

    def current(self, cluster: str) -> SignedBundle | None:
        return self._state(cluster).current

    def error(self, cluster: str) -> RenderFailure | None:
        return self._state(cluster).error

    # --- publishing ---------------------------------------------------------------------------

    def publish(
        self, cluster: str, bundle: Bundle, *, encoded: bytes | None = None, content: str | None = None
    ) -> SignedBundle | None:
        """Make ``bundle`` the cluster's current one; returns the new release, or None if unchanged.

        ``encoded`` (``bundle.encode()``) and ``content`` (``content_digest(bundle)``) may be passed
        if the caller already computed them. Clears the cluster's render error. Unknown clusters are
        declared.
        """
        if bundle.cluster != cluster:
            raise ValueError(f"bundle is for {bundle.cluster!r}, not {cluster!r}")
        content = content_digest(bundle) if content is None else content
        state = self._clusters.get(cluster)
        if state is None:
            state = self._clusters[cluster] = _Cluster()
        now = self._clock.now()
        cleared = state.error is not None
        state.error = None
        current = state.current
        if current is not None and current.content_digest == content:
            return None
        data = bundle.encode() if encoded is None else encoded
        try:
            signed = self._direct(cluster, data, content, bundle.revision, bundle.paths, len(bundle.objects), now,
                                  render=render_of(bundle))
        except AwaitingRelease as e:
            self._pending[cluster] = (bundle, data, content)
            state.error = RenderFailure(cluster=cluster, revision=bundle.revision, message=str(e), at=now)
            state.notify()
            log.info("bundle awaits release signatures", cluster=cluster, revision=bundle.revision)
            return None
        self._pending.pop(cluster, None)
        state.current = signed
        state.notify()
        log.info(
            "bundle released",
            cluster=cluster,
            release=signed.release,
            release_name=signed.label,
            digest=signed.digest,
            revision=bundle.revision,
            error_cleared=cleared,
        )
        return signed

    def _direct(
        self,
        cluster: str,
        data: bytes,
        content: str,
        revision: str,
        paths: tuple[str, ...],
        objects: int,
        now: _dt.datetime,
        render: str = "",
    ) -> SignedBundle:
        env = self._environment_of(cluster)
        with self._ledger.open() as tx:
            counter = tx.next_release(cluster)
            directed = self._director.direct(cluster, env, data, revision=revision, release=counter,
                                             number=number_of(counter, tx.release_floor()), render=render)
            if directed is None:
                raise AwaitingRelease(
                    f"bundle {sha256_digest(data)} (revision {revision}) awaits signatures of release-{env}; "
                    f"sign it with `skerry keys sign --cluster {cluster}`"
                )
            signed = SignedBundle(
                cluster=cluster,
                release=directed.release,
                number=directed.number,
                digest=sha256_digest(data),
                content_digest=content,
                bundle=b"",
                revision=revision,
                paths=paths,
                objects=objects,
                expires=directed.expires,
                signed_at=now,
            )
            tx.put_record(BUNDLE_RECORD, cluster, bundle_record(signed))
        return signed

    def publish_shared(
        self, clusters: Iterable[str], bundle: Bundle, *, encoded: bytes | None = None, content: str | None = None
    ) -> list[str]:
        """Make one shared blob the current bundle of every cluster in ``clusters``; returns the released ones.

        ``bundle.cluster`` must be ``SHARED_CLUSTER`` (each director entry names its cluster). Clusters
        whose current release already has this content keep it.
        """
        if bundle.cluster != SHARED_CLUSTER:
            raise ValueError(f"a shared bundle names no cluster, not {bundle.cluster!r}")
        data = bundle.encode() if encoded is None else encoded
        content = content_digest(bundle) if content is None else content
        blob = SharedBlob(bundle=bundle, data=data, digest=sha256_digest(data), content_digest=content)
        return self._direct_shared(list(clusters), blob, self._clock.now())

    def _direct_shared(self, clusters: list[str], blob: SharedBlob, now: _dt.datetime) -> list[str]:
        """One content-addressed blob, a director entry per cluster (hash bins), one snapshot.

        Clusters whose release side has not signed the blob yet wait in ``pending`` (``retry_pending``).
        """
        bundle = blob.bundle
        todo = []
        for cluster in clusters:
            state = self._clusters.get(cluster)
            if state is None:
                state = self._clusters[cluster] = _Cluster()
            state.error = None
            if state.current is None or state.current.content_digest != blob.content_digest:
                todo.append(cluster)
        with self._ledger.open() as tx:  # counters, director entries and records: one fenced transaction
            counters = tx.next_releases(todo) if todo else {}  # (a cluster already directed keeps its own)
            floor = tx.release_floor() if todo else 0
            directed = self._director.direct_many(
                [(c, self._environment_of(c)) for c in todo], blob.data, revision=bundle.revision,
                release=counters.__getitem__, number=lambda c: number_of(counters[c], floor),
                render=render_of(bundle), alive=tx.alive)  # at 100,000 clusters it outlasts the lease
            signed: dict[str, SignedBundle] = {}
            for cluster in todo:
                tx.alive()  # (CPU between two statements, per cluster: at 100,000 clusters, seconds)
                got = directed[cluster]
                if got is not None:
                    signed[cluster] = SignedBundle(
                        cluster=cluster, release=got.release, number=got.number, digest=blob.digest,
                        content_digest=blob.content_digest,
                        bundle=blob.data, revision=bundle.revision, paths=bundle.paths,
                        objects=len(bundle.objects), expires=got.expires, signed_at=now, shared=blob)
            tx.put_records(BUNDLE_RECORD, {c: bundle_record(b) for c, b in signed.items()})  # many to a statement
        released, waiting = [], []
        for cluster in todo:
            state, got = self._clusters[cluster], signed.get(cluster)
            if got is None:
                self._pending[cluster] = (bundle, blob.data, blob.content_digest)
                state.error = RenderFailure(
                    cluster=cluster, revision=bundle.revision, at=now,
                    message=f"bundle {blob.digest} (revision {bundle.revision}) awaits signatures of "
                            f"release-{self._environment_of(cluster)}; sign it with `skerry keys sign --cluster {cluster}`")
                waiting.append(cluster)
            else:
                self._pending.pop(cluster, None)
                state.current = got
                released.append(cluster)
            state.notify()
        log.info("shared bundle directed", clusters=len(released), awaiting_release=len(waiting), digest=blob.digest,
                 revision=bundle.revision)
        return released

    def pending(self, cluster: str) -> tuple[Bundle, bytes, str] | None:
        """The rendered bundle of ``cluster`` that awaits release signatures, if any."""
        return self._pending.get(cluster)

    def retry_pending(self) -> list[str]:
        """Try to direct every bundle awaiting release signatures again; returns the released clusters."""
        released = []
        for cluster, (bundle, data, content) in list(self._pending.items()):
            if cluster not in self._clusters:
                continue
            if bundle.cluster == SHARED_CLUSTER:
                released += self.publish_shared([cluster], bundle, encoded=data, content=content)
            elif self.publish(cluster, bundle, encoded=data, content=content):
                released.append(cluster)
        return released

    def set_error(self, cluster: str, message: str, revision: str, *, at: _dt.datetime | None = None) -> RenderFailure:
        """Record why the cluster's state at ``revision`` failed (``at``: when the writer found it, if this
        process only shows it); the current bundle is untouched."""
        state = self._clusters.setdefault(cluster, _Cluster())
        if state.error is not None and (state.error.revision, state.error.message) == (revision, message):
            return state.error
        state.error = RenderFailure(cluster=cluster, revision=revision, message=message, at=at or self._clock.now())
        state.notify()
        log.warning("render failed; previous bundle stays served", cluster=cluster, revision=revision, error=message)
        return state.error

    def clear_error(self, cluster: str) -> None:
        state = self._clusters.get(cluster)
        if state is not None:
            state.error = None

    # --- watching -----------------------------------------------------------------------------

    def wake(self, cluster: str) -> None:
        """Wake the cluster's watchers without a change, so each re-runs its ``alive`` check."""
        state = self._clusters.get(cluster)
        if state is not None:
            state.notify()

    async def watch(
        self, cluster: str, *, last_digest: str = "", alive: Callable[[], None] | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Current bundle (skipped if its digest is ``last_digest``) and error, then every change.

        ``alive`` is called before every look at the state (first and after each wake-up); it
        raises to end the watch (revoked certificate, superseded stream): see ``wake``.
        """
        state = self._state(cluster)
        sent_release: int | None = None
        sent_error: tuple[str, str] | None = None
        first = True
        while True:
            if alive is not None:
                alive()
            if state.removed:
                raise NotFound(f"cluster {cluster!r} was removed from the fleet")
            changed = state.changed  # taken before yielding, so no change is missed meanwhile
            current = state.current
            if current is not None:
                if first and last_digest and current.digest == last_digest:
                    sent_release = current.release
                elif sent_release is None or current.release > sent_release:
                    sent_release = current.release
                    yield current
            first = False
            error = state.error  # read after the yield above: a publish meanwhile clears it
            if error is not None and (error.revision, error.message) != sent_error:
                sent_error = (error.revision, error.message)
                yield error
            await changed.wait()
