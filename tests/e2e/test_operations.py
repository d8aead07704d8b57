"""The operator's loop with real processes: skerry status, drift corrected by a running agent,
suspend -> commit -> skerry diff -> resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from skerry.core import tls
from skerry.testing.devstack import Stack, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "oslo-dev"


@pytest.fixture(scope="module")
def stack(kubeconfig, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("ops-stack"), kubeconfig, interval=1.0)
    try:
        s.start_example((CLUSTER,), password="not-used-here")
        s.wait_applied(CLUSTER)
        yield s
    finally:
        s.stop()


def skerry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skerry", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def status(stack, *output: str) -> str:
    ops = stack.identity("tester", tls.ROLE_OPERATOR)
    out = skerry(
        "status", "--hub", stack.hub_address, "--cluster", CLUSTER,
        "--tls-ca", str(ops.ca), "--tls-cert", str(ops.cert), "--tls-key", str(ops.key), *output,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def conditions(stack) -> dict[str, dict]:
    """The cluster's reported conditions by type, from `skerry status -o json`."""
    (view,) = json.loads(status(stack, "-o", "json"))["clusters"]
    return {c["type"]: c for c in view.get("reported", {}).get("conditions", [])}


def kube_args(stack) -> list[str]:
    return ["--cluster", CLUSTER, "--kubeconfig", str(stack.kubeconfig), "--namespace", f"skerry-{CLUSTER}"]


def replicas(stack) -> str:
    return stack.kubectl("get", "deploy", "web", "-n", "shop-dev", "-o", "jsonpath={.spec.replicas}")


def test_status_shows_the_applied_release_health_and_drift_state(stack):
    conds = wait_for(lambda: (c := conditions(stack)) and "Drifted" in c and c, 30, "a report with drift state", stack.hub)
    assert conds["Ready"]["status"] == "True" and "Healthy" in conds
    assert (conds["Drifted"]["status"], conds["Drifted"]["reason"]) == ("False", "InSync")
    header, row = status(stack).splitlines()
    assert header.split()[:5] == ["CLUSTER", "DESIRED", "APPLIED", "READY", "HEALTHY"]
    cells = row.split()
    assert cells[0] == CLUSTER and cells[1] == cells[2] and cells[1].startswith("r") and cells[3] == "True"


def test_a_manual_scale_is_reverted_by_the_running_agent_and_reported_to_the_hub(stack):
    stack.kubectl("scale", "deploy", "web", "-n", "shop-dev", "--replicas=4")
    wait_for(lambda: replicas(stack) == "1", 60, "the agent to revert the scale", stack.agents[CLUSTER])
    conds = wait_for(
        lambda: (c := conditions(stack)) and c.get("DriftCorrected", {}).get("status") == "True" and c, 30,
        "the correction reported", stack.hub,
    )
    assert ".spec.replicas: 4 (Git: 1)" in conds["DriftCorrected"]["message"]


def test_suspend_then_diff_shows_the_pending_change_and_resume_applies_it(stack):
    assert skerry("suspend", *kube_args(stack)).returncode == 0
    wait_for(lambda: conditions(stack).get("Suspended", {}).get("status") == "True", 30, "the agent to report Suspended",
             stack.agents[CLUSTER])
    before = stack.cluster_view(CLUSTER)
    path = stack.repo / "overlays/dev/replicas.yaml"
    path.write_text(path.read_text().replace("replicas: 1", "replicas: 2"))
    stack.commit("dev: 2 replicas")
    wait_for(
        lambda: int(stack.cluster_view(CLUSTER).get("desired_version", 0)) > int(before.get("desired_version", 0)),
        30, "a new release", stack.hub,
    )
    out = skerry("diff", *kube_args(stack), "--repo", str(stack.repo))
    assert out.returncode == 1, out.stderr
    assert "~ change apps/Deployment web -n shop-dev" in out.stdout
    assert "-  replicas: 1" in out.stdout and "+  replicas: 2" in out.stdout
    assert replicas(stack) == "1"  # suspended: not applied
    assert skerry("resume", *kube_args(stack)).returncode == 0
    wait_for(lambda: replicas(stack) == "2", 60, "the resumed agent to apply", stack.agents[CLUSTER])
    assert skerry("diff", *kube_args(stack), "--repo", str(stack.repo)).returncode == 0
