"""Two real hub processes on one hub state, a real agent given both (``--hub a,b``): SIGKILL the one it
watches, and the agent carries on with the other, applying nothing twice and the next commit once."""

from __future__ import annotations

import collections
import json
import socket

import pytest

from skerry.agent.stream import RECONNECT_CAP_SECONDS
from skerry.testing.devstack import Service, Stack, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "oslo-dev"
# The writer lease lapses this long after its holder died (the other process then takes over).
LEASE_TTL = "2s"
# The stated bound, from the other hub serving to the agent watching it: while neither answered, the
# agent's retries backed off toward their cap; one more capped wait and a TLS handshake.
BACK_WITHIN = RECONNECT_CAP_SECONDS + 5.0


def log_events(service: Service, name: str) -> list[dict]:
    out = []
    for line in service.log_path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == name:
            out.append(doc)
    return out


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_sigkilled_hub_process_the_agent_carries_on_with_the_other(kubeconfig, tmp_path, monkeypatch):
    monkeypatch.setenv("SKERRY_HUB_LEASE_TTL", LEASE_TTL)
    stack = Stack(tmp_path, kubeconfig, interval=1.0)
    other = None
    try:
        stack.seed_repo()
        # two processes on one host: each names itself (the default, the host name, would be the same
        # holder for both, and each would take the other's live lease as its own)
        first_hub = stack.start_hub(extra=("--hub-id", "hub-a"))
        second_address = free_address()
        args = list(first_hub.args)
        args[args.index("--listen") + 1] = second_address
        args[args.index("--hub-id") + 1] = "hub-b"
        # the same state and trust directory: it waits for the writer lease, then serves
        other = Service("hub-b", args, stack.workdir).start()
        agent = stack.start_agent(CLUSTER, hub=f"{stack.hub_address},{second_address}")
        first = stack.wait_applied(CLUSTER)

        first_hub.kill()
        other.ready(timeout=60)
        wait_for(lambda: any(e.get("cluster") == CLUSTER for e in log_events(other, "agent watching")), BACK_WITHIN,
                 "the agent to watch the other hub", other)
        path = stack.repo / "overlays/dev/replicas.yaml"
        path.write_text(path.read_text().replace("replicas: 1", "replicas: 2"))
        head = stack.commit("scale web to 2")
        newest = stack.wait_applied(CLUSTER, release_above=first["applied_release"])
        assert newest["revision"] == head

        applied = [e["release"] for e in log_events(agent, "reconciled")]
        assert applied == sorted(applied) and all(c == 1 for c in collections.Counter(applied).values()), applied
        assert applied == [first["applied_release"], newest["applied_release"]]  # nothing applied twice
        watched = [e for e in log_events(other, "agent watching") if e.get("cluster") == CLUSTER]
        assert watched[0]["last_version"] == first["applied_release"]  # it resumed from what it had
    finally:
        if other is not None:
            other.kill()
        stack.stop()
