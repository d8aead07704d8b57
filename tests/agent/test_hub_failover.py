"""The whole agent given two hub replicas: it applies from one, that one stops, and the watch, the TUF
refresh and the status reports all continue on the other, from the release it already applied."""

from __future__ import annotations

import pytest

from skerry.api.v1 import hub_pb2

from .fakes import FakeHub
from .helpers import configmap

pytestmark = pytest.mark.kube

# From the replica stopping to the newer bundle applied through the other (reconnect, TUF refresh, apply).
FAILOVER_SECONDS = 20.0


async def test_the_agent_carries_on_with_the_other_replica_when_its_hub_stops(
    pki, bundles, make_app, kube, namespace
):
    hubs = {}
    for _ in range(2):
        hub = await FakeHub(pki, trust=bundles.world).start()  # both serve the same trust repository
        hubs[hub.address] = hub
    app = make_app(",".join(hubs))
    await app.start()
    try:
        first = bundles.signed_message([configmap("v1", namespace)])
        for hub in hubs.values():
            await hub.send(hub_pb2.WatchBundlesResponse(bundle=first))
        used = hubs[app.endpoints.current]
        await used.wait_for(lambda: any(r.applied_version == first.version for r in used.reports))

        await used.stop()
        other = next(h for h in hubs.values() if h is not used)
        second = bundles.signed_message([configmap("v2", namespace)])
        await other.send(hub_pb2.WatchBundlesResponse(bundle=second))
        await other.wait_for(lambda: any(r.applied_version == second.version for r in other.reports),
                             FAILOVER_SECONDS)
        assert app.endpoints.current == other.address
        # it came to the other replica saying what it had applied: nothing of the first was sent again
        assert [(r.last_version, r.last_digest) for r in other.requests] == [(first.version, first.digest)]
        assert kube.get("v1", "ConfigMap", "v2", namespace) is not None
    finally:
        await app.stop()
        for hub in hubs.values():
            await hub.stop()
