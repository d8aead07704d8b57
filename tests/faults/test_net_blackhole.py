"""A network blackhole (silence, not a refused port) between agent and hub, then between agent and sealer.

Real sealer, hub and agent processes behind fault proxies; the agent runs with ``--keepalive 6s``.

* hub blackholed while a commit lands: the agent keeps the last good state applied; its connection
  never recovers by itself (bytes were lost), so the agent must notice the silence (keepalive) and dial
  again. After the blackhole lifts the new release is applied and reported to the hub within
  ``RECOVERY_SECONDS``.
* sealer blackholed while a release with the Secret arrives: the unseal call is given up within
  ``UNSEAL_GIVEUP_SECONDS`` (not the 60 s unseal deadline), the rest of the release applies, the live
  Secret keeps its value (nothing half-unsealed is written), the sealer is named; after the blackhole
  the agent's retry unseals and it is Ready within ``RECOVERY_SECONDS``.

Checked against the fix: without ``channel_options=keepalive_options(cfg.keepalive)`` on the
``HubClient`` (and ``GrpcUnsealer``) in ``skerry/agent/app.py`` the agent sits on the dead connection
for the default 30 s + 20 s and both recovery bounds fail.
"""

from __future__ import annotations

import secrets as pysecrets
import time

import pytest

from skerry.core import tls
from skerry.testing.devstack import Stack, fleet_status, wait_for
from skerry.testing.faultproxy import FaultProxy

from .helpers import (
    commit_sealed_app,
    inventory,
    live,
    secret_manifest,
    secret_password,
    seed_sealed_app,
    trusted_release,
)

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "fnet-blackhole"
NS = "fnet-blackhole"
PASSWORD = pysecrets.token_urlsafe(16)
SECRET = secret_manifest(NS, "db", PASSWORD)
KEEPALIVE = 6.0
# A silent peer is noticed after a ping (every KEEPALIVE) goes unanswered for KEEPALIVE; then a dial
# (its handshake given up after KEEPALIVE too) and a reconnect backoff of a few seconds.
RECOVERY_SECONDS = 3 * KEEPALIVE + 6.0
UNSEAL_GIVEUP_SECONDS = 2 * KEEPALIVE + 6.0


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_blackholed_hub_then_sealer_agent_keeps_state_notices_and_recovers(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig, interval=1.0)
    to_hub = to_sealer = None
    try:
        stack.start_sealer()
        seed_sealed_app(stack, CLUSTER, NS, SECRET)
        stack.start_hub()
        to_hub = FaultProxy(("127.0.0.1", port(stack.hub_address))).start()
        to_sealer = FaultProxy(("127.0.0.1", port(stack.sealer_address))).start()
        agent = stack.start_agent(CLUSTER, hub=to_hub.address, sealer=to_sealer.address,
                                  extra=("--keepalive", f"{KEEPALIVE:g}s"))
        first = stack.wait_applied(CLUSTER)
        assert secret_password(stack, NS, "db") == PASSWORD
        recorded = inventory(stack, CLUSTER).keys()
        ops = stack.identity("faults", tls.ROLE_OPERATOR)

        # 1. Agent <-> hub: silence while a commit lands.
        to_hub.blackhole()
        swallowed = to_hub.stats.discarded
        head = commit_sealed_app(stack, CLUSTER, NS, "2", "v2 behind a blackhole")
        wait_for(lambda: any(v["desired_revision"] == head for v in fleet_status(stack.hub_address, ops)), 30,
                 "the hub to release v2", stack.hub)
        # the hub's word of v2 went into the silence (read and dropped, never refused)
        wait_for(lambda: to_hub.stats.discarded > swallowed, 30, "the blackhole to swallow the hub's v2 event")
        assert agent.alive() and agent.status()["applied_release"] == first["applied_release"]
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "1"}
        assert secret_password(stack, NS, "db") == PASSWORD
        to_hub.passthrough()
        lifted = time.monotonic()
        second = stack.wait_applied(CLUSTER, release_above=first["applied_release"], timeout=RECOVERY_SECONDS)
        assert second["revision"] == head
        reported = wait_for(
            lambda: (v := stack.cluster_view(CLUSTER, "faults")).get("reported", {}).get("applied_version") == str(second["applied_release"]) and v,
            RECOVERY_SECONDS, "the hub to hear of v2", stack.hub)
        assert time.monotonic() - lifted < RECOVERY_SECONDS, reported
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "2"}
        assert secret_password(stack, NS, "db") == PASSWORD and inventory(stack, CLUSTER).keys() == recorded

        # 2. Agent <-> sealer: silence while a release needs the Secret unsealed.
        to_sealer.blackhole()
        commit_sealed_app(stack, CLUSTER, NS, "3", "v3 while the sealer is silent")
        silenced = time.monotonic()

        def gave_up() -> dict | None:
            st = agent.status()
            return st if st["applied_release"] > second["applied_release"] and not st["ready"] else None

        status = wait_for(gave_up, UNSEAL_GIVEUP_SECONDS + 10, "the agent to give the unseal up", agent)
        assert time.monotonic() - silenced < UNSEAL_GIVEUP_SECONDS + 2  # + the hub's render of v3
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert to_sealer.address in ready["message"] and "db" in ready["message"], ready
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "3"}
        assert secret_password(stack, NS, "db") == PASSWORD  # no garbage, no empty Secret
        assert inventory(stack, CLUSTER).keys() == recorded
        to_sealer.passthrough()
        lifted = time.monotonic()
        wait_for(lambda: agent.status()["ready"], RECOVERY_SECONDS, "the agent to unseal again", agent)
        assert time.monotonic() - lifted < RECOVERY_SECONDS
        assert secret_password(stack, NS, "db") == PASSWORD
        assert trusted_release(stack, CLUSTER) == agent.status()["applied_release"] > second["applied_release"]
    finally:
        for proxy in (to_hub, to_sealer):
            if proxy is not None:
                proxy.stop()
        stack.stop()
