"""The hub SIGKILLed in the middle of a chunked bundle transfer (real hub and agent processes, real API server).

A fault proxy between agent and hub counts the bytes of the new bundle and kills the hub after its first
chunk: the agent holds a partial transfer, must keep the last good state applied (objects, inventory,
release counter), and, once the hub is restarted on the same port, fetch the whole bundle again, verify
and apply it within ``RECOVERY_SECONDS``, each release applied once.

No agent or hub fix was needed: this passes on the code it was written against. Mutations tried: recording
the new blob's digest before its chunks arrived (``stream.HubClient._assemble``) still passes, because the
agent's TUF refresh fetches the released target on its own path and the hub's omitted-bytes answer fails
verification; the test guards the whole (nothing partial applied, recovery in bound), not one line.
"""

from __future__ import annotations

import time

import pytest

from skerry.testing.devstack import Stack, wait_for
from skerry.testing.faultproxy import TO_CLIENT, FaultProxy

from .helpers import app_objects, configmap_yaml, inventory, live, trusted_release, write_fleet

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "fnet-hubkill"
NS = "fnet-hubkill"
# The new bundle: BIG_OBJECTS ConfigMaps of BIG_VALUE characters, ~3 MiB, so 3 chunks of 1 MiB.
BIG_OBJECTS = 3
BIG_VALUE = 900_000
# Kill the hub once this much of the transfer reached the agent: after the first chunk, before the last.
KILL_AFTER_BYTES = 1_300_000
# From the restarted hub's readiness to the new release applied: reconnect backoff (< 1 s after one
# failure), a 3 MiB transfer, verification and the apply of 4 objects.
RECOVERY_SECONDS = 20.0


def small() -> dict[str, str]:
    return app_objects(NS, "1")


def big() -> dict[str, str]:
    objects = app_objects(NS, "2")
    for i in range(BIG_OBJECTS):
        objects[f"big-{i}.yaml"] = configmap_yaml(NS, f"big-{i}", {"blob": f"{i}" * BIG_VALUE})
    return objects


def test_hub_killed_mid_transfer_agent_keeps_last_good_state_and_resumes(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig, interval=1.0)
    proxy = None
    try:
        stack.seed_repo(write_fleet(tmp_path / "fleet", CLUSTER, small()))
        stack.start_hub()
        proxy = FaultProxy(("127.0.0.1", int(stack.hub_address.rsplit(":", 1)[1]))).start()
        agent = stack.start_agent(CLUSTER, hub=proxy.address)
        first = stack.wait_applied(CLUSTER)
        recorded = inventory(stack, CLUSTER).keys()
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "1"}

        proxy.on_bytes(TO_CLIENT, KILL_AFTER_BYTES, stack.hub.kill)
        write_fleet(stack.repo, CLUSTER, big())
        head = stack.commit("three big ConfigMaps")
        wait_for(lambda: proxy.tripped, 30, "the new bundle's first chunk to reach the agent", stack.hub)
        assert not stack.hub.alive()

        # The partial transfer is dropped; the last good state stays, applied and recorded.
        time.sleep(1.0)
        assert agent.alive()
        status = agent.status()
        assert status["applied_release"] == first["applied_release"]
        assert status["applied_digest"] == first["applied_digest"]
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "1"}
        assert live(stack, "configmap", NS, "big-0") is None
        assert inventory(stack, CLUSTER).keys() == recorded
        assert trusted_release(stack, CLUSTER) == first["applied_release"]

        stack.start_hub()  # same port: the proxy's upstream
        restarted = time.monotonic()
        newest = stack.wait_applied(CLUSTER, release_above=first["applied_release"], timeout=RECOVERY_SECONDS)
        assert time.monotonic() - restarted < RECOVERY_SECONDS
        assert newest["revision"] == head
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "2"}
        for i in range(BIG_OBJECTS):
            assert live(stack, "configmap", NS, f"big-{i}")["data"]["blob"] == f"{i}" * BIG_VALUE
        assert recorded < inventory(stack, CLUSTER).keys()
        assert trusted_release(stack, CLUSTER) == newest["applied_release"] > first["applied_release"]
        applied = [e["release"] for e in agent.events("reconciled")]
        assert applied == [first["applied_release"], newest["applied_release"]], applied
    finally:
        if proxy is not None:
            proxy.stop()
        stack.stop()
