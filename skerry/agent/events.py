"""Skerry's state inside the cluster: a ``BundleStatus`` object with kstatus conditions, and Events.

Why: operators and tools look in the cluster (``kubectl get``, ``kubectl
describe``, kstatus-aware tools such as Flux's and cli-utils' waiters), not
only at the hub. The agent keeps one ``BundleStatus.skerry.io/v1alpha1``
named after its cluster in its own namespace, with the standard conditions:

* ``Reconciling`` True while a bundle is being applied;
* ``Ready`` the reconcile's rolled-up result (reason, message);
* ``Stalled`` True when a reconcile ended not Ready (the agent retries with
  backoff, but a human is likely needed), False otherwise;

plus the applied release (``releaseName`` as people read it, ``r7``, shown by
``kubectl get``; ``release`` the counter behind it), digest, revision, per-action object counts and
the metadata expiry. ``observedGeneration`` follows ``metadata.generation``
so kstatus reads the object as current. Events (type Normal/Warning) go on
that object for applies, prunes, corrected drift, failed reconciles,
rejected bundles and hub render failures: a handful per reconcile, never one per object, and their
messages are bounded and never carry secret values (results hold none).

The CRD is applied by the agent when it may (and by ``deploy/``); if the
API refuses (a restricted agent without CRD rights and no CRD installed),
the status object is skipped with one warning and Events still flow.
Every call here is blocking (the Kubernetes client): the app runs them in a
worker thread, and a failure here never fails a reconcile.
"""

from __future__ import annotations

import datetime as _dt
import time
import uuid

import structlog

from skerry.agent.reasons import NOT_FOUND
from skerry.core.errors import KubeError

log = structlog.get_logger("skerry.agent.events")

GROUP = "skerry.io"
VERSION = "v1alpha1"
KIND = "BundleStatus"
PLURAL = "bundlestatuses"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"
# An Event message longer than this is cut (the API server caps it at 1 KiB anyway).
MAX_EVENT_MESSAGE = 1024
# Names listed in one prune Event; the rest are counted.
MAX_NAMES_IN_EVENT = 10
# How long to wait for a CRD the agent just created to be served.
CRD_WAIT_SECONDS = 15.0

CONDITION_TYPES = ("Ready", "Reconciling", "Stalled")

_CONDITION_SCHEMA = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer"},
    },
}

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "skerry"}},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "bundlestatus", "kind": KIND, "shortNames": ["sbs"],
                  "categories": ["skerry"]},
        "versions": [{
            "name": VERSION,
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
                {"name": "Release", "type": "string", "jsonPath": ".status.releaseName"},
                {"name": "Counter", "type": "integer", "jsonPath": ".status.release", "priority": 1},
                {"name": "Revision", "type": "string", "jsonPath": ".status.revision", "priority": 1},
                {"name": "Digest", "type": "string", "jsonPath": ".status.digest", "priority": 1},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "What the Skerry agent of this cluster last did with its bundle (written by the agent).",
                "properties": {
                    "spec": {"type": "object", "properties": {
                        "cluster": {"type": "string"}, "hub": {"type": "string"}}},
                    "status": {"type": "object", "properties": {
                        "observedGeneration": {"type": "integer"},
                        "conditions": {"type": "array", "items": _CONDITION_SCHEMA,
                                       "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
                        "release": {"type": "integer"},
                        "releaseName": {"type": "string"},
                        "digest": {"type": "string"},
                        "revision": {"type": "string"},
                        "objects": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "lastReconcileTime": {"type": "string", "format": "date-time"},
                        "lastReconcileSeconds": {"type": "number"},
                        "lastHandledReconcileAt": {"type": "string"},
                        "metadataExpires": {"type": "string", "format": "date-time"},
                    }},
                },
            }},
        }],
    },
}


def _now_iso(now: _dt.datetime) -> str:
    return now.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cut(text: str, limit: int = MAX_EVENT_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ClusterStatusPublisher:
    """Writes the cluster's ``BundleStatus`` and its Events through the agent's ``KubeClient``."""

    def __init__(self, kube, cluster: str, namespace: str, *, hub: str = "", field_manager: str = "skerry",
                 now=lambda: _dt.datetime.now(_dt.UTC)):
        self.kube = kube
        self.cluster = cluster
        self.namespace = namespace
        self.hub = hub
        self.field_manager = field_manager
        self._now = now
        self._conditions: dict[str, dict] = {}
        self._status: dict = {}
        self._uid: str | None = None
        self.status_object = True  # False once the API refused the CRD / object
        self.events_sent = 0

    # --- set-up -----------------------------------------------------------------------------

    def ensure_crd(self) -> None:
        """Apply the CRD if allowed; fall back to Events only if it is neither there nor applicable."""
        try:
            if not self.kube.crd_established(CRD_NAME):
                self.kube.apply(CRD, field_manager=self.field_manager)
                self.kube.invalidate_discovery()
                self._wait_established()
        except KubeError as e:
            try:
                established = self.kube.crd_established(CRD_NAME)
            except KubeError:
                established = False
            if not established:
                self.status_object = False
                log.warning("cannot install the BundleStatus CRD; reporting through Events only",
                            error=str(e), reason=e.reason)

    def _wait_established(self) -> None:
        deadline = time.monotonic() + CRD_WAIT_SECONDS
        while not self.kube.crd_established(CRD_NAME):
            if time.monotonic() > deadline:
                raise KubeError(f"CRD {CRD_NAME} was not established within {CRD_WAIT_SECONDS:.0f}s")
            time.sleep(0.2)
        self.kube.invalidate_discovery()

    # --- conditions -------------------------------------------------------------------------

    def _set(self, type_: str, status: str, reason: str, message: str, generation: int) -> None:
        now = _now_iso(self._now())
        held = self._conditions.get(type_)
        changed = held is None or held["status"] != status
        cond = {
            "type": type_, "status": status, "reason": reason or "Unknown",
            "lastTransitionTime": now if changed else held["lastTransitionTime"], "observedGeneration": generation,
        }
        if message:  # an empty string would be sent as null by the client and refused by the schema
            cond["message"] = _cut(message)
        self._conditions[type_] = cond

    def _write(self) -> None:
        if not self.status_object:
            return
        obj = {
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": self.cluster, "namespace": self.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "skerry", "skerry.io/cluster": self.cluster}},
            # empty strings travel as null through the client and the schema refuses null: leave them out
            "spec": {k: v for k, v in (("cluster", self.cluster), ("hub", self.hub)) if v},
        }
        try:
            try:
                self.kube.apply(obj, field_manager=self.field_manager)
            except KubeError as e:
                if e.reason != NOT_FOUND:
                    raise
                self.kube.ensure_namespace(self.namespace, field_manager=self.field_manager)
                self.kube.apply(obj, field_manager=self.field_manager)
            live = self.kube.get(API_VERSION, KIND, self.cluster, self.namespace) or {}
            meta = live.get("metadata") or {}
            self._uid = meta.get("uid")
            generation = int(meta.get("generation") or 1)
            for c in self._conditions.values():
                c["observedGeneration"] = generation
            status = {**self._status, "observedGeneration": generation,
                      "conditions": [self._conditions[t] for t in CONDITION_TYPES if t in self._conditions]}
            self.kube.apply_status({**obj, "status": status}, field_manager=self.field_manager)
        except KubeError as e:
            log.warning("cannot write the BundleStatus object", error=str(e), reason=e.reason)

    # --- what the app calls -----------------------------------------------------------------

    def reconciling(self, release: str, digest: str, revision: str) -> None:
        msg = f"applying release {release} ({digest[:19]}) at revision {revision[:12]}"
        self._set("Reconciling", "True", "Progressing", msg, 1)
        if "Ready" not in self._conditions or self._conditions["Ready"]["status"] != "True":
            self._set("Ready", "Unknown", "Progressing", msg, 1)
        self._write()

    def handled(self, requested: str) -> None:
        """A reconcile the operator requested (the annotation's value) is done: ``skerry reconcile --wait``
        waits for ``status.lastHandledReconcileAt`` to equal it (Flux's field of the same name)."""
        self._status["lastHandledReconcileAt"] = requested
        self._write()

    def reconciled(self, result, seconds: float, *, drift: int = 0, expires: _dt.datetime | None = None) -> None:
        ready = result.condition("Ready")
        reason = ready.reason if ready is not None else "Unknown"
        message = ready.message if ready is not None else ""
        self._set("Ready", "True" if result.ready else "False", reason, message, 1)
        self._set("Reconciling", "False", "Succeeded" if result.ready else "Failed",
                  f"release {result.label} reconciled in {seconds:.2f}s", 1)
        self._set("Stalled", "False" if result.ready else "True", reason if not result.ready else "Ready",
                  "" if result.ready else message, 1)
        counts = {k: v for k, v in result.counts().items() if v}
        handled = self._status.get("lastHandledReconcileAt", "")
        self._status = {"release": result.release, "releaseName": result.label, "digest": result.digest,
                        "revision": result.revision,
                        "objects": counts, "lastReconcileTime": _now_iso(self._now()),
                        "lastReconcileSeconds": round(seconds, 3), "lastHandledReconcileAt": handled}
        if expires is not None:
            self._status["metadataExpires"] = _now_iso(expires)
        self._status = {k: v for k, v in self._status.items() if v != ""}  # "" would travel as null
        self._write()
        applied = counts.get("created", 0) + counts.get("configured", 0)
        if applied:
            self.event("Normal", "Applied",
                       f"release {result.label} ({result.digest[:19]}): {counts.get('created', 0)} created, "
                       f"{counts.get('configured', 0)} configured, {counts.get('unchanged', 0)} unchanged")
        pruned = [str(r.ref) for r in result.by_action("pruned")]
        if pruned:
            more = f" and {len(pruned) - MAX_NAMES_IN_EVENT} more" if len(pruned) > MAX_NAMES_IN_EVENT else ""
            self.event("Normal", "Pruned", f"pruned {len(pruned)}: {', '.join(pruned[:MAX_NAMES_IN_EVENT])}{more}")
        if drift:
            self.event("Warning", "DriftCorrected",
                       f"{drift} object(s) had drifted from release {result.label} and were re-applied")
        if not result.ready:
            self.event("Warning", "ReconcileFailed", f"{reason}: {message}")

    def rejected(self, reason: str, message: str, release: str) -> None:
        self.event("Warning", "BundleRejected", f"release {release} refused ({reason}): {message}")

    def event(self, type_: str, reason: str, message: str) -> None:
        now = self._now().astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        involved = {"apiVersion": API_VERSION, "kind": KIND, "name": self.cluster, "namespace": self.namespace}
        if self._uid:
            involved["uid"] = self._uid
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{self.cluster}.{uuid.uuid4().hex[:16]}", "namespace": self.namespace},
            "involvedObject": involved,
            "type": type_, "reason": reason, "message": _cut(message),
            "source": {"component": "skerry-agent"},
            "reportingComponent": "skerry.io/agent", "reportingInstance": self.cluster,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            self.kube.create_event(self.namespace, body)
            self.events_sent += 1
        except KubeError as e:
            log.warning("cannot record an Event", reason=reason, error=str(e))
