"""Promotion end to end with real processes: dev and prod agents on the real API server, the hub
following (and pushing to) a bare Git remote, and the ``skerry promote / freight / rollback`` CLI
talking to the hub's PromotionService over mutual TLS.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from skerry.core import tls
from skerry.hub.promotion.audit import AuditLog
from skerry.hub.state import open_state
from skerry.testing.devstack import EXAMPLES, Stack, git, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

PROMOTION = """
promotion:
  promoters: [tester, approver]
  apps:
    web:
      overlays: {dev: overlays/dev, prod: overlays/prod}
  environments:
    dev:
      soak: 1s
    prod:
      approvals: 1
      approvers: [approver]
      autoRollback: true
      soak: 2s
"""


@pytest.fixture(scope="module")
def stack(kubeconfig, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("promo"), kubeconfig, interval=1.0)
    fleet = (EXAMPLES / "skerry.yaml").read_text()
    fleet = fleet[: fleet.index("# Promotion")] + PROMOTION
    try:
        s.start_example(("oslo-dev", "oslo-prod"), password="not-a-real-one", files={"skerry.yaml": fleet}, bare=True)
        yield s
    finally:
        s.stop()


def cli(stack: Stack, who: str, *args: str) -> subprocess.CompletedProcess:
    files = stack.identity(who, tls.ROLE_OPERATOR)
    return subprocess.run(
        [sys.executable, "-m", "skerry", *args, "--hub", stack.hub_address, *stack.tls_args(files)],
        capture_output=True, text=True, timeout=120,
    )


def image(stack: Stack, ns: str) -> str:
    return stack.kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")


def settle(stack: Stack, cluster: str) -> None:
    v = wait_for(lambda: stack.cluster_view(cluster).get("desired_digest") and stack.cluster_view(cluster), 30, "a bundle", stack.hub)
    stack.wait_applied(cluster, digest=v["desired_digest"])


def test_promote_an_image_tag_from_dev_to_prod_through_the_cli(stack):
    for cluster in ("oslo-dev", "oslo-prod"):
        settle(stack, cluster)
    assert image(stack, "shop-prod") == "nginx:1.25.3"
    prod_before = (stack.repo / "overlays/prod/kustomization.yaml").read_text()
    prod_release = stack.cluster_view("oslo-prod")["desired_release"]

    kust = stack.repo / "overlays/dev/kustomization.yaml"
    kust.write_text(kust.read_text().replace('newTag: "1.25.3"', 'newTag: "1.27.0"'))
    stack.commit("dev: web 1.27.0")
    wait_for(lambda: image(stack, "shop-dev") == "nginx:1.27.0", 60, "dev to run 1.27.0", stack.hub)
    settle(stack, "oslo-dev")

    freight = cli(stack, "tester", "freight", "web", "-o", "json")
    assert freight.returncode == 0, freight.stderr
    assert "nginx:1.27.0" in freight.stdout and "nginx:1.25.3" in freight.stdout
    table = cli(stack, "tester", "freight", "web")  # each cluster's state at the release it runs, as people read it
    assert f"oslo-dev:Ready@{stack.cluster_view('oslo-dev')['desired_release']}" in table.stdout, table.stdout

    # a promoter who is not an approver is blocked by the approvals gate, which says who may approve
    blocked = cli(stack, "tester", "promote", "web", "--from", "dev", "--to", "prod")
    assert blocked.returncode == 1
    assert "gate approvals: BLOCKED" in blocked.stdout and "approver" in blocked.stdout
    # an approver promotes with its approval and follows the rollout to done (soak included)
    wait_for(lambda: cli(stack, "approver", "promote", "web", "--from", "dev", "--to", "prod", "--dry-run",
                         "--approve").returncode == 0, 30, "dev's soak to pass", stack.hub)
    done = cli(stack, "approver", "promote", "web", "--from", "dev", "--to", "prod", "--approve", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done" in done.stdout.splitlines()[-2] or "done" in done.stdout
    promoted = stack.cluster_view("oslo-prod")["desired_release"]
    assert int(promoted.removeprefix("r")) == int(prod_release.removeprefix("r")) + 1  # one new release of prod
    assert f"cluster oslo-prod: healthy ({promoted})" in done.stdout

    stack.pull()
    log = git(stack.repo, "log", "-1", "--format=%B")
    assert "Promoted-by: approver" in log and "From-env: dev" in log and "Approved-by: approver" in log
    assert "From-bundle: sha256:" in log
    prod_after = (stack.repo / "overlays/prod/kustomization.yaml").read_text()
    assert prod_after == prod_before.replace('newTag: "1.25.3"', 'newTag: "1.27.0"'), "only the tag changed"
    assert image(stack, "shop-prod") == "nginx:1.27.0"
    state = open_state("", state_dir=stack.workdir / "hub-state")  # the hub's SQLite state, read beside it
    try:
        audit = AuditLog(state).entries
    finally:
        state.close()
    outcomes = [(e["identity"], e["method"], e["outcome"]) for e in audit]
    assert any(o[1:] == ("Promote", "blocked") and "tester" in o[0] for o in outcomes)
    assert any(o[1:] == ("Promote", "committed") and "approver" in o[0] for o in outcomes)


def test_rollback_restores_the_previous_freight_by_commit_and_prod_applies_it(stack):
    stack.pull()
    previous = git(stack.repo, "rev-parse", "HEAD~1")  # before the promotion
    out = cli(stack, "tester", "rollback", "web", "--env", "prod", "--to", previous, "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: image(stack, "shop-prod") == "nginx:1.25.3", 60, "prod to run 1.25.3 again", stack.hub)
    stack.pull()
    assert f"Rolled-back-to: {previous}" in git(stack.repo, "log", "-1", "--format=%B")
    assert 'newTag: "1.25.3"' in (stack.repo / "overlays/prod/kustomization.yaml").read_text()


def test_an_unknown_operator_cannot_promote(stack):
    out = cli(stack, "mallory", "promote", "web", "--from", "dev", "--to", "prod")
    assert out.returncode == 1
    assert "promoters" in out.stderr and "mallory" in out.stderr
