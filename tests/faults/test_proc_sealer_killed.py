"""The sealer SIGKILLed after its Secrets exist (real sealer, hub and agent processes, real API server).

A release that arrives while the sealer is down applies everything but the Secret: the live Secret keeps
its value (never pruned, never overwritten with nothing), the agent reports the sealer by address and
retries with a growing delay; the sealer restarted on the same port unseals again and the agent is
Ready within ``RECOVERY_SECONDS``.

Checked against the fix: with ``self._schedule_retry()`` removed from ``Runtime._apply_locked`` in
``skerry/agent/runtime.py`` and the retry delay recomputed at every wake-up as before, the trust poll
(every 2 s here) comes first each time, no retry ever runs, and the test fails waiting for the retries.
The sealer channel's capped reconnect backoff (``SEALER_RECONNECT_OPTIONS`` in
``skerry/agent/secrets.py``) fails it only when the timing lines up: a reconnect attempt of the
channel just before the sealer is back leaves it in gRPC's own backoff past the agent's next retry.
"""

from __future__ import annotations

import secrets as pysecrets
import time

import pytest

from skerry.testing.devstack import Stack, wait_for

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

CLUSTER = "fnet-sealerkill"
NS = "fnet-sealerkill"
PASSWORD = pysecrets.token_urlsafe(16)
SECRET = secret_manifest(NS, "db", PASSWORD)
# Retries the agent makes while the sealer is down before it is restarted (2 s, then 4 s: ~6 s down).
RETRIES_WHILE_DOWN = 2
# From the restarted sealer serving to Ready: the next retry (8 s after the second, 16 s after the third
# when the restart itself is slow) plus one reconcile.
RECOVERY_SECONDS = 25.0


def test_sealer_killed_secrets_stay_agent_reports_retries_and_resumes(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig, interval=1.0)
    try:
        stack.start_sealer()
        seed_sealed_app(stack, CLUSTER, NS, SECRET)
        stack.start_hub()
        agent = stack.start_agent(CLUSTER)
        first = stack.wait_applied(CLUSTER)
        assert secret_password(stack, NS, "db") == PASSWORD
        recorded = inventory(stack, CLUSTER).keys()

        stack.sealer.kill()
        commit_sealed_app(stack, CLUSTER, NS, "2", "app v2 while the sealer is down")

        def retried() -> dict | None:
            st = agent.status()
            done = len(agent.events("retrying the reconcile")) >= RETRIES_WHILE_DOWN
            return st if done and st and st["applied_release"] > first["applied_release"] else None

        status = wait_for(retried, 30, "the agent to retry the release without its sealer", agent)
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "2"}  # the rest of the release applied
        assert secret_password(stack, NS, "db") == PASSWORD  # the Secret stays, value intact
        assert inventory(stack, CLUSTER).keys() >= recorded  # nothing forgotten, nothing pruned
        assert not status["ready"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert stack.sealer_address in ready["message"] and "db" in ready["message"], ready
        retries = [e["attempt"] for e in agent.events("retrying the reconcile")]
        assert retries == list(range(len(retries))), retries  # each retry one step further back

        stack.start_sealer()  # same port, same keys
        restarted = time.monotonic()
        wait_for(lambda: (st := agent.status()) and st["ready"], RECOVERY_SECONDS, "the agent to unseal again", agent)
        assert time.monotonic() - restarted < RECOVERY_SECONDS
        assert secret_password(stack, NS, "db") == PASSWORD
        assert inventory(stack, CLUSTER).keys() >= recorded
        assert trusted_release(stack, CLUSTER) == agent.status()["applied_release"] > first["applied_release"]
        for log in stack.workdir.joinpath("logs").glob("*.log"):
            assert PASSWORD not in log.read_text(errors="replace"), f"plaintext in {log.name}"
    finally:
        stack.stop()
