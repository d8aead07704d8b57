"""GetFleetStatus in a fleet whose status is larger than one gRPC message: pages, never over the cap.

Real hub over mutual TLS; three agents report 20,000 objects each (the hub's per-report maximum), one of
them a report of nearly 16 MiB on its own: ~29 MiB of status in all.
"""

from __future__ import annotations

from skerry.api.v1 import common_pb2, hub_pb2
from skerry.core.rpc import MAX_MESSAGE_BYTES
from skerry.hub.status import MAX_OBJECTS

from .test_servicer import hub_stub, running_hub

CLUSTERS = ("bergen-dev", "oslo-dev", "oslo-prod")


def big_report(cluster: str, message_bytes: int) -> hub_pb2.ReportStatusRequest:
    objects = [
        hub_pb2.ObjectStatus(
            ref=common_pb2.ObjectRef(version="v1", kind="ConfigMap", namespace="web", name=f"cm-{i:05d}"),
            action="failed",
            message=f"{i:05d} " + "x" * message_bytes,
        )
        for i in range(MAX_OBJECTS)
    ]
    status = hub_pb2.ClusterStatus(
        cluster=cluster, applied_version=3, observed_unix_ms=1000, objects=objects,
        conditions=[common_pb2.Condition(type="Ready", status="False", reason="ApplyFailed", message="20000 failed")],
    )
    return hub_pb2.ReportStatusRequest(status=status)


async def test_fleet_status_over_16_mib_comes_in_pages_each_under_the_cap(fleet_repo, tmp_path, pki, engine, dev_trust):
    reports = {"bergen-dev": big_report("bergen-dev", 300), "oslo-dev": big_report("oslo-dev", 300),
               "oslo-prod": big_report("oslo-prod", 770)}
    assert MAX_MESSAGE_BYTES - 512 * 1024 < reports["oslo-prod"].ByteSize() < MAX_MESSAGE_BYTES
    assert sum(r.ByteSize() for r in reports.values()) > 28 * 1024 * 1024
    async with running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app:
        for cluster, report in reports.items():
            async with hub_stub(app.port, pki.agent(cluster)) as agent:
                await agent.ReportStatus(report, timeout=60)
        async with hub_stub(app.port, pki.operator("ops")) as ops:
            pages, token = [], ""
            while True:
                page = await ops.GetFleetStatus(hub_pb2.GetFleetStatusRequest(page_token=token), timeout=60)
                pages.append(page)
                token = page.next_page_token
                if not token:
                    break
            one = await ops.GetFleetStatus(hub_pb2.GetFleetStatusRequest(page_size=1), timeout=60)
    assert len(pages) > 1 and all(p.ByteSize() < MAX_MESSAGE_BYTES for p in pages)
    assert all(p.revision == fleet_repo.head() for p in pages)
    views = [v for p in pages for v in p.clusters]
    assert [v.cluster for v in views] == list(CLUSTERS)  # each once, by name
    by_name = {v.cluster: v for v in views}
    for cluster in ("bergen-dev", "oslo-dev"):  # fit whole, with every object
        assert len(by_name[cluster].reported.objects) == MAX_OBJECTS
        assert by_name[cluster].reported_objects_omitted == 0
    prod = by_name["oslo-prod"]  # alone over a page: the last objects are left out, and counted
    assert 0 < prod.reported_objects_omitted < MAX_OBJECTS
    assert len(prod.reported.objects) + prod.reported_objects_omitted == MAX_OBJECTS
    assert prod.reported.objects[0].ref.name == "cm-00000" and prod.reported.conditions[0].reason == "ApplyFailed"
    assert [v.cluster for v in one.clusters] == ["bergen-dev"] and one.next_page_token == "bergen-dev"


async def test_all_pages_reads_the_whole_fleet(fleet_repo, tmp_path, pki, engine, dev_trust):
    import asyncio

    from skerry.api.v1 import hub_pb2_grpc
    from skerry.core.client import all_pages, secure_channel

    async with running_hub(fleet_repo, tmp_path, pki, engine, dev_trust) as app:

        def read() -> hub_pb2.GetFleetStatusResponse:
            with secure_channel(f"127.0.0.1:{app.port}", pki.operator("ops")) as channel:
                stub = hub_pb2_grpc.HubServiceStub(channel)
                return all_pages(stub.GetFleetStatus, hub_pb2.GetFleetStatusRequest(page_size=1), "clusters",
                                 timeout=30)

        fleet = await asyncio.to_thread(read)
    assert [v.cluster for v in fleet.clusters] == list(CLUSTERS) and not fleet.next_page_token

