"""A CustomResourceDefinition removed by hand, and removed from Git.

By hand: the API server deletes every custom resource of the kind with it. The agent must notice,
create the CRD again and then its custom resources (a CR before its CRD is served fails).

From Git: deleting a CRD deletes every custom resource of the kind cluster-wide, including ones
Skerry never managed, so the agent (run as shipped, without ``--allow-prune-protected``) keeps the
CRD, says so (``Pruned`` False, ``PruneProtected``, naming it) and prunes it only once the live
CRD is annotated ``skerry.io/prune: allow``.

Real parts: hub, sealer and agent processes; the real API server's CRD machinery.
"""

from __future__ import annotations

import time

import pytest

from skerry.agent.reconcile.desired import Item
from skerry.agent.reconcile.engine import with_their_crds
from skerry.agent.reconcile.model import ObjectRef
from skerry.core import documents
from skerry.testing.devstack import wait_for

from .state_world import BASE_RESOURCES, World, condition

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

RECOVERY_SECONDS = 25.0

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
"""

WIDGET = """\
apiVersion: {group}/v1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
"""


@pytest.fixture(scope="module")
def world(kubeconfig, tmp_path_factory):
    w = World(kubeconfig, tmp_path_factory.mktemp("crd"), "fcrd")
    w.group = f"{w.cluster}.example.com"
    try:
        w.seed(sealer=False)
        w.write("crd.yaml", CRD.format(group=w.group))
        w.write("widget.yaml", WIDGET.format(group=w.group, name="w1", size=3))
        w.set_resources([*BASE_RESOURCES[:-1], "crd.yaml", "widget.yaml"])
        w.commit("a CRD and one of its objects")
        w.start()
        yield w
    finally:
        w.stop()
        w.kubectl("delete", "crd", f"widgets.{w.group}", "--ignore-not-found", "--wait=false", check=False)


def widgets(world: World) -> set[str]:
    out = world.kubectl("get", f"widgets.{world.group}", "-n", world.ns, "-o",
                        "jsonpath={.items[*].metadata.name}", check=False)
    return set(out.split())


def uid(world: World, kind: str, name: str) -> str:
    return world.kubectl("get", kind, name, "-n", world.ns, "--ignore-not-found", "-o", "jsonpath={.metadata.uid}",
                         check=False)


def crd_exists(world: World) -> bool:
    return bool(world.kubectl("get", "crd", f"widgets.{world.group}", "--ignore-not-found", "-o", "name"))


def test_a_crd_deleted_by_hand_comes_back_and_then_its_custom_resources(world: World):
    """Reverted to check: ``drift_control.should_correct`` made ``return False``: nothing re-creates the
    CRD or the Widget until the next full resync (10 min) and this test fails. The order (CRD before
    its objects, ``engine.with_their_crds``) is checked by the test after this one: reverting it
    fails that test, while this one passes whenever the watch reports the CRD's deletion first."""
    world.wait_ready()
    wait_for(lambda: widgets(world) == {"w1"}, 20, "the Widget to be applied")
    before = world.snapshot()
    crd_uid, widget_uid = uid(world, "crd", f"widgets.{world.group}"), uid(world, f"widgets.{world.group}", "w1")
    world.kubectl("delete", "crd", f"widgets.{world.group}", "--wait=false")
    started = time.monotonic()
    # the CRD's deletion takes its custom resources with it; the agent makes both anew
    wait_for(lambda: uid(world, f"widgets.{world.group}", "w1") not in ("", widget_uid), RECOVERY_SECONDS,
             "the agent to re-create the CRD and then the Widget", world.agent)
    assert uid(world, "crd", f"widgets.{world.group}") not in ("", crd_uid)
    assert time.monotonic() - started < RECOVERY_SECONDS
    size = world.kubectl("get", f"widgets.{world.group}", "w1", "-n", world.ns, "-o", "jsonpath={.spec.size}")
    assert size == "3"
    world.assert_nothing_lost(before)
    assert {"CustomResourceDefinition/widgets." + world.group, "Widget/w1"} <= world.snapshot().inventory


def test_a_crd_dropped_from_git_stays_its_refusal_is_reported_and_an_allow_prunes_it(world: World):
    """Reverted to check: ``prune_one``'s ``if plan.prune_protected(ref, live, ...)`` (made ``if False``):
    the agent deletes the CRD, and with it a Widget nobody asked Skerry to manage."""
    ready = world.wait_ready()
    wait_for(lambda: widgets(world) == {"w1"}, 20, "the Widget to be applied")
    # someone else's custom resource of the same kind: Skerry never managed it
    (world.stack.workdir / "theirs.yaml").write_text(
        WIDGET.format(group=world.group, name="theirs", size=1))
    world.kubectl("apply", "-n", world.ns, "-f", str(world.stack.workdir / "theirs.yaml"))
    before = world.snapshot()

    world.set_resources(BASE_RESOURCES[:-1])
    world.commit("the CRD and its Widget leave Git")
    status = world.wait_status(
        lambda s: s["applied_release"] > ready["applied_release"]
        and condition(s, "Pruned").get("reason") == "PruneProtected",
        "the agent to report the protected CRD")
    message = condition(status, "Pruned")["message"]
    assert f"widgets.{world.group}" in message and "skerry.io/prune: allow" in message, message
    assert crd_exists(world)
    assert widgets(world) == {"theirs"}, "only the Widget Skerry applied is pruned"
    inventory = world.snapshot().inventory
    assert f"CustomResourceDefinition/widgets.{world.group}" in inventory, "the kept CRD stays recorded"
    assert inventory == before.inventory - {"Widget/w1"}, "nothing but the pruned Widget left the inventory"
    assert before.objects <= world.live_objects()

    # an explicit allow on the live object: the next reconcile prunes it
    world.kubectl("annotate", "crd", f"widgets.{world.group}", "skerry.io/prune=allow")
    world.kubectl("annotate", "configmap", "skerry-inventory", "-n", world.agent_ns, "--overwrite",
                  f"skerry.io/reconcile-requested-at={time.time()}")
    wait_for(lambda: not crd_exists(world), RECOVERY_SECONDS, "the allowed CRD to be pruned", world.agent)
    world.wait_status(lambda s: condition(s, "Pruned").get("reason") in ("Pruned", "NothingToPrune"),
                      "Pruned to turn True")


def test_a_custom_resource_is_corrected_after_its_crd_even_when_its_deletion_is_seen_first():
    group = "unit.example.com"
    objects = [documents.load_yaml(CRD.format(group=group)), documents.load_yaml(WIDGET.format(group=group, name="w", size=1)),
               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}]
    objects[1]["metadata"]["namespace"] = "n"
    crd, widget, cm = (Item(ObjectRef.from_object(o), o, False) for o in objects)
    assert with_their_crds([widget], [crd, widget, cm]) == [crd, widget]
    assert with_their_crds([widget, crd], [crd, widget, cm]) == [crd, widget]
    assert with_their_crds([cm], [crd, widget, cm]) == [cm]
