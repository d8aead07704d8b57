"""What only the writer's sync knows (the fleet, render errors) is recorded for the replicas, on both backends:
only differences are written, a new writer starts from what the state holds, and a process without the
lease records nothing."""

from __future__ import annotations

import dataclasses

import pytest

from skerry.hub.bundles.store import HubStore
from skerry.hub.fleet import parse_fleet
from skerry.hub.replica import FLEET_CLUSTERS, FLEET_RECORD, RENDER_ERROR_RECORD, StoredFleet, SyncRecords
from skerry.hub.state import Fenced
from skerry.hub.writer import Writer
from tests.hub.helpers import FLEET_YAML

LEASE = 3600.0


@dataclasses.dataclass
class SyncView:
    """What ``SyncRecords`` reads of a ``Syncer`` after a sync: its fleet, head commit and fleet error."""

    fleet: object
    revision: str
    fleet_error: str | None = None


def hub(backend, holder: str):
    writer = Writer(backend.open(), holder, ttl=LEASE)
    store = HubStore(director=None)
    sync = SyncView(parse_fleet(FLEET_YAML), "c1")
    return writer, store, sync, SyncRecords(writer.state, writer, store, sync)


async def test_only_differences_are_written_and_a_new_writer_clears_what_healed_under_it(backend):
    writer, store, sync, records = hub(backend, "hub-a")
    standby = hub(backend, "hub-b")  # started before hub-a recorded anything
    assert writer.try_acquire() and not standby[0].try_acquire()
    store.set_error("oslo-prod", "overlays/prod: missing.yaml", "c1")
    assert await records.record() == 3  # the fleet, its head, one render error
    assert await records.record() == 0
    sync.fleet, sync.revision = parse_fleet(FLEET_YAML), "c2"  # a new commit, the same fleet
    assert await records.record() == 1  # the head only
    with writer.state.read() as tx:
        assert tx.record(RENDER_ERROR_RECORD, "oslo-prod")["message"] == "overlays/prod: missing.yaml"
        shown = StoredFleet()
        shown.adopt(FLEET_CLUSTERS, tx.record(FLEET_RECORD, FLEET_CLUSTERS))
    assert shown.fleet.cluster_names == sync.fleet.cluster_names
    assert shown.fleet.paths_for("oslo-prod") == sync.fleet.paths_for("oslo-prod")

    writer.release()
    with pytest.raises(Fenced):
        await records.record()
    new_writer, new_store, new_sync, new_records = standby
    assert new_writer.try_acquire()
    new_sync.revision = "c2"
    assert await new_records.record() == 1  # oslo-prod rendered fine under the new writer: its error is gone
    with new_writer.state.read() as tx:
        assert tx.records(RENDER_ERROR_RECORD) == {}
