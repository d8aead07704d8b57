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
copy and change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
from skerry.hub.state import HubState, StateUnavailable
from skerry.hub.state.feed import ChangeFeed, FellBehind
from skerry.hub.state.trust_files import CHANGE_KIND as TRUST_CHANGE
from skerry.hub.trust.repository import TrustRepository

log = structlog.get_logger("skerry.hub.replica")

# Longest a change waits when its wake-up was lost (a NOTIFY to a disconnected listener is never replayed).
FOLLOW_SECONDS = 1.0


class Follower:
    def __init__(self, state: HubState, store: HubStore, trust: TrustRepository, *,
                 blob: Callable[[str], bytes | None] | None = None, interval: float = FOLLOW_SECONDS):
        self._state = state
        self._store = store
        self._trust = trust
        self._blob = blob
        self._interval = interval
        self.applied = 0  # changes applied so far (a readiness signal: caught up once it moves)

    async def run(self) -> None:
        feed = await asyncio.to_thread(ChangeFeed, self._state)
        await self.reload()  # anything committed before the feed's position
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
                await asyncio.sleep(self._interval)
                continue
            trust_changed = any(c.kind == TRUST_CHANGE for c in changes)
            clusters = sorted({c.key for c in changes if c.kind == BUNDLE_RECORD})
            if trust_changed:
                await asyncio.to_thread(self._trust.load)
            if clusters:
                docs = await asyncio.to_thread(self._read, clusters)
                for cluster in clusters:
                    self._store.adopt(cluster, docs.get(cluster), self._blob)
            self.applied += len(changes)

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
