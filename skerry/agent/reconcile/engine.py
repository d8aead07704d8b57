"""The reconcile engine: apply a verified bundle in plan order, prune, record the inventory.

``Reconciler.reconcile`` never raises for a problem with one object: a
rejected, forbidden or unsealable object is a ``failed`` result and the
others go on. The outcome is data (``ReconcileResult``): one result per
object and conditions ``Applied``, ``Pruned``, ``Inventory`` rolled up into
``Ready`` (True only if every object applied, pruning ran and the
inventory was recorded).

Rules that keep pruning safe:

* only inventory entries that left the bundle are candidates — never a label selector;
* nothing is pruned in a round where any apply failed (a renamed workload whose
  new copy failed must not lose its old copy), nor when the bundle is empty
  (unless ``allow_prune_all``);
* a live object annotated ``skerry.io/prune: disabled`` or no longer labelled
  ``app.kubernetes.io/managed-by: skerry`` is left alone and dropped from the inventory;
* a failed apply keeps its inventory entry if it had one (it may exist from before),
  and a failure that may have reached the API server (``Unavailable``) records it,
  so nothing the agent may have created is ever forgotten.

Objects of one phase are applied in parallel (``workers`` threads; the
phases themselves stay in order), and an apply costs one request: the
resourceVersion the engine last saw (its own apply, or a watch event fed in
through ``observe``) tells "unchanged" from "configured" without a GET.

After each reconcile the engine keeps, per applied object, a drift
fingerprint of what it applied (``applied``) so the drift monitor can tell
a change made outside Git from its own writes; ``correct`` re-applies just
the drifted objects. While an object's apply is in flight (``in_flight``) a
watch event may already show that write; the monitor holds such events until
``on_settled`` says the fingerprint of what was written is recorded.

Blocking (the Kubernetes client is synchronous): the app runs ``reconcile``
in a worker thread.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from skerry.agent.reasons import UNAVAILABLE, UNKNOWN_KIND
from skerry.agent.reconcile import drift as drift_mod
from skerry.agent.reconcile import plan
from skerry.agent.reconcile.defaults import set_native_defaults
from skerry.agent.reconcile.inventory import (
    CONFIGMAP_NAME,
    SUSPEND_ANNOTATION,
    Inventory,
    InventoryCorrupt,
    next_inventory,
)
from skerry.agent.reconcile.model import (
    APPLIED_ACTIONS,
    CREATED,
    FAILED,
    FALSE,
    PRUNED,
    SKIPPED,
    TRUE,
    Condition,
    ObjectRef,
    ObjectResult,
    ReconcileResult,
)
from skerry.agent.secrets import NoUnsealer, Unsealer, is_sealed_secret, secret_from_sealed
from skerry.core.bundle import VerifiedBundle
from skerry.core.errors import KubeError, SkerryError

log = structlog.get_logger("skerry.agent.reconcile")

DIGEST_ANNOTATION = "skerry.io/bundle-digest"
RELEASE_ANNOTATION = "skerry.io/release"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "skerry"
DEFAULT_NAMESPACE = "default"
# Parallel applies per phase: enough to hide API-server latency on a 2-core agent without
# flooding the server's max-in-flight (400 mutating requests by default).
DEFAULT_WORKERS = 8


@dataclasses.dataclass
class _Item:
    ref: ObjectRef  # where it lands (a SealedSecret lands as a v1 Secret)
    source: Mapping[str, Any]  # the bundle object, untouched
    sealed: bool


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
        self.allow_prune_all = allow_prune_all
        self.crd_wait_seconds = crd_wait_seconds
        self.retry_interval = retry_interval
        self._sleep = sleep
        self._monotonic = monotonic
        # Per-reconcile state (reconciles are serialised by the app).
        self._deadline: float | None = None
        self._failed_crds: set[tuple[str, str]] = set()
        self.workers = max(1, int(workers))
        self.mass_prune_fraction = mass_prune_fraction
        self._lock = threading.Lock()
        # key -> last resourceVersion seen (own applies and watch events).
        self._versions: dict[tuple[str, str, str, str], str] = {}
        # key -> content digest of the last apply (tells unchanged from configured without a GET).
        self._digests: dict[tuple[str, str, str, str], str] = {}
        # Keys recorded in the inventory at the start of the reconcile in progress.
        self._recorded: set[tuple[str, str, str, str]] = set()
        # key -> {field path: live value} for drift-ignored fields (see ``yield_fields``).
        self._yielded: dict[tuple[str, str, str, str], dict[tuple, Any]] = {}
        # key -> (ref, drift fingerprint of what was applied) for the last reconciled bundle.
        self.applied: dict[tuple[str, str, str, str], tuple[ObjectRef, dict]] = {}
        self._items: dict[tuple[str, str, str, str], _Item] = {}
        # Called (from apply threads) with each key right after its successful apply.
        self.on_applied: Callable[[tuple[str, str, str, str]], None] | None = None
        # Called (from apply threads) with each key once its apply returned, applied or failed.
        self.on_settled: Callable[[tuple[str, str, str, str]], None] | None = None
        # Keys whose apply is in flight: a watch event of one may show our own write before the
        # fingerprint of what was written is recorded (``in_flight``; the monitor defers those).
        self._in_flight: set[tuple[str, str, str, str]] = set()
        self._digest = ""
        self._crd_scopes: Mapping[tuple[str, str], bool] = {}

    def observe(self, key: tuple[str, str, str, str], resource_version: str | None) -> None:
        """Record the resourceVersion a watch saw (``None``: the object is gone)."""
        with self._lock:
            if resource_version is None:
                self._versions.pop(key, None)
                self._digests.pop(key, None)
            else:
                self._versions[key] = resource_version

    def yield_fields(self, key: tuple[str, str, str, str], values) -> None:
        """Apply these live values (``(path, value)`` of drift-ignored fields) from now on."""
        with self._lock:
            mine = self._yielded.setdefault(key, {})
            for path, value in values:
                if all(isinstance(seg, str) for seg in path):
                    mine[path] = copy.deepcopy(value)

    def in_flight(self, key: tuple[str, str, str, str]) -> bool:
        """Whether an apply of ``key`` is under way; call with ``_lock`` held to act on the answer atomically."""
        return key in self._in_flight

    def last_version(self, key: tuple[str, str, str, str]) -> str | None:
        with self._lock:
            return self._versions.get(key)

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

    # --- the reconcile ----------------------------------------------------------------------

    def reconcile(self, verified: VerifiedBundle) -> ReconcileResult:
        bundle = verified.bundle
        base = {
            "cluster": bundle.cluster,
            "release": verified.release,
            "digest": verified.digest,
            "revision": bundle.revision,
        }
        started = self._monotonic()
        corrupt = ""
        try:
            configmap = self.kube.get_configmap(self.namespace, CONFIGMAP_NAME)
            if _suspended(configmap):
                msg = (
                    f"{SUSPEND_ANNOTATION}=true on {self.namespace}/{CONFIGMAP_NAME}: release "
                    f"{verified.release} not applied (skerry resume to continue)"
                )
                log.warning("suspended; nothing applied", release=verified.release)
                return ReconcileResult(
                    **base,
                    conditions=(
                        Condition("Suspended", TRUE, "Suspended", msg),
                        Condition("Ready", FALSE, "Suspended", msg),
                    ),
                )
            previous = Inventory.from_configmap(configmap)
        except InventoryCorrupt as e:
            previous, corrupt = Inventory(), str(e)
            log.warning("inventory unreadable; applying without pruning", error=corrupt)
        except KubeError as e:
            log.warning("cannot read the inventory; nothing applied", error=str(e), reason=e.reason)
            msg = f"cannot read the inventory ConfigMap {self.namespace}/{CONFIGMAP_NAME}: {e}"
            return ReconcileResult(
                **base,
                conditions=(
                    Condition("Applied", FALSE, "InventoryUnavailable", msg),
                    Condition("Ready", FALSE, "InventoryUnavailable", msg),
                ),
            )

        if previous.cluster and previous.cluster != bundle.cluster:
            # Two agents sharing one namespace would prune each other's objects: refuse, touch nothing.
            msg = (
                f"the inventory {self.namespace}/{CONFIGMAP_NAME} belongs to cluster {previous.cluster!r}, "
                f"not {bundle.cluster!r}; give each agent its own namespace (--namespace). Nothing applied."
            )
            log.error("inventory belongs to another cluster; nothing applied", owner=previous.cluster)
            return ReconcileResult(
                **base,
                conditions=(
                    Condition("Applied", FALSE, "InventoryConflict", msg),
                    Condition("Ready", FALSE, "InventoryConflict", msg),
                ),
            )

        self._recorded = previous.keys()
        crd_scopes = plan.crd_scopes(bundle.objects)
        items = [self._item(obj, crd_scopes) for obj in bundle.objects]
        dupes = plan.duplicates(i.ref for i in items)
        self._deadline = None
        self._failed_crds = set()

        results: list[ObjectResult] = []
        applied_refs: list[ObjectRef] = []
        failure_reasons: dict[tuple[str, str, str, str], str] = {}
        fingerprints: dict[tuple[str, str, str, str], tuple[ObjectRef, dict]] = {}
        seen_dupes: set[tuple[str, str, str, str]] = set()
        created_crds: list[str] = []
        crds_changed = False
        phases: dict[int, list[_Item]] = {}
        for item in sorted(items, key=lambda i: plan.apply_sort_key(i.ref)):
            if item.ref.key in dupes:
                if item.ref.key not in seen_dupes:
                    seen_dupes.add(item.ref.key)
                    results.append(
                        ObjectResult(item.ref, FAILED, "appears more than once in the bundle; not applied")
                    )
                    failure_reasons[item.ref.key] = "Duplicate"
                continue
            phases.setdefault(plan.phase(item.ref), []).append(item)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="skerry-apply") as pool:
            for number in sorted(phases):
                if number != plan.PHASE_CRD and crds_changed:
                    self._await_crds(created_crds)
                    crds_changed = False
                batch = phases[number]
                outcomes = list(
                    pool.map(lambda it: self._apply_one(it, verified.digest, crd_scopes), batch)
                    if len(batch) > 1
                    else [self._apply_one(batch[0], verified.digest, crd_scopes)]
                )
                for item, (result, reason, fp) in zip(batch, outcomes, strict=True):
                    results.append(result)
                    if result.action in APPLIED_ACTIONS:
                        applied_refs.append(item.ref)
                        if fp is not None:
                            fingerprints[item.ref.key] = (item.ref, fp)
                    if result.action == FAILED:
                        failure_reasons[item.ref.key] = reason
                        if item.ref.group_kind == plan.CRD:
                            self._failed_crds.update(_crd_group_kinds(item.source))
                    elif item.ref.group_kind == plan.CRD and result.action != "unchanged":
                        crds_changed = True
                        if result.action == CREATED:
                            created_crds.append(item.ref.name)
        with self._lock:
            self.applied = {k: self.applied.get(k, v) for k, v in fingerprints.items()}
            self._items = {i.ref.key: i for i in items if i.ref.key not in dupes}
            self._digest = verified.digest
            self._crd_scopes = crd_scopes

        # What stays recorded although not applied now.
        previous_by_key = {r.key: r for r in previous.objects}
        kept: list[ObjectRef] = []
        for item in items:
            reason = failure_reasons.get(item.ref.key)
            if reason is None:
                continue
            if item.ref.key in previous_by_key:
                kept.append(previous_by_key[item.ref.key])
            elif reason == UNAVAILABLE:
                kept.append(item.ref)  # the request may have reached the API server

        # Prune.
        desired = [i.ref for i in items]
        prune = plan.plan_prune(
            previous.objects,
            desired,
            allow_prune_all=self.allow_prune_all,
            mass_prune_fraction=self.mass_prune_fraction,
        )
        pruned = 0
        if corrupt:
            pruned_cond = Condition(
                "Pruned",
                FALSE,
                "InventoryCorrupt",
                f"nothing pruned: {corrupt}; it is replaced by what this reconcile applied, so objects "
                "recorded only in the unreadable inventory will not be pruned automatically",
            )
        elif not prune.allowed:
            pruned_cond = Condition("Pruned", FALSE, prune.reason, prune.refused)
            kept.extend(previous.objects)
            for ref in _order_candidates(previous, desired):
                results.append(ObjectResult(ref, SKIPPED, f"not pruned: {prune.refused}"))
        elif failure_reasons and prune.delete:
            msg = f"prune of {len(prune.delete)} object(s) postponed: {len(failure_reasons)} object(s) failed to apply"
            pruned_cond = Condition("Pruned", FALSE, "PrunePostponed", msg)
            kept.extend(prune.delete)
            for ref in prune.delete:
                results.append(ObjectResult(ref, SKIPPED, msg))
        else:
            prune_failures = 0
            for ref in prune.delete:
                result, keep = self._prune_one(ref)
                results.append(result)
                if keep:
                    kept.append(ref)
                if result.action == FAILED:
                    prune_failures += 1
                elif result.action == PRUNED:
                    pruned += 1
            if prune_failures:
                pruned_cond = Condition(
                    "Pruned", FALSE, "PruneFailed", f"{prune_failures} of {len(prune.delete)} prune(s) failed"
                )
            elif prune.delete:
                pruned_cond = Condition("Pruned", TRUE, "Pruned", f"{pruned} object(s) pruned")
            else:
                pruned_cond = Condition(
                    "Pruned", TRUE, "NothingToPrune", "no recorded object left the bundle"
                )

        # Record.
        inventory = next_inventory(
            applied=applied_refs,
            kept=kept,
            cluster=bundle.cluster,
            release=verified.release,
            digest=verified.digest,
            revision=bundle.revision,
        )
        try:
            self.write_inventory(inventory)
            inventory_cond = Condition(
                "Inventory",
                TRUE,
                "Recorded",
                f"{len(inventory)} object(s) recorded in {self.namespace}/{CONFIGMAP_NAME}",
            )
        except KubeError as e:
            log.error("cannot write the inventory", error=str(e), reason=e.reason)
            inventory_cond = Condition("Inventory", FALSE, "InventoryWriteFailed", str(e))

        applied_cond = _applied_condition(results, failure_reasons)
        conditions = [applied_cond, pruned_cond, inventory_cond]
        first_false = next((c for c in conditions if not c.is_true), None)
        if first_false is None:
            ready = Condition("Ready", TRUE, "ReconciliationSucceeded", f"release {verified.release} applied")
        else:
            ready = Condition("Ready", FALSE, first_false.reason, first_false.message)
        result = ReconcileResult(**base, objects=tuple(results), conditions=(*conditions, ready))
        log.info(
            "reconciled",
            release=verified.release,
            digest=verified.digest,
            ready=result.ready,
            seconds=round(self._monotonic() - started, 3),
            **{k: v for k, v in result.counts().items() if v},
        )
        return result

    # --- pieces -----------------------------------------------------------------------------

    def _item(self, obj: Mapping[str, Any], crd_scopes: Mapping[tuple[str, str], bool]) -> _Item:
        sealed = is_sealed_secret(obj)
        ref = ObjectRef.from_object(obj)
        if sealed:
            ref = ObjectRef("v1", "Secret", ref.namespace, ref.name)
        namespaced = crd_scopes.get(ref.group_kind)
        if namespaced is None:
            try:
                namespaced = self.kube.is_namespaced(ref.api_version, ref.kind)
            except KubeError:
                namespaced = None  # unknown kind: the apply reports it
        if namespaced is True and not ref.namespace:
            ref = ref.with_namespace(DEFAULT_NAMESPACE)
        elif namespaced is False and ref.namespace:
            ref = ref.with_namespace("")
        return _Item(ref=ref, source=obj, sealed=sealed)

    def _desired(self, item: _Item, digest: str) -> dict:
        if item.sealed:
            body = secret_from_sealed(item.source, self.secrets, namespace=item.ref.namespace)
        else:
            body = copy.deepcopy(dict(item.source))
            set_native_defaults(body)
        meta = body.setdefault("metadata", {})
        if item.ref.namespace:
            meta["namespace"] = item.ref.namespace
        else:
            meta.pop("namespace", None)
        meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
        meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST_ANNOTATION: digest}
        with self._lock:
            yielded = list((self._yielded.get(item.ref.key) or {}).items())
        for path, value in yielded:
            _put(body, path, value)
        return body

    def correct(self, keys) -> list[ObjectResult]:
        """Re-apply the objects with these keys from the last reconciled bundle (drift correction)."""
        with self._lock:
            items = [self._items[k] for k in keys if k in self._items]
            digest, scopes = self._digest, self._crd_scopes
        self._deadline = None
        out = []
        for item in items:
            result, _reason, fp = self._apply_one(item, digest, scopes)
            if fp is not None:
                with self._lock:
                    self.applied[item.ref.key] = (item.ref, fp)
            out.append(result)
        return out

    def _apply_one(
        self, item: _Item, digest: str, crd_scopes: Mapping[tuple[str, str], bool]
    ) -> tuple[ObjectResult, str, dict | None]:
        ref = item.ref
        if (
            ref.group_kind == ("", "ConfigMap")
            and ref.namespace == self.namespace
            and ref.name == CONFIGMAP_NAME
        ):
            return ObjectResult(
                ref, FAILED, f"{ref} is reserved for the agent's inventory; not applied"
            ), "Reserved", None
        if ref.group_kind in self._failed_crds:
            return ObjectResult(
                ref, FAILED, f"{ref}: its CustomResourceDefinition failed to apply"
            ), UNKNOWN_KIND, None
        try:
            body = self._desired(item, digest)
        except SkerryError as e:
            log.warning("object not applied", object=str(ref), reason=e.reason, error=str(e))
            return ObjectResult(ref, FAILED, str(e)), e.reason, None
        # ``body`` may hold unsealed plaintext: it lives only in this frame and in the request.
        with self._lock:
            self._in_flight.add(ref.key)
        try:
            return self._send_apply(item, body, crd_scopes)
        finally:
            with self._lock:
                self._in_flight.discard(ref.key)
            if self.on_settled is not None:
                self.on_settled(ref.key)

    def _send_apply(
        self, item: _Item, body: dict, crd_scopes: Mapping[tuple[str, str], bool]
    ) -> tuple[ObjectResult, str, dict | None]:
        ref = item.ref
        while True:
            try:
                outcome = self.kube.apply(
                    body,
                    field_manager=self.field_manager,
                    force=True,
                    ignore_annotations=(DIGEST_ANNOTATION,),
                    previous_digest=self._digests.get(ref.key),
                    keep_live=True,
                    assume_new=ref.key not in self._recorded,
                )
            except KubeError as e:
                if e.reason == UNKNOWN_KIND and ref.group_kind in crd_scopes and self._wait_for_kinds():
                    continue
                if e.reason == UNKNOWN_KIND and ref.group_kind in crd_scopes:
                    msg = f"{e} (still not served {self.crd_wait_seconds:g}s after its CustomResourceDefinition)"
                else:
                    msg = str(e)
                log.warning("object not applied", object=str(ref), reason=e.reason, error=msg)
                return ObjectResult(ref, FAILED, msg), str(e.reason), None
            fp = drift_mod.observed_fingerprint(body, outcome.live)
            outcome = dataclasses.replace(outcome, live=None)  # may be a Secret: keep only the digests
            with self._lock:
                # Together, so a watch event is judged against the fingerprint of the state it shows.
                self._versions[ref.key] = outcome.resource_version
                self._digests[ref.key] = outcome.digest
                self.applied[ref.key] = (ref, fp)
                self._in_flight.discard(ref.key)
            if self.on_applied is not None:
                self.on_applied(ref.key)  # the live object now is what was applied: no drift
            log.debug("applied", object=str(ref), action=outcome.action)
            notes = ["unsealed from SealedSecret"] if item.sealed else []
            if outcome.conflicts:
                notes.append("took over fields from other managers: " + "; ".join(outcome.conflicts))
                log.warning("apply conflict forced", object=str(ref), conflicts=list(outcome.conflicts))
            return ObjectResult(ref, outcome.action, "; ".join(notes)), "", fp

    def _wait_for_kinds(self) -> bool:
        """Sleep a little and refresh discovery, within the per-reconcile CRD budget; False when spent."""
        now = self._monotonic()
        if self._deadline is None:
            self._deadline = now + self.crd_wait_seconds
        if now >= self._deadline:
            return False
        self._sleep(min(self.retry_interval, max(0.0, self._deadline - now)))
        try:
            self.kube.invalidate_discovery()
        except KubeError:
            pass
        return True

    def _await_crds(self, names: list[str]) -> None:
        """After CRDs changed: wait (bounded) for new ones to be Established, then refresh discovery."""
        pending = list(names)
        while pending:
            try:
                pending = [n for n in pending if not self.kube.crd_established(n)]
            except KubeError:
                pass
            if not pending:
                break
            now = self._monotonic()
            if self._deadline is None:
                self._deadline = now + self.crd_wait_seconds
            if now >= self._deadline:
                log.warning("CustomResourceDefinitions not established in time", crds=pending)
                break
            self._sleep(min(self.retry_interval, self._deadline - now))
        try:
            self.kube.invalidate_discovery()
        except KubeError:
            pass

    def _prune_one(self, ref: ObjectRef) -> tuple[ObjectResult, bool]:
        """Delete one recorded object that left the bundle; returns (result, keep in inventory)."""
        ns = ref.namespace or None
        try:
            live = self.kube.get(ref.api_version, ref.kind, ref.name, ns)
        except KubeError as e:
            if e.reason == UNKNOWN_KIND:
                return ObjectResult(
                    ref, SKIPPED, f"{e}; nothing to delete, dropped from the inventory"
                ), False
            return ObjectResult(ref, FAILED, f"not pruned: {e}"), True
        if live is None:
            return ObjectResult(ref, PRUNED, "already absent"), False
        if plan.prune_disabled(live):
            return (
                ObjectResult(
                    ref,
                    SKIPPED,
                    f"{plan.PRUNE_ANNOTATION}: {plan.PRUNE_DISABLED}; left in place and no longer managed",
                ),
                False,
            )
        labels = (live.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            return (
                ObjectResult(
                    ref,
                    SKIPPED,
                    f"no longer labelled {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}; left in place, not ours now",
                ),
                False,
            )
        try:
            gone = self.kube.delete(ref.api_version, ref.kind, ref.name, ns, propagation="Background")
        except KubeError as e:
            log.warning("prune failed", object=str(ref), reason=e.reason, error=str(e))
            return ObjectResult(ref, FAILED, f"not pruned: {e}"), True
        log.info("pruned", object=str(ref))
        return ObjectResult(ref, PRUNED, "" if gone else "already absent"), False


def _put(body: dict, path: tuple, value: Any) -> None:
    cur: Any = body
    for seg in path[:-1]:
        if not isinstance(cur, dict):
            return
        cur = cur.setdefault(seg, {})
    if isinstance(cur, dict):
        cur[path[-1]] = copy.deepcopy(value)


def _suspended(configmap: Mapping[str, Any] | None) -> bool:
    annotations = ((configmap or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(SUSPEND_ANNOTATION, "")).lower() == "true"


def _order_candidates(previous: Inventory, desired: list[ObjectRef]) -> list[ObjectRef]:
    wanted = {r.key for r in desired}
    return plan.order_for_delete(r for r in previous.objects if r.key not in wanted)


def _crd_group_kinds(crd: Mapping[str, Any]) -> set[tuple[str, str]]:
    spec = crd.get("spec") or {}
    kind = (spec.get("names") or {}).get("kind")
    return {(str(spec.get("group", "")), str(kind))} if kind else set()


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
