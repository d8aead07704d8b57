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
reloads everything. The writer follows too: its own commits are already in its
copy and change nothing; and it publishes release signatures another process
collected up to their threshold (``signatures``: a replica stores them, only the
writer may publish: ``writer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
from skerry.hub.state import Change, HubState, StateUnavailable
from skerry.hub.state.feed import ChangeFeed, FellBehind
from skerry.hub.state.trust_files import CHANGE_KIND as TRUST_CHANGE
from skerry.hub.state.trust_files import SIGNATURES_RECORD
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.writer import Writer

log = structlog.get_logger("skerry.hub.replica")

# Longest a change waits when its wake-up was lost (a NOTIFY to a disconnected listener is never replayed).
FOLLOW_SECONDS = 1.0


class Follower:
    def __init__(self, state: HubState, store: HubStore, trust: TrustRepository, *,
                 blob: Callable[[str], bytes | None] | None = None, interval: float = FOLLOW_SECONDS,
                 writer: Writer | None = None):
        self._state = state
        self._store = store
        self._trust = trust
        self._blob = blob
        self._interval = interval
        self._writer = writer
        self.applied = 0  # changes applied so far
        self.caught_up = False  # read the whole state once, and the last look at the change log worked

    async def run(self) -> None:
        feed = await asyncio.to_thread(ChangeFeed, self._state)
        await self.reload()  # anything committed before the feed's position
        self.caught_up = True
        while True:
            try:
                changes = await asyncio.to_thread(feed.wait, self._interval)
            except FellBehind as e:
                log.warning("fell behind the change log; reloading everything", error=str(e))
                await asyncio.to_thread(feed.skip_to_end)
                await self.reload()
                continue
            except StateUnavailable as e:
                log.error("cannot follow the hub state; serving what we have", error=str(e))
                self.caught_up = False
                await asyncio.sleep(self._interval)
                continue
            await self.apply(changes)
            self.caught_up = True

    async def apply(self, changes: list[Change]) -> None:
        """Take in what ``changes`` name: the trust repository's newest files, then the changed clusters."""
        if any(c.kind == TRUST_CHANGE for c in changes):
            await asyncio.to_thread(self._trust.load)
        clusters = sorted({c.key for c in changes if c.kind == BUNDLE_RECORD})
        if clusters:
            docs = await asyncio.to_thread(self._read, clusters)
            for cluster in clusters:
                self._store.adopt(cluster, docs.get(cluster), self._blob)
        if self._writer is not None and self._writer.is_writer:
            for role in sorted({c.key for c in changes if c.kind == SIGNATURES_RECORD}):
                try:
                    self._publish_collected(role)
                except Exception:  # noqa: BLE001 - retried with the next signature; logged
                    log.exception("cannot publish collected release signatures", role=role)
        self.applied += len(changes)

    def _publish_collected(self, role: str) -> None:
        """Another process collected ``role``'s release signatures up to its threshold: publish them."""
        md = self._trust.pending(role)
        if md is not None and len(md.signatures) >= self._trust.role_threshold(role):
            self._trust.submit_release(role, md.to_bytes())

    def _read(self, clusters: list[str]) -> dict[str, dict]:
        with self._state.read() as tx:
            return {c: doc for c in clusters if (doc := tx.record(BUNDLE_RECORD, c)) is not None}

    async def reload(self) -> None:
        """Take the whole published state: the trust repository's newest files, every cluster's release."""
        await asyncio.to_thread(self._trust.load)
        docs = await asyncio.to_thread(self._read_all)
        for cluster in set(self._store.clusters()) - set(docs):
            if self._store.current(cluster) is not None:  # released, and its record is gone: removed
                self._store.adopt(cluster, None)
        self._store.restore(docs, self._blob)

    def _read_all(self) -> dict[str, dict]:
        with self._state.read() as tx:
            return tx.records(BUNDLE_RECORD)
