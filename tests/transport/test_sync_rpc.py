"""``HubService.Sync`` (``skerry fetch``): only the replica holding the writer lease fetches and publishes;
another says so (UNAVAILABLE, so the caller tries again and may reach the writer) and fetches nothing."""

from __future__ import annotations

import pytest

from skerry.api.v1 import hub_pb2
from skerry.core.errors import Unavailable
from skerry.hub.bundles.store import HubStore
from skerry.hub.servicer import HubServicer
from skerry.hub.status import StatusBoard

from .hubs import StaticFleetView


class CountingFleetView(StaticFleetView):
    def __init__(self):
        self.syncs = 0

    async def sync_once(self, *, force: bool = False):
        self.syncs += 1
        return await super().sync_once(force=force)


@pytest.mark.parametrize("writer", [True, False])
async def test_only_the_writer_fetches(writer, dev_trust):
    fleet = CountingFleetView()
    servicer = HubServicer(HubStore(dev_trust.repository()), StatusBoard(), fleet, may_sync=lambda: writer)
    if writer:
        reply = await servicer.Sync(hub_pb2.SyncRequest(), None)
        assert reply.commit == fleet.revision and fleet.syncs == 1
    else:
        with pytest.raises(Unavailable, match="writer lease"):
            await servicer.Sync(hub_pb2.SyncRequest(), None)
        assert fleet.syncs == 0
