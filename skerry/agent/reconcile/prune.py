"""The prune step: delete what left the bundle, only when that is safe, and say why not otherwise.

``plan.plan_prune`` decides, purely, which recorded objects are candidates
and whether the round may prune at all (empty or mass-shrunk bundle). This
module adds what needs the cluster or the round's outcome:

* nothing is pruned when the inventory was unreadable (only what is applied
  now is recorded), nor in a round where any apply failed (a renamed
  workload whose new copy failed must not lose its old copy);
* a live object annotated ``skerry.io/prune: disabled`` or no longer
  labelled ``app.kubernetes.io/managed-by: skerry`` is left alone and
  dropped from the inventory;
* a failed delete keeps its inventory entry, so it is tried again;
* a Namespace, CRD or PersistentVolumeClaim is deleted only when explicitly
  allowed (``plan.prune_protected``); otherwise it stays, keeps its
  inventory entry (a later allow prunes it) and ``Pruned`` is False with
  reason ``PruneProtected`` naming it.

It owns the ``Pruned`` condition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import structlog

from skerry.agent.reasons import UNKNOWN_KIND
from skerry.agent.reconcile import plan
from skerry.agent.reconcile.desired import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from skerry.agent.reconcile.inventory import Inventory
from skerry.agent.reconcile.model import (
    FAILED,
    FALSE,
    PRUNED,
    SKIPPED,
    TRUE,
    Condition,
    ObjectRef,
    ObjectResult,
)
from skerry.core.errors import KubeError

log = structlog.get_logger("skerry.agent.reconcile")

# Objects named in the PruneProtected message; the rest are counted, so the condition stays short.
MAX_NAMES_IN_CONDITION = 5
PROTECTED_REASON = "PruneProtected"


@dataclasses.dataclass(frozen=True)
class PruneOutcome:
    condition: Condition
    results: tuple[ObjectResult, ...]
    kept: tuple[ObjectRef, ...]  # recorded objects that stay in the inventory although not applied


@dataclasses.dataclass(frozen=True)
class PrunePolicy:
    allow_prune_all: bool = False
    mass_prune_fraction: float = plan.MASS_PRUNE_FRACTION
    allow_protected: bool = False  # prune Namespaces, CRDs and PVCs without the per-object annotation


def prune_step(
    kube, previous: Inventory, desired: list[ObjectRef], *, failed: int, corrupt: str, policy: PrunePolicy
) -> PruneOutcome:
    """Prune what left ``desired`` since ``previous``, given ``failed`` applies in this round."""
    prune = plan.plan_prune(
        previous.objects,
        desired,
        allow_prune_all=policy.allow_prune_all,
        mass_prune_fraction=policy.mass_prune_fraction,
    )
    if corrupt:
        msg = (
            f"nothing pruned: {corrupt}; it is replaced by what this reconcile applied, so objects "
            "recorded only in the unreadable inventory will not be pruned automatically"
        )
        return PruneOutcome(Condition("Pruned", FALSE, "InventoryCorrupt", msg), (), ())
    if not prune.allowed:
        skipped = tuple(
            ObjectResult(ref, SKIPPED, f"not pruned: {prune.refused}")
            for ref in _candidates(previous, desired)
        )
        return PruneOutcome(
            Condition("Pruned", FALSE, prune.reason, prune.refused), skipped, tuple(previous.objects)
        )
    if failed and prune.delete:
        msg = f"prune of {len(prune.delete)} object(s) postponed: {failed} object(s) failed to apply"
        skipped = tuple(ObjectResult(ref, SKIPPED, msg) for ref in prune.delete)
        return PruneOutcome(Condition("Pruned", FALSE, "PrunePostponed", msg), skipped, tuple(prune.delete))
    return _delete_all(kube, prune.delete, allow_protected=policy.allow_protected)


def _delete_all(kube, delete: Iterable[ObjectRef], *, allow_protected: bool) -> PruneOutcome:
    results: list[ObjectResult] = []
    kept: list[ObjectRef] = []
    protected: list[ObjectRef] = []
    for ref in delete:
        result, keep = prune_one(kube, ref, allow_protected=allow_protected)
        results.append(result)
        if keep:
            kept.append(ref)
        if result.action == SKIPPED and keep:  # only a protected object is skipped yet kept
            protected.append(ref)
    failures = sum(1 for r in results if r.action == FAILED)
    pruned = sum(1 for r in results if r.action == PRUNED)
    if failures:
        cond = Condition("Pruned", FALSE, "PruneFailed", f"{failures} of {len(results)} prune(s) failed")
    elif protected:
        cond = Condition("Pruned", FALSE, PROTECTED_REASON, _protected_message(protected, pruned))
    elif results:
        cond = Condition("Pruned", TRUE, "Pruned", f"{pruned} object(s) pruned")
    else:
        cond = Condition("Pruned", TRUE, "NothingToPrune", "no recorded object left the bundle")
    return PruneOutcome(cond, tuple(results), tuple(kept))


def _protected_message(protected: list[ObjectRef], pruned: int) -> str:
    names = ", ".join(str(r) for r in protected[:MAX_NAMES_IN_CONDITION])
    more = (
        f" and {len(protected) - MAX_NAMES_IN_CONDITION} more"
        if len(protected) > MAX_NAMES_IN_CONDITION
        else ""
    )
    return (
        f"{len(protected)} protected object(s) left the bundle but were not pruned: {names}{more} "
        f"(annotate {plan.PRUNE_ANNOTATION}: {plan.PRUNE_ALLOW} or run with --allow-prune-protected); "
        f"{pruned} object(s) pruned"
    )


def prune_one(kube, ref: ObjectRef, *, allow_protected: bool = False) -> tuple[ObjectResult, bool]:
    """Delete one recorded object that left the bundle; returns (result, keep in inventory)."""
    ns = ref.namespace or None
    try:
        live = kube.get(ref.api_version, ref.kind, ref.name, ns)
    except KubeError as e:
        if e.reason == UNKNOWN_KIND:
            return ObjectResult(ref, SKIPPED, f"{e}; nothing to delete, dropped from the inventory"), False
        return ObjectResult(ref, FAILED, f"not pruned: {e}"), True
    if live is None:
        return ObjectResult(ref, PRUNED, "already absent"), False
    if plan.prune_disabled(live):
        note = f"{plan.PRUNE_ANNOTATION}: {plan.PRUNE_DISABLED}; left in place and no longer managed"
        return ObjectResult(ref, SKIPPED, note), False
    labels = (live.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        note = f"no longer labelled {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}; left in place, not ours now"
        return ObjectResult(ref, SKIPPED, note), False
    if plan.prune_protected(ref, live, allow_protected=allow_protected):
        note = f"not pruned: a {ref.kind} is pruned only with {plan.PRUNE_ANNOTATION}: {plan.PRUNE_ALLOW}"
        log.warning("prune refused for a protected kind", object=str(ref))
        return ObjectResult(ref, SKIPPED, note), True
    try:
        gone = kube.delete(ref.api_version, ref.kind, ref.name, ns, propagation="Background")
    except KubeError as e:
        log.warning("prune failed", object=str(ref), reason=e.reason, error=str(e))
        return ObjectResult(ref, FAILED, f"not pruned: {e}"), True
    log.info("pruned", object=str(ref))
    return ObjectResult(ref, PRUNED, "" if gone else "already absent"), False


def _candidates(previous: Inventory, desired: list[ObjectRef]) -> list[ObjectRef]:
    wanted = {r.key for r in desired}
    return plan.order_for_delete(r for r in previous.objects if r.key not in wanted)
