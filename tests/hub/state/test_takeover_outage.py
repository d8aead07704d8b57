"""A takeover whose trust garbage collection meets a stopped PostgreSQL: the new writer serves, and collects later.

A process that takes the writer lease over collects, before anything publishes, what the previous writer's
offers to CI left in the state (``TrustRepository.collect_stored_garbage``: one fenced writer transaction,
on the hub's state-write threads). Here the standby ``hub-b`` takes over from ``hub-a`` (a clean stop that
gives the lease up), and its collection finds a blob nothing lists: this test's own connection holds that
row (``FOR UPDATE``, as another session's transaction would), so the collection waits on it, and the test
then stops the server under it. ``hub-b`` must keep serving: a new agent gets its bundle, verified, within
its deadline (the bundle's bytes one agent already fetched through it, kept across the takeover's re-read of
the trust repository); its process and loops live on; once the database is back the collection is done (the
term's start, where it runs, is started again until it is: a collection retried from a loop would race
the publications, whose new blobs it does not know of yet), the blob is gone, and ``hub-b`` releases the
next commit. Nothing of the stopped collection is left half done (it is one transaction), and what ends
up collecting is again the writer's fenced transaction at the start of a term (a lease that ran out
during the outage is taken again first).

The second test fails only the collection (its session is ended; the database stays up, so everything
after it in the start would succeed): the collection must still be retried, not left to the next
takeover, which may never come. Checked against the code before: the garbage stayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import psycopg
import pytest

from skerry.hub.app import HubApp
from tests.hub.state.test_writer_outage import (
    CLUSTER,
    hub_process,
    releases_next,
    served_within_deadline,
    writer_hub,
)

GARBAGE = b"a bundle an offer to CI named, never released"
# How long the standby may take to take the lease over and reach its collection (it polls the lease every second).
TAKEOVER = 30.0


# How long a failed collection may take to be done again once the database answers (the pool reconnects with a
# back-off, the term starts again a second later); with the hub's start, well inside the test's 90 s.
RETRY = 30.0
BLOCKED = ("FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'skerry-hub'")


def admin_sql(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as admin:
        return admin.execute(sql).fetchone()[0]


async def waits_on_a_lock(dsn: str) -> None:
    """Until a hub session waits on a row lock (the collection meeting the held row), or the test fails."""
    try:
        async with asyncio.timeout(TAKEOVER):
            while not await asyncio.to_thread(admin_sql, dsn, f"SELECT count(*) {BLOCKED}"):
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"the new writer's garbage collection never reached the held row within {TAKEOVER:.0f}s")


def blob_stored(hub: HubApp, digest: str) -> bool:
    with hub.state.read() as tx:
        return tx.blob(digest) is not None


def blob_stored_or_away(hub: HubApp, digest: str) -> bool:
    """Whether the garbage is still stored (True while the database cannot say)."""
    try:
        return blob_stored(hub, digest)
    except Exception:  # noqa: BLE001 - the pool reconnects with a back-off
        return True


class Takeover:
    """hub-a, the writer, with garbage in the state; hub-b standing by; this test's session holding the garbage
    row. ``start`` stops hub-a (its lease given up) and returns once hub-b's collection waits on that row."""

    def __init__(self, fleet_repo, tmp_path, pki, engine, dev_trust, dsn: str):
        self.args = (fleet_repo, tmp_path, pki, engine, dev_trust, dsn)
        self.dsn = dsn
        self.digest = hashlib.sha256(GARBAGE).hexdigest()
        self.first = self.second = self.holder = None

    async def start(self) -> HubApp:
        fleet_repo, tmp_path, pki, engine, dev_trust, dsn = self.args
        self.first = await writer_hub(*self.args)
        with self.first.state.write() as tx:  # left by an offer to CI: no role version lists it
            tx.put_blob(self.digest, GARBAGE)
        self.second = await hub_process(*self.args, "hub-b")
        # An agent of the cluster already verified through hub-b: the bundle's bytes are in its memory, as they
        # are once any agent of a release fetched them (a replica reads them from the state on the first fetch).
        await served_within_deadline(self.second, pki, dev_trust, tmp_path / "connected-agent")
        assert not self.second.writer.is_writer
        self.holder = psycopg.connect(dsn)  # another session's transaction on the garbage row
        self.holder.execute("SELECT digest FROM blobs WHERE digest = %s FOR UPDATE", (self.digest,))
        await self.first.stop(grace=0)  # gives the lease up: hub-b takes over and collects
        await waits_on_a_lock(dsn)
        assert self.second.writer.is_writer
        return self.second

    async def close(self) -> None:
        if self.holder is not None:
            with contextlib.suppress(psycopg.Error):
                self.holder.close()
        for hub in (self.first, self.second):
            if hub is not None:
                await hub.stop(grace=0)


async def test_a_takeover_whose_garbage_collection_meets_a_stopped_database_serves_and_collects_it_later(
    fleet_repo, tmp_path, pki, engine, dev_trust, database
):
    server, dsn = database
    takeover = Takeover(fleet_repo, tmp_path, pki, engine, dev_trust, dsn)
    port = server.port
    try:
        second = await takeover.start()
        released = second.store.current(CLUSTER)
        server.stop("fast")  # under the collection's transaction
        try:
            streamed, verified = await served_within_deadline(second, pki, dev_trust, tmp_path / "agent")
            assert streamed == released.release and verified is not None
            assert verified.release == released.release
        finally:
            server.start(port=port)
        try:
            async with asyncio.timeout(RETRY):
                while await asyncio.to_thread(blob_stored_or_away, second, takeover.digest):
                    await asyncio.sleep(0.5)
                await releases_next(second, fleet_repo, 5)
        except TimeoutError:
            pytest.fail(f"hub-b did not collect the garbage and release a commit within {RETRY:.0f}s of the "
                        f"database's return")
        assert second.store.current(CLUSTER).release > released.release
        assert second.writer.is_writer  # its duties live on (a new term if its lease ran out meanwhile)
        assert second.duties is not None and second.duties.terms > 1  # the term's start was started again
    finally:
        await takeover.close()


async def test_a_takeover_whose_garbage_collection_alone_fails_collects_it_again(
    fleet_repo, tmp_path, pki, engine, dev_trust, database
):
    _, dsn = database
    takeover = Takeover(fleet_repo, tmp_path, pki, engine, dev_trust, dsn)
    try:
        second = await takeover.start()
        assert await asyncio.to_thread(admin_sql, dsn, f"SELECT count(pg_terminate_backend(pid)) {BLOCKED}") == 1
        takeover.holder.rollback()  # the row is free again: nothing stands in the way of a second collection
        try:
            async with asyncio.timeout(RETRY):
                while await asyncio.to_thread(blob_stored, second, takeover.digest):
                    await asyncio.sleep(0.5)
        except TimeoutError:
            pytest.fail(f"a takeover's garbage collection that failed was not done again within {RETRY:.0f}s")
        async with asyncio.timeout(RETRY):
            await releases_next(second, fleet_repo, 5)  # and the writer's duties run
        assert second.writer.is_writer and second.duties.terms > 1
    finally:
        await takeover.close()
