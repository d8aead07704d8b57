"""What a hub process must go on doing when the database is slow or gone, or its own event loop is busy."""

from __future__ import annotations

import asyncio
import time

import pytest

from skerry.core.errors import NotFound
from skerry.hub.state.trust_files import TrustFiles
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.writer import Duties, Writer
from tests.hub.state.test_trust_in_state import CLUSTER, Hub, bundle


async def test_a_writer_whose_event_loop_is_busy_longer_than_its_lease_keeps_the_lease(backend):
    # A publish to thousands of clusters is CPU work on the writer's loop; its lease must not lapse meanwhile
    # (it did: every takeover's first full sync outlasted the lease, and the writers took turns forever).
    mine, theirs = backend.open(), backend.open()
    writer = Writer(mine, "hub-a", ttl=0.4)
    assert writer.try_acquire()
    hold = asyncio.create_task(writer.hold())
    await asyncio.sleep(0.05)
    time.sleep(1.0)  # the loop gets no turn for two and a half lease lifetimes
    assert theirs.acquire_lease("hub-b", 0.4) is None  # nobody could take it over
    with writer.write() as tx:  # and its writes still commit
        tx.next_release(CLUSTER)
    assert writer.is_writer and not hold.done()
    hold.cancel()
    await asyncio.gather(hold, return_exceptions=True)


def test_a_replica_answers_the_next_root_probe_without_the_database(backend, dev_trust, tmp_path):
    # Every agent refresh asks for the next root version; a replica must not wait on the database for it
    # (during an outage a blocked read held the whole replica up for the pool timeout).
    hub = Hub(backend, dev_trust, "hub-a")
    hub.store.publish(CLUSTER, bundle("c1"))
    state = backend.open()
    served = TrustRepository(tmp_path / "no-trust-dir", storage=TrustFiles(state), online={})
    timestamp = served.fetch("metadata/timestamp.json")
    state.close()  # the database is gone for this replica
    with pytest.raises(NotFound):
        served.fetch("metadata/2.root.json")
    assert served.fetch("metadata/timestamp.json") == timestamp  # and what it holds is still served


async def test_a_new_writer_keeps_its_lease_while_its_duties_start(backend):
    # A takeover starts with a reload and a full sync of the fleet, which may take longer than the lease:
    # the lease is renewed from the moment it is taken, not once the duties are running.
    mine, theirs = backend.open(), backend.open()
    writer = Writer(mine, "hub-a", ttl=0.4)
    stopped = []
    started = asyncio.Event()

    async def start():
        await asyncio.sleep(1.0)  # two and a half lease lifetimes
        started.set()
        return []

    async def stop():
        stopped.append(True)

    duties = Duties(writer, start, stop, poll=0.05)
    task = asyncio.create_task(duties.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.1)
        assert theirs.acquire_lease("hub-b", 0.4) is None
        assert duties.terms == 1 and not stopped and writer.is_writer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
