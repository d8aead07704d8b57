"""The vocabulary of a reconcile: object references, per-object results, conditions.

Results are data, not log lines: the hub shows them, the status file and
tests read them. Messages never contain secret values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.core import release_number
from skerry.core.conditions import FALSE, TRUE, UNKNOWN, Condition  # noqa: F401 - the agent's vocabulary

# Per-object actions (the ``ObjectStatus.action`` strings of hub.proto).
CREATED = "created"
CONFIGURED = "configured"
UNCHANGED = "unchanged"
PRUNED = "pruned"
FAILED = "failed"
SKIPPED = "skipped"
ACTIONS = (CREATED, CONFIGURED, UNCHANGED, PRUNED, FAILED, SKIPPED)
APPLIED_ACTIONS = (CREATED, CONFIGURED, UNCHANGED)



@dataclasses.dataclass(frozen=True, order=True)
class ObjectRef:
    """One Kubernetes object: ``apiVersion``, ``kind``, ``namespace`` ("" if cluster-scoped), ``name``.

    Identity (``key``) ignores the version: ``apps/v1 Deployment web`` and
    ``apps/v1beta1 Deployment web`` are the same object.
    """

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def group_kind(self) -> tuple[str, str]:
        return (self.group, self.kind)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.group, self.kind, self.namespace, self.name)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion", "")),
            kind=str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
        )

    def with_namespace(self, namespace: str) -> ObjectRef:
        return dataclasses.replace(self, namespace=namespace)

    def __str__(self) -> str:
        gk = f"{self.group}/{self.kind}" if self.group else self.kind
        return f"{gk} {self.name}" + (f" -n {self.namespace}" if self.namespace else "")


@dataclasses.dataclass(frozen=True)
class ObjectResult:
    ref: ObjectRef
    action: str
    message: str = ""

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")


# The named refusals of a prune plan (``plan.plan_prune``: nothing is deleted), the Pruned condition's reason.
EMPTY_BUNDLE_REFUSED = "EmptyBundleRefused"
MASS_PRUNE_REFUSED = "MassPruneRefused"
PRUNE_REFUSALS = (EMPTY_BUNDLE_REFUSED, MASS_PRUNE_REFUSED)


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile of one verified bundle did."""

    cluster: str
    release: int
    digest: str
    revision: str
    objects: tuple[ObjectResult, ...] = ()
    conditions: tuple[Condition, ...] = ()
    number: int = 0  # the release number people read (``skerry.core.release_number``); 0: unknown

    @property
    def label(self) -> str:
        """The release as people read it: ``r7`` (``-`` before any)."""
        return release_number.label(self.number, self.release)

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None

    def refusals(self) -> tuple[str, ...]:
        """The named refusals this reconcile made (a prune refused), for the refusal counter."""
        pruned = self.condition("Pruned")
        return (pruned.reason,) if pruned is not None and pruned.reason in PRUNE_REFUSALS else ()

    @property
    def ready(self) -> bool:
        c = self.condition("Ready")
        return c is not None and c.is_true

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(ACTIONS, 0)
        for r in self.objects:
            out[r.action] += 1
        return out

    def by_action(self, action: str) -> list[ObjectResult]:
        return [r for r in self.objects if r.action == action]

    def result_for(self, ref_or_key: ObjectRef | tuple[str, str, str, str]) -> ObjectResult | None:
        key = ref_or_key.key if isinstance(ref_or_key, ObjectRef) else ref_or_key
        for r in self.objects:
            if r.ref.key == key:
                return r
        return None

    def with_conditions(self, extra: Iterable[Condition]) -> ReconcileResult:
        """Replace or add conditions by type (e.g. ``Stale`` after a cache re-apply)."""
        extra = list(extra)
        types = {c.type for c in extra}
        kept = [c for c in self.conditions if c.type not in types]
        return dataclasses.replace(self, conditions=tuple(kept + extra))
