"""Pure planning: the order objects are applied and deleted in, and what may be pruned.

Apply order is by phase, then by a well-known kind order inside the phase
(the order Helm installs in), then by reference, so the same bundle always
applies in the same order:

    0  CustomResourceDefinitions       (their kinds must exist before their objects)
    1  Namespaces                      (their contents need them)
    2  other cluster-scoped objects    (ClusterRole, ClusterRoleBinding, StorageClass, ...)
    3  namespaced objects              (ServiceAccount, Secret, ConfigMap before workloads)
    4  Validating/MutatingWebhookConfigurations  (last: a webhook whose service is not up
                                        yet would otherwise reject the rest of the bundle)

Deletes run in the exact reverse. Prune candidates are inventory entries
that left the desired set; an empty desired set never prunes everything
unless explicitly allowed, and an object annotated ``skerry.io/prune:
disabled`` is never deleted. Namespaces, CustomResourceDefinitions and
PersistentVolumeClaims take more than themselves with them (everything in
the namespace; every custom resource of the kind cluster-wide, managed by
Skerry or not; the volume's data), so they are ``prune_protected``: pruned
only when the live object is annotated ``skerry.io/prune: allow`` or the
agent runs with ``allow_prune_protected``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.agent.reconcile.model import EMPTY_BUNDLE_REFUSED, MASS_PRUNE_REFUSED, ObjectRef

# A bundle that lost more than this fraction of the recorded objects (with at least
# MASS_PRUNE_MIN_OBJECTS recorded) is treated like an empty one: a broken render or a wrong
# path looks exactly like that (argo-cd #14090, flux2 #192), a real mass removal is rare.
MASS_PRUNE_FRACTION = 0.5
MASS_PRUNE_MIN_OBJECTS = 10

PRUNE_ANNOTATION = "skerry.io/prune"
PRUNE_DISABLED = "disabled"
PRUNE_ALLOW = "allow"

CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
NAMESPACE = ("", "Namespace")
PVC = ("", "PersistentVolumeClaim")
# Kinds whose delete cascades beyond the object: pruned only when explicitly allowed.
PROTECTED_KINDS = frozenset({CRD, NAMESPACE, PVC})
WEBHOOKS = frozenset(
    {
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    }
)

PHASE_CRD, PHASE_NAMESPACE, PHASE_CLUSTER, PHASE_NAMESPACED, PHASE_WEBHOOK = range(5)

# Inside a phase, well-known kinds go in this order; anything else after them.
_KIND_ORDER = [
    "PriorityClass",
    "StorageClass",
    "PodSecurityPolicy",
    "ClusterRole",
    "ClusterRoleBinding",
    "IngressClass",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
    "APIService",
]
_KIND_RANK = {kind: i for i, kind in enumerate(_KIND_ORDER)}


def phase(ref: ObjectRef) -> int:
    """The apply phase of ``ref``; namespaced is told apart from cluster-scoped by its namespace."""
    gk = ref.group_kind
    if gk == CRD:
        return PHASE_CRD
    if gk == NAMESPACE:
        return PHASE_NAMESPACE
    if gk in WEBHOOKS:
        return PHASE_WEBHOOK
    return PHASE_NAMESPACED if ref.namespace else PHASE_CLUSTER


def apply_sort_key(ref: ObjectRef) -> tuple:
    return (phase(ref), _KIND_RANK.get(ref.kind, len(_KIND_ORDER)), ref.key, ref.api_version)


def order_for_apply(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    return sorted(refs, key=apply_sort_key)


def order_for_delete(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    return sorted(refs, key=apply_sort_key, reverse=True)


def duplicates(refs: Iterable[ObjectRef]) -> set[tuple[str, str, str, str]]:
    """Keys that occur more than once (the same object twice in one bundle)."""
    counts = Counter(r.key for r in refs)
    return {k for k, n in counts.items() if n > 1}


def _prune_annotation(obj: Mapping[str, Any] | None) -> Any:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(PRUNE_ANNOTATION) if isinstance(annotations, Mapping) else None


def prune_disabled(obj: Mapping[str, Any] | None) -> bool:
    return _prune_annotation(obj) == PRUNE_DISABLED


def prune_protected(ref: ObjectRef, live: Mapping[str, Any] | None, *, allow_protected: bool) -> bool:
    """Whether ``ref`` (a recorded object that left the bundle, ``live`` as the cluster has it) must stay:
    a protected kind, not annotated ``skerry.io/prune: allow``, and no ``allow_protected`` for the agent."""
    if ref.group_kind not in PROTECTED_KINDS or allow_protected:
        return False
    return _prune_annotation(live) != PRUNE_ALLOW


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    """Inventory entries to delete (in delete order), or why pruning was refused."""

    delete: tuple[ObjectRef, ...]
    refused: str = ""  # non-empty: a human reason; nothing may be deleted
    reason: str = ""  # CamelCase reason when refused

    @property
    def allowed(self) -> bool:
        return not self.refused


def plan_prune(
    inventory: Iterable[ObjectRef],
    desired: Iterable[ObjectRef],
    *,
    allow_prune_all: bool = False,
    mass_prune_fraction: float = MASS_PRUNE_FRACTION,
) -> PrunePlan:
    """Entries recorded in ``inventory`` whose identity is not in ``desired``, in delete order.

    Refused (nothing deleted) when the bundle is empty, or when more than
    ``mass_prune_fraction`` of at least ``MASS_PRUNE_MIN_OBJECTS`` recorded
    objects would go, unless ``allow_prune_all``.
    """
    recorded = {r.key: r for r in inventory}
    wanted = {r.key for r in desired}
    gone = [ref for key, ref in recorded.items() if key not in wanted]
    if not wanted and gone and not allow_prune_all:
        return PrunePlan(
            delete=(),
            refused=f"the bundle is empty; refusing to prune all {len(gone)} recorded object(s)",
            reason=EMPTY_BUNDLE_REFUSED,
        )
    if (
        not allow_prune_all
        and len(recorded) >= MASS_PRUNE_MIN_OBJECTS
        and len(gone) > mass_prune_fraction * len(recorded)
    ):
        return PrunePlan(
            delete=(),
            refused=(
                f"the bundle lost {len(gone)} of {len(recorded)} recorded object(s) (over "
                f"{mass_prune_fraction:.0%}); refusing to prune them — set allow_prune_all for this "
                "change if it is intended"
            ),
            reason=MASS_PRUNE_REFUSED,
        )
    return PrunePlan(delete=tuple(order_for_delete(gone)))


def order_for_apply_items(items: Iterable[Any]) -> list[Any]:
    """Things with a ``ref`` (bundle items), in apply order."""
    return sorted(items, key=lambda item: apply_sort_key(item.ref))


def crd_defines(crd: Mapping[str, Any]) -> tuple[str, str]:
    """The (group, kind) a CustomResourceDefinition object serves; ("", "") when it names none."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    return (str(spec.get("group") or ""), str(names.get("kind") or ""))


def crd_scopes(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    """(group, kind) -> namespaced, for every CustomResourceDefinition in ``objects``."""
    out: dict[tuple[str, str], bool] = {}
    for obj in objects:
        if ObjectRef.from_object(obj).group_kind != CRD:
            continue
        group, kind = crd_defines(obj)
        if group and kind:
            out[(group, kind)] = (obj.get("spec") or {}).get("scope", "Namespaced") != "Cluster"
    return out
