"""A slow API server: ``DELAY`` seconds of latency each way between the agent and the kube-apiserver.

Real hub and agent processes; the agent reaches the session's API server through a fault proxy in delay
mode. Two releases land while it is slow: their reconciles stretch (every request pays the latency) but
run one at a time, never overlapping; nothing is pruned; the agent's status says the API server is slow
(``APIServerSlow``, naming the median apply time). When the latency goes, the next release is applied at
normal speed and the condition clears, within ``RECOVERY_SECONDS``.

Checked against the fix: without ``api_latency=self._api_latency()`` in ``AgentApp.snapshot``
(``skerry/agent/app.py``) the status never reports the slowness and the test fails.
"""

from __future__ import annotations

import datetime as dt

import pytest

from skerry.core import documents, tls
from skerry.testing.devstack import Stack, fleet_status, wait_for
from skerry.testing.faultproxy import FaultProxy

from .helpers import app_objects, configmap_yaml, inventory, live, write_fleet

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "fnet-slowapi"
NS = "fnet-slowapi"
# The agent says "slow" from a median apply of SLOW_APPLY (``--slow-apply``; 1 s by default, which would
# need a longer delay and stretch this test's reconciles for nothing).
SLOW_APPLY = 0.6
DELAY = 0.35  # per direction: an apply takes at least 0.7 s, over SLOW_APPLY
# A reconcile at normal speed takes less than this (the slow ones take several times longer).
NORMAL_RECONCILE = dt.timedelta(seconds=1.2)
OBJECTS = 4  # ConfigMaps per release, besides the Namespace and "app": 6 applies, a window's worth
# Two reconciles under the delay: each is ~10 round trips (inventory read and write, two apply phases,
# new pooled connections for the parallel applies, BundleStatus and Events), 7-11 s on a loaded machine.
SLOW_RECONCILES_SECONDS = 60.0
# Without the delay: the hub's render and transfer, a reconcile of milliseconds, the report.
RECOVERY_SECONDS = 10.0


def objects(version: str) -> dict[str, str]:
    out = app_objects(NS, version)
    for i in range(OBJECTS):
        out[f"cm-{i}.yaml"] = configmap_yaml(NS, f"cm-{i}", {"v": version})
    return out


def api_server(kubeconfig) -> tuple[str, int]:
    server = documents.load_yaml(kubeconfig.read_bytes())["clusters"][0]["cluster"]["server"]
    host, _, port = server.removeprefix("https://").rpartition(":")
    return host, int(port)


def condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status["conditions"] if c["type"] == kind), None)


def spans(agent) -> list[tuple[dt.datetime, dt.datetime]]:
    """(start, end) of each reconcile the agent ran, from its own account of each."""
    out = []
    for e in agent.events("reconciled"):
        end = dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        out.append((end - dt.timedelta(seconds=e["seconds"]), end))
    return out


def test_slow_apiserver_reconciles_stretch_one_at_a_time_reported_and_recovered(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig, interval=1.0)
    proxy = FaultProxy(api_server(kubeconfig)).start()
    try:
        proxied = tmp_path / "proxied.kubeconfig"
        host, port = api_server(kubeconfig)
        proxied.write_text(kubeconfig.read_text().replace(f"https://{host}:{port}", f"https://{proxy.address}"))
        stack.seed_repo(write_fleet(tmp_path / "fleet", CLUSTER, objects("1")))
        stack.start_hub()
        agent = stack.start_agent(CLUSTER, kubeconfig=proxied, extra=("--slow-apply", f"{SLOW_APPLY:g}s"))
        first = stack.wait_applied(CLUSTER)
        assert condition(first, "APIServerSlow") is None
        recorded = inventory(stack, CLUSTER).keys()

        proxy.delay(DELAY)
        write_fleet(stack.repo, CLUSTER, objects("2"))
        v2 = stack.commit("v2 on a slow API server")
        ops = stack.identity("faults", tls.ROLE_OPERATOR)
        wait_for(lambda: any(v["desired_revision"] == v2 for v in fleet_status(stack.hub_address, ops)), 30,
                 "the hub to release v2", stack.hub)
        write_fleet(stack.repo, CLUSTER, objects("3"))  # lands while v2 is being applied, slowly
        head = stack.commit("v3 on a slow API server")
        third = wait_for(lambda: (st := agent.status())["revision"] == head and st["ready"] and st,
                         SLOW_RECONCILES_SECONDS, "v2 then v3 to be applied slowly", agent)
        slow = condition(third, "APIServerSlow")
        assert slow is not None and slow["status"] == "True", third["conditions"]
        assert " s per apply" in slow["message"]
        ran = spans(agent)
        assert max(end - start for start, end in ran[1:]) >= dt.timedelta(seconds=2 * DELAY)  # they stretched
        for (_, end), (start, _) in zip(ran, ran[1:], strict=False):
            assert start >= end - dt.timedelta(milliseconds=50), ran  # one at a time, never overlapping
        assert len(ran) >= 2 and third["applied_release"] > first["applied_release"]
        assert inventory(stack, CLUSTER).keys() == recorded  # the same objects, nothing pruned
        assert live(stack, "configmap", NS, "cm-0")["data"] == {"v": "3"}

        proxy.passthrough()
        write_fleet(stack.repo, CLUSTER, objects("4"))
        stack.commit("v4 after the slow spell")
        fourth = stack.wait_applied(CLUSTER, release_above=third["applied_release"], timeout=RECOVERY_SECONDS)
        assert condition(fourth, "APIServerSlow") is None, fourth["conditions"]
        assert spans(agent)[-1][1] - spans(agent)[-1][0] < NORMAL_RECONCILE
        assert inventory(stack, CLUSTER).keys() == recorded
    finally:
        stack.stop()
        proxy.stop()
