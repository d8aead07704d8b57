"""Pure: is a live object Ready, Progressing or Failed — and the roll-up for a whole bundle.

Written in the style of gitops-engine's health package and kstatus: each
kind's status is read the way its controller writes it, with
``observedGeneration`` checked first (a status about an older spec says
nothing about the current one). Anything with standard ``status.conditions``
(``Ready``/``Available`` True/False) gets the generic rule; objects without a
status of their own (ConfigMaps, RBAC, ...) are Ready once applied.

``rollup`` turns per-object health into one ``Healthy`` condition: False as
soon as anything Failed, or when something is still Progressing after the
timeout since the bundle was applied; Unknown (Progressing) before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.agent.reconcile.model import FALSE, TRUE, UNKNOWN, Condition, ObjectRef

READY, PROGRESSING, FAILED = "Ready", "Progressing", "Failed"
# At most this many objects are named in the roll-up message.
MAX_NAMED = 5


@dataclasses.dataclass(frozen=True)
class Health:
    status: str  # Ready | Progressing | Failed
    message: str = ""


def assess(obj: Mapping[str, Any]) -> Health:
    """The health of one live object."""
    kind = str(obj.get("kind", ""))
    group = str(obj.get("apiVersion", "")).rpartition("/")[0] if "/" in str(obj.get("apiVersion", "")) else ""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Health(PROGRESSING, "being deleted")
    fn = _BY_KIND.get((group, kind))
    if fn is not None:
        return fn(obj, status, meta)
    return _generic(status, meta)


def _stale(status: Mapping, meta: Mapping) -> bool:
    observed = status.get("observedGeneration")
    generation = meta.get("generation")
    return observed is not None and generation is not None and int(observed) < int(generation)


def _cond(status: Mapping, type_: str) -> Mapping | None:
    for c in status.get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def _deployment(obj, status, meta) -> Health:
    if (obj.get("spec") or {}).get("paused"):
        return Health(READY, "paused")
    if _stale(status, meta) or "observedGeneration" not in status:
        return Health(PROGRESSING, "waiting for the controller to observe the new spec")
    progressing = _cond(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(FAILED, f"progress deadline exceeded: {progressing.get('message', '')}")
    want = int((obj.get("spec") or {}).get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < want:
        return Health(PROGRESSING, f"{updated} of {want} replicas updated")
    if total > updated:
        return Health(PROGRESSING, f"{total - updated} old replica(s) pending termination")
    if available < updated:
        return Health(PROGRESSING, f"{available} of {updated} updated replicas available")
    return Health(READY, f"{available} replica(s) available")


def _statefulset(obj, status, meta) -> Health:
    if _stale(status, meta) or "observedGeneration" not in status:
        return Health(PROGRESSING, "waiting for the controller to observe the new spec")
    want = int((obj.get("spec") or {}).get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    if ready < want:
        return Health(PROGRESSING, f"{ready} of {want} replicas ready")
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy == "RollingUpdate" and status.get("updateRevision") and (
        status.get("currentRevision") != status.get("updateRevision")
    ):
        return Health(PROGRESSING, f"rolling update to {status.get('updateRevision')} in progress")
    return Health(READY, f"{ready} replica(s) ready")


def _daemonset(obj, status, meta) -> Health:
    if _stale(status, meta) or "observedGeneration" not in status:
        return Health(PROGRESSING, "waiting for the controller to observe the new spec")
    desired = int(status.get("desiredNumberScheduled") or 0)
    updated = int(status.get("updatedNumberScheduled") or 0)
    available = int(status.get("numberAvailable") or 0)
    if updated < desired:
        return Health(PROGRESSING, f"{updated} of {desired} pods updated")
    if available < desired:
        return Health(PROGRESSING, f"{available} of {desired} pods available")
    return Health(READY, f"{available} pod(s) available")


def _job(obj, status, meta) -> Health:
    failed = _cond(status, "Failed")
    if failed and failed.get("status") == "True":
        return Health(FAILED, f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": "))
    complete = _cond(status, "Complete")
    if complete and complete.get("status") == "True":
        return Health(READY, "complete")
    return Health(PROGRESSING, f"{int(status.get('active') or 0)} active, {int(status.get('succeeded') or 0)} succeeded")


def _pvc(obj, status, meta) -> Health:
    phase = status.get("phase")
    if phase == "Bound":
        return Health(READY, "bound")
    if phase == "Lost":
        return Health(FAILED, "the bound volume is lost")
    return Health(PROGRESSING, f"phase {phase or 'Pending'}")


def _service(obj, status, meta) -> Health:
    if (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return Health(READY)
    ingress = ((status.get("loadBalancer") or {}).get("ingress")) or []
    if ingress:
        first = ingress[0]
        return Health(READY, f"load balancer at {first.get('ip') or first.get('hostname') or '?'}")
    return Health(PROGRESSING, "waiting for a load balancer address")


def _crd(obj, status, meta) -> Health:
    names_accepted = _cond(status, "NamesAccepted")
    if names_accepted and names_accepted.get("status") == "False":
        return Health(FAILED, f"names not accepted: {names_accepted.get('message', '')}")
    established = _cond(status, "Established")
    if established and established.get("status") == "True":
        return Health(READY, "established")
    return Health(PROGRESSING, "not established yet")


def _pod(obj, status, meta) -> Health:
    phase = status.get("phase")
    if phase == "Succeeded":
        return Health(READY, "succeeded")
    if phase == "Failed":
        return Health(FAILED, status.get("message") or "failed")
    ready = _cond(status, "Ready")
    if phase == "Running" and ready and ready.get("status") == "True":
        return Health(READY, "running")
    return Health(PROGRESSING, f"phase {phase or 'Pending'}")


def _generic(status: Mapping, meta: Mapping) -> Health:
    if not status.get("conditions"):
        return Health(READY)
    if _stale(status, meta):
        return Health(PROGRESSING, "status is about an older generation")
    for type_ in ("Ready", "Available", "Healthy"):
        c = _cond(status, type_)
        if c is None:
            continue
        if c.get("status") == "True":
            return Health(READY, str(c.get("message") or ""))
        if c.get("status") == "False":
            text = f"{c.get('reason') or type_}: {c.get('message') or ''}".rstrip(": ")
            # Ready=False with a reason that names progress is still in progress (kstatus).
            if str(c.get("reason") or "").lower() in ("progressing", "reconciling", "pending", "creating"):
                return Health(PROGRESSING, text)
            return Health(FAILED, text)
        return Health(PROGRESSING, f"{type_} is Unknown")
    for type_ in ("Stalled", "Failed"):
        c = _cond(status, type_)
        if c is not None and c.get("status") == "True":
            return Health(FAILED, f"{c.get('reason') or type_}: {c.get('message') or ''}".rstrip(": "))
    for type_ in ("Reconciling", "Progressing"):
        c = _cond(status, type_)
        if c is not None and c.get("status") == "True":
            return Health(PROGRESSING, str(c.get("message") or type_))
    return Health(READY)


_BY_KIND = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): lambda o, s, m: _pvc(o, s, m),
    ("", "Service"): _service,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("", "Pod"): _pod,
}


def rollup(
    healths: Mapping[ObjectRef, Health],
    *,
    elapsed_seconds: float,
    timeout_seconds: float,
) -> Condition:
    """One ``Healthy`` condition for a bundle, ``elapsed_seconds`` after it was applied."""
    failed = sorted(r for r, h in healths.items() if h.status == FAILED)
    progressing = sorted(r for r, h in healths.items() if h.status == PROGRESSING)
    if failed:
        return Condition("Healthy", FALSE, "Failed", _name(failed, healths, "failed"))
    if progressing:
        if elapsed_seconds >= timeout_seconds:
            return Condition(
                "Healthy",
                FALSE,
                "HealthTimeout",
                f"not ready {timeout_seconds:g}s after the apply: " + _name(progressing, healths, "progressing"),
            )
        return Condition("Healthy", UNKNOWN, "Progressing", _name(progressing, healths, "progressing"))
    return Condition("Healthy", TRUE, "AllReady", f"{len(healths)} object(s) ready")


def _name(refs: Iterable[ObjectRef], healths: Mapping[ObjectRef, Health], what: str) -> str:
    refs = list(refs)
    shown = "; ".join(f"{r}: {healths[r].message}".rstrip(": ") for r in refs[:MAX_NAMED])
    more = f" (+{len(refs) - MAX_NAMED} more)" if len(refs) > MAX_NAMED else ""
    return f"{len(refs)} {what}: {shown}{more}"
