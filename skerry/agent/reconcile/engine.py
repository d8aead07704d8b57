"""The reconcile engine: apply a verified bundle in plan order, prune, record the inventory.

``Reconciler.reconcile`` never raises for a problem with one object: a
rejected, forbidden or unsealable object is a ``failed`` result and the
others go on. The outcome is data (``ReconcileResult``). Like Flux's
source-controller it runs as steps, each owning one condition, rolled up
into ``Ready`` (True only if every step's condition is True):

    inventory   read the recorded inventory    Suspended / InventoryUnavailable / InventoryConflict stop here
    apply       every object, in plan order    Applied
    prune       what left the bundle (prune)   Pruned
    record      the next inventory             Inventory

Rules that keep pruning safe live in ``prune``; the ones that keep the
inventory complete live here: a failed apply keeps its inventory entry if
it had one (it may exist from before), and a failure that may have reached
the API server (``Unavailable``) records it, so nothing the agent may have
created is ever forgotten.

Objects of one phase are applied in parallel (``workers`` threads; the
phases themselves stay in order), and an apply costs one request: the
resourceVersion and digest the engine last saw (``applied``, an
``AppliedState`` the drift monitor shares) tell "unchanged" from
"configured" without a GET. ``correct`` re-applies just the drifted objects
of the last reconciled bundle; ``on_applied`` / ``on_settled`` tell the
monitor when an object's own write is recorded.

Blocking (the Kubernetes client is synchronous): the app runs ``reconcile``
in a worker thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from skerry.agent.reasons import UNKNOWN_KIND
from skerry.agent.reconcile import desired, plan
from skerry.agent.reconcile import drift as drift_mod
from skerry.agent.reconcile.applied import AppliedState, Key
from skerry.agent.reconcile.crds import CrdWaitPolicy, KindWait
from skerry.agent.reconcile.desired import (  # noqa: F401 - names callers import from the engine
    DEFAULT_NAMESPACE,
    DIGEST_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RELEASE_ANNOTATION,
    Item,
)
from skerry.agent.reconcile.inventory import (
    CONFIGMAP_NAME,
    SUSPEND_ANNOTATION,
    Inventory,
    InventoryCorrupt,
    kept_after_failures,
    next_inventory,
)
from skerry.agent.reconcile.model import (
    APPLIED_ACTIONS,
    CREATED,
    FAILED,
    FALSE,
    TRUE,
    UNCHANGED,
    Condition,
    ObjectRef,
    ObjectResult,
    ReconcileResult,
)
from skerry.agent.reconcile.prune import PrunePolicy, prune_step
from skerry.agent.secrets import NoUnsealer, Unsealer
from skerry.core.bundle import VerifiedBundle
from skerry.core.errors import KubeError, SkerryError

log = structlog.get_logger("skerry.agent.reconcile")

# Parallel applies per phase: enough to hide API-server latency on a 2-core agent without
# flooding the server's max-in-flight (400 mutating requests by default).
DEFAULT_WORKERS = 8


class _Halt(Exception):
    """A step found the round must not go on; its conditions are the result."""

    def __init__(self, *conditions: Condition):
        super().__init__(conditions[0].message)
        self.conditions = conditions


@dataclasses.dataclass
class _Round:
    """What one reconcile (and the drift corrections after it) apply against."""

    digest: str
    crd_scopes: Mapping[tuple[str, str], bool]
    recorded: set[Key]  # keys in the inventory when the round began
    kinds: KindWait  # waits for the bundle's own CRDs' kinds, within one budget


@dataclasses.dataclass
class _ApplyOutcome:
    results: list[ObjectResult]
    applied: list[ObjectRef]
    failures: dict[Key, str]  # key -> reason of each failed apply
    fingerprints: dict[Key, tuple[ObjectRef, dict]]
    condition: Condition


class Reconciler:
    """Applies verified bundles to one cluster through a ``KubeClient``."""

    def __init__(
        self,
        kube,
        secrets: Unsealer | None = None,
        field_manager: str = "skerry",
        namespace: str = "skerry-system",
        *,
        allow_prune_all: bool = False,
        allow_prune_protected: bool = False,
        crd_wait_seconds: float = 30.0,
        retry_interval: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        workers: int = DEFAULT_WORKERS,
        mass_prune_fraction: float = plan.MASS_PRUNE_FRACTION,
    ):
        self.kube = kube
        self.secrets: Unsealer = secrets if secrets is not None else NoUnsealer()
        self.field_manager = field_manager
        self.namespace = namespace
        self.prune_policy = PrunePolicy(allow_prune_all, mass_prune_fraction, allow_prune_protected)
        self.crd_wait = CrdWaitPolicy(crd_wait_seconds, retry_interval, sleep, monotonic)
        self._monotonic = monotonic
        self.workers = max(1, int(workers))
        self.applied = AppliedState()
        # The last reconciled bundle, for ``correct`` (reconciles and corrections are serialised by the app).
        self._last_lock = threading.Lock()
        self._last_items: dict[Key, Item] = {}
        self._last_round: _Round | None = None
        # Called (from apply threads) with each key right after its successful apply.
        self.on_applied: Callable[[Key], None] | None = None
        # Called (from apply threads) with each key once its apply returned, applied or failed.
        self.on_settled: Callable[[Key], None] | None = None

    # --- inventory --------------------------------------------------------------------------

    def read_inventory(self) -> Inventory:
        """The recorded inventory (empty if none yet). Raises ``KubeError``/``InventoryCorrupt``."""
        return Inventory.from_configmap(self.kube.get_configmap(self.namespace, CONFIGMAP_NAME))

    def write_inventory(self, inventory: Inventory) -> None:
        data, binary = inventory.to_configmap()
        self.kube.put_configmap(
            self.namespace,
            CONFIGMAP_NAME,
            data=data,
            binary_data=binary,
            labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE, "app.kubernetes.io/component": "inventory"},
            annotations={DIGEST_ANNOTATION: inventory.digest, RELEASE_ANNOTATION: str(inventory.release)},
            field_manager=self.field_manager,
        )

    # --- the reconcile, step by step ----------------------------------------------------------

    def reconcile(self, verified: VerifiedBundle) -> ReconcileResult:
        bundle = verified.bundle
        base = {
            "cluster": bundle.cluster,
            "release": verified.release,
            "number": verified.number,
            "digest": verified.digest,
            "revision": bundle.revision,
        }
        started = self._monotonic()
        try:
            previous, corrupt = self._inventory_step(verified)
        except _Halt as halt:
            return ReconcileResult(**base, conditions=halt.conditions)
        crd_scopes = plan.crd_scopes(bundle.objects)
        rnd = _Round(verified.digest, crd_scopes, previous.keys(), KindWait(self.crd_wait))
        items = [desired.item(obj, crd_scopes, self.kube.is_namespaced) for obj in bundle.objects]
        dupes = plan.duplicates(i.ref for i in items)
        applied = self._apply_step(rnd, items, dupes)
        self.applied.keep_only(applied.fingerprints)
        with self._last_lock:
            self._last_items = {i.ref.key: i for i in items if i.ref.key not in dupes}
            self._last_round = rnd
        refs = [i.ref for i in items]
        pruned = prune_step(
            self.kube, previous, refs, failed=len(applied.failures), corrupt=corrupt, policy=self.prune_policy
        )
        kept = [*kept_after_failures([i.ref for i in items], applied.failures, previous), *pruned.kept]
        inventory_cond = self._record_step(verified, applied.applied, kept)
        conditions = [applied.condition, pruned.condition, inventory_cond]
        result = ReconcileResult(
            **base,
            objects=(*applied.results, *pruned.results),
            conditions=(*conditions, _ready(conditions, verified.label)),
        )
        log.info(
            "reconciled",
            release=verified.release,
            release_name=verified.label,
            digest=verified.digest,
            ready=result.ready,
            seconds=round(self._monotonic() - started, 3),
            **{k: v for k, v in result.counts().items() if v},
        )
        return result

    def _inventory_step(self, verified: VerifiedBundle) -> tuple[Inventory, str]:
        """``(previous inventory, why it was unreadable or "")``; ``_Halt`` when nothing may be applied."""
        cluster = verified.bundle.cluster
        where = f"{self.namespace}/{CONFIGMAP_NAME}"
        try:
            configmap = self.kube.get_configmap(self.namespace, CONFIGMAP_NAME)
            if _suspended(configmap):
                msg = (
                    f"{SUSPEND_ANNOTATION}=true on {where}: release "
                    f"{verified.label} not applied (skerry resume to continue)"
                )
                log.warning("suspended; nothing applied", release=verified.release,
                            release_name=verified.label)
                raise _Halt(
                    Condition("Suspended", TRUE, "Suspended", msg),
                    Condition("Ready", FALSE, "Suspended", msg),
                )
            previous = Inventory.from_configmap(configmap)
        except InventoryCorrupt as e:
            log.warning("inventory unreadable; applying without pruning", error=str(e))
            return Inventory(), str(e)
        except KubeError as e:
            log.warning("cannot read the inventory; nothing applied", error=str(e), reason=e.reason)
            msg = f"cannot read the inventory ConfigMap {where}: {e}"
            raise _Halt(
                Condition("Applied", FALSE, "InventoryUnavailable", msg),
                Condition("Ready", FALSE, "InventoryUnavailable", msg),
            ) from None
        if previous.cluster and previous.cluster != cluster:
            # Two agents sharing one namespace would prune each other's objects: refuse, touch nothing.
            msg = (
                f"the inventory {where} belongs to cluster {previous.cluster!r}, "
                f"not {cluster!r}; give each agent its own namespace (--namespace). Nothing applied."
            )
            log.error("inventory belongs to another cluster; nothing applied", owner=previous.cluster)
            raise _Halt(
                Condition("Applied", FALSE, "InventoryConflict", msg),
                Condition("Ready", FALSE, "InventoryConflict", msg),
            )
        return previous, ""

    def _apply_step(self, rnd: _Round, items: list[Item], dupes: set[Key]) -> _ApplyOutcome:
        """Apply every object phase by phase (in parallel inside a phase); owns ``Applied``."""
        out = _ApplyOutcome([], [], {}, {}, Condition("Applied", TRUE, "Applied", ""))
        phases: dict[int, list[Item]] = {}
        for item in sorted(items, key=lambda i: plan.apply_sort_key(i.ref)):
            if item.ref.key not in dupes:
                phases.setdefault(plan.phase(item.ref), []).append(item)
            elif item.ref.key not in out.failures:
                out.results.append(
                    ObjectResult(item.ref, FAILED, "appears more than once in the bundle; not applied")
                )
                out.failures[item.ref.key] = "Duplicate"
        created_crds: list[str] = []
        crds_changed = False
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="skerry-apply") as pool:
            for number in sorted(phases):
                if number != plan.PHASE_CRD and crds_changed:
                    rnd.kinds.for_established(self.kube, created_crds)
                    crds_changed = False
                batch = phases[number]
                if len(batch) > 1:
                    outcomes = list(pool.map(lambda it: self._apply_one(it, rnd), batch))
                else:
                    outcomes = [self._apply_one(batch[0], rnd)]
                for item, (result, reason, fp) in zip(batch, outcomes, strict=True):
                    crds_changed |= self._tally(out, rnd, item, result, reason, fp, created_crds)
        out.condition = _applied_condition(out.results, out.failures)
        return out

    @staticmethod
    def _tally(out: _ApplyOutcome, rnd: _Round, item: Item, result, reason: str, fp, created_crds) -> bool:
        """Add one apply to the outcome; True if it changed a CRD (later phases wait for it)."""
        out.results.append(result)
        if result.action in APPLIED_ACTIONS:
            out.applied.append(item.ref)
            if fp is not None:
                out.fingerprints[item.ref.key] = (item.ref, fp)
        is_crd = item.ref.group_kind == plan.CRD
        if result.action == FAILED:
            out.failures[item.ref.key] = reason
            if is_crd:
                rnd.kinds.crd_failed(item.source)
            return False
        if is_crd and result.action != UNCHANGED:
            if result.action == CREATED:
                created_crds.append(item.ref.name)
            return True
        return False

    def _record_step(
        self, verified: VerifiedBundle, applied: list[ObjectRef], kept: list[ObjectRef]
    ) -> Condition:
        """Write the next inventory; owns ``Inventory``."""
        bundle = verified.bundle
        inventory = next_inventory(
            applied=applied,
            kept=kept,
            cluster=bundle.cluster,
            release=verified.release,
            digest=verified.digest,
            revision=bundle.revision,
        )
        try:
            self.write_inventory(inventory)
        except KubeError as e:
            log.error("cannot write the inventory", error=str(e), reason=e.reason)
            return Condition("Inventory", FALSE, "InventoryWriteFailed", str(e))
        where = f"{self.namespace}/{CONFIGMAP_NAME}"
        return Condition("Inventory", TRUE, "Recorded", f"{len(inventory)} object(s) recorded in {where}")

    # --- drift correction -------------------------------------------------------------------

    def correct(self, keys: Iterable[Key]) -> list[ObjectResult]:
        """Re-apply the objects with these keys from the last reconciled bundle (drift correction)."""
        with self._last_lock:
            items = with_their_crds([self._last_items[k] for k in keys if k in self._last_items],
                                    self._last_items.values())
            last = self._last_round
        if last is None:
            return []
        rnd = dataclasses.replace(last, kinds=last.kinds.fresh())
        out = []
        for item in items:
            result, _reason, fp = self._apply_one(item, rnd)
            if fp is not None:
                self.applied.remember(item.ref, fp)
            out.append(result)
        return out

    # --- one object -------------------------------------------------------------------------

    def _apply_one(self, item: Item, rnd: _Round) -> tuple[ObjectResult, str, dict | None]:
        ref = item.ref
        if (
            ref.group_kind == ("", "ConfigMap")
            and ref.namespace == self.namespace
            and ref.name == CONFIGMAP_NAME
        ):
            return (
                ObjectResult(ref, FAILED, f"{ref} is reserved for the agent's inventory; not applied"),
                "Reserved",
                None,
            )
        if ref.group_kind in rnd.kinds.failed:
            return (
                ObjectResult(ref, FAILED, f"{ref}: its CustomResourceDefinition failed to apply"),
                UNKNOWN_KIND,
                None,
            )
        try:
            body = desired.body(item, rnd.digest, self.secrets, self.applied.yielded(ref.key))
        except SkerryError as e:
            log.warning("object not applied", object=str(ref), reason=e.reason, error=str(e))
            return ObjectResult(ref, FAILED, str(e)), e.reason, None
        # ``body`` may hold unsealed plaintext: it lives only in this frame and in the request.
        self.applied.begin(ref.key)
        try:
            return self._send_apply(item, body, rnd)
        finally:
            self.applied.settle(ref.key)
            if self.on_settled is not None:
                self.on_settled(ref.key)

    def _send_apply(self, item: Item, body: dict, rnd: _Round) -> tuple[ObjectResult, str, dict | None]:
        ref = item.ref
        while True:
            try:
                outcome = self.kube.apply(
                    body,
                    field_manager=self.field_manager,
                    force=True,
                    ignore_annotations=(DIGEST_ANNOTATION,),
                    previous_digest=self.applied.previous_digest(ref.key),
                    keep_live=True,
                    assume_new=ref.key not in rnd.recorded,
                )
            except KubeError as e:
                new_kind = e.reason == UNKNOWN_KIND and ref.group_kind in rnd.crd_scopes
                if new_kind and rnd.kinds.for_kind(self.kube):
                    continue
                msg = str(e)
                if new_kind:
                    msg = f"{e} (still not served {self.crd_wait.seconds:g}s after its CustomResourceDefinition)"
                log.warning("object not applied", object=str(ref), reason=e.reason, error=msg)
                return ObjectResult(ref, FAILED, msg), str(e.reason), None
            fp = drift_mod.observed_fingerprint(body, outcome.live)
            # Only the digests are kept (the live object may be a Secret).
            self.applied.record(
                ref, resource_version=outcome.resource_version, digest=outcome.digest, fingerprint=fp
            )
            if self.on_applied is not None:
                self.on_applied(ref.key)  # the live object now is what was applied: no drift
            log.debug("applied", object=str(ref), action=outcome.action)
            notes = ["unsealed from SealedSecret"] if item.sealed else []
            if outcome.conflicts:
                notes.append("took over fields from other managers: " + "; ".join(outcome.conflicts))
                log.warning("apply conflict forced", object=str(ref), conflicts=list(outcome.conflicts))
            return ObjectResult(ref, outcome.action, "; ".join(notes)), "", fp


def with_their_crds(items: list[Item], bundle: Iterable[Item]) -> list[Item]:
    """``items`` in apply order, each custom resource preceded by its CRD from ``bundle``.

    A CRD deleted by hand takes every object of its kind with it, and the watches report the
    deletions in any order: correcting a custom resource first would wait for a kind nobody is
    re-creating. Re-applying an unchanged CRD costs one request.
    """
    kinds = {i.ref.group_kind for i in items}
    keys = {i.ref.key for i in items}
    crds = [i for i in bundle if i.ref.group_kind == plan.CRD and i.ref.key not in keys
            and plan.crd_defines(i.source) in kinds]
    return plan.order_for_apply_items([*items, *crds])


def _ready(conditions: list[Condition], release: str) -> Condition:
    first_false = next((c for c in conditions if not c.is_true), None)
    if first_false is None:
        return Condition("Ready", TRUE, "ReconciliationSucceeded", f"release {release} applied")
    return Condition("Ready", FALSE, first_false.reason, first_false.message)


def _suspended(configmap: Mapping[str, Any] | None) -> bool:
    annotations = ((configmap or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(SUSPEND_ANNOTATION, "")).lower() == "true"


def _applied_condition(results: list[ObjectResult], failures: Mapping[tuple, str]) -> Condition:
    applied = [r for r in results if r.action in APPLIED_ACTIONS]
    failed = [r for r in results if r.action == FAILED and r.ref.key in failures]
    counts = {a: sum(1 for r in applied if r.action == a) for a in APPLIED_ACTIONS}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing to apply"
    if failed:
        first = failed[0]
        return Condition(
            "Applied",
            FALSE,
            "ApplyFailed",
            f"{len(failed)} of {len(applied) + len(failed)} object(s) failed ({summary}); first: {first.message}",
        )
    return Condition("Applied", TRUE, "Applied", f"{len(applied)} object(s) applied ({summary})")
