"""A hub killed mid-stream (SIGKILL, real processes): the agent reconnects with backoff, resumes from
the release it has, ends on the newest bundle, and applies nothing twice."""

from __future__ import annotations

import collections
import json
import time

import pytest

from skerry.testing.devstack import Stack, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "oslo-dev"


def watching_since(stack: Stack, offset: int) -> bool:
    text = stack.hub.log_path.read_text(errors="replace")[offset:]
    return any(
        (doc := _json(line)) and doc.get("event") == "agent watching" and doc.get("cluster") == CLUSTER
        for line in text.splitlines()
    )


def _json(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


def test_killed_hub_agent_reconnects_resumes_and_applies_each_release_once(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig, interval=1.0)
    try:
        stack.seed_repo()
        stack.start_hub()
        agent = stack.start_agent(CLUSTER)
        first = stack.wait_applied(CLUSTER)

        # 1. Killed with the stream open; restarted with nothing changed in Git: the agent comes back,
        #    says what it has, and the hub sends nothing (the re-signed release has the same bytes).
        stack.hub.kill()
        offset = stack.hub.log_path.stat().st_size
        time.sleep(1.0)
        stack.start_hub()
        wait_for(lambda: watching_since(stack, offset), 60, "the agent to watch the restarted hub", stack.hub)
        # (that the hub sent nothing is checked at the end: every reconcile is accounted for there)

        # 2. Killed again; a commit lands while it is down: the agent ends on the newest bundle.
        stack.hub.kill()
        path = stack.repo / "overlays/dev/replicas.yaml"
        path.write_text(path.read_text().replace("replicas: 1", "replicas: 2"))
        head = stack.commit("scale web to 2")
        time.sleep(1.0)
        stack.start_hub()
        newest = stack.wait_applied(CLUSTER, release_above=first["applied_release"])
        assert newest["revision"] == head
        assert stack.kubectl("get", "deployment", "web", "-n", "shop-dev", "-o", "jsonpath={.spec.replicas}") == "2"

        # 3. One more commit, applied: a barrier after which any repeated or extra reconcile of the
        #    releases before it (a resend on reconnect, a duplicate apply) would show.
        path.write_text(path.read_text().replace("replicas: 2", "replicas: 3"))
        stack.commit("scale web to 3")
        last = stack.wait_applied(CLUSTER, release_above=newest["applied_release"])
        applied = [e["release"] for e in agent.events("reconciled")]
        counts = collections.Counter(applied)
        assert applied == sorted(applied) and all(c == 1 for c in counts.values()), applied
        assert applied == [first["applied_release"], newest["applied_release"], last["applied_release"]]
        interrupted = agent.events("hub watch interrupted; reconnecting")
        assert len(interrupted) >= 2 and all(e["retry_in"] <= 15 for e in interrupted)
    finally:
        stack.stop()
