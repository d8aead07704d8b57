"""Watches the live objects the agent applied: drift and health from events, not from timers.

One watch per kind the last bundle applied (label-selected on
``app.kubernetes.io/managed-by=skerry``, cluster-wide; namespace by namespace
if the agent's role only allows that), plus one on the agent's own
inventory ConfigMap for the operator's controls (suspend, reconcile now).
Every event is compared with what the engine applied (``drift.find_drift``)
and assessed for health (``health.assess``); the monitor keeps only the
results, never object bodies (they may be Secrets) — except, for the few
milliseconds until it returns, the latest event of an object whose apply is
in flight.

Our own writes are not drift. An event of an object the engine is applying
right now may show that very write (a new release re-stamps
``skerry.io/bundle-digest``) before the engine has recorded its fingerprint,
and would be judged against the previous release. Such an event is therefore
deferred until the apply returns (``engine.on_settled``), then judged against
what was applied: our own write (same resourceVersion) is no drift, a change
someone made meanwhile (newer resourceVersion) still is.

An idle agent therefore costs a handful of reads per hour and no writes:
each watch is re-opened when the server ends it and, every
``resync_seconds`` (default 10 min), replaced by a fresh LIST that catches
events a broken connection lost. Nothing is re-applied on a timer.

Threads: each watch blocks in the Kubernetes client, so each runs in a
daemon thread; ``on_change`` is called from those threads (the app hands
it to the event loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

import structlog

from skerry.agent.config import WATCH_RETRY_SECONDS
from skerry.agent.reasons import FORBIDDEN
from skerry.agent.reconcile import drift as drift_mod
from skerry.agent.reconcile import health as health_mod
from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, RECONCILE_ANNOTATION, SUSPEND_ANNOTATION  # noqa: F401
from skerry.agent.reconcile.model import ObjectRef
from skerry.core.backoff import spread
from skerry.core.errors import KubeError

log = structlog.get_logger("skerry.agent.monitor")

DEFAULT_RESYNC_SECONDS = 600.0
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=skerry"


Key = tuple[str, str, str, str]


def _key(obj: Mapping) -> Key:
    return ObjectRef.from_object(obj).key


class Monitor:
    def __init__(
        self,
        kube,
        engine,
        *,
        namespace: str,
        field_manager: str = "skerry",
        ignore: Iterable[drift_mod.IgnoreRule] = (),
        resync_seconds: float = DEFAULT_RESYNC_SECONDS,
        error_backoff: float = WATCH_RETRY_SECONDS,  # the agent's --watch-retry
        on_change: Callable[[], None] = lambda: None,
        on_control: Callable[[dict], None] = lambda annotations: None,
    ):
        self.kube = kube
        self.engine = engine
        self.namespace = namespace
        self.field_manager = field_manager
        self.ignore = tuple(ignore)
        self.resync_seconds = resync_seconds
        self.error_backoff = error_backoff
        self._on_change = on_change
        self._on_control = on_control
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watches: dict[tuple, tuple[threading.Thread, threading.Event]] = {}
        self.drifts: dict[Key, list[drift_mod.Drift]] = {}
        self.health: dict[Key, health_mod.Health] = {}
        self.errors: dict[str, str] = {}  # watch -> last error (e.g. forbidden)
        self.events = 0
        self.resyncs = 0
        # key -> the latest event (type, object) of an object whose apply is in flight (judged when it settles).
        self._deferred: dict[Key, tuple[str, Mapping]] = {}
        engine.on_applied = self._applied_now
        engine.on_settled = self._settled

    def _applied_now(self, key: Key) -> None:
        with self._lock:
            changed = self.drifts.pop(key, None) is not None
        if changed:
            self._on_change()

    def _settled(self, key: Key) -> None:
        with self._lock:
            event = self._deferred.pop(key, None)
        if event is None:
            return
        etype, obj = event
        if etype == "DELETED":
            self._deleted(obj)
        else:
            self._handle(etype, obj)

    # --- targets ---------------------------------------------------------------------------

    def start(self) -> None:
        self._ensure(("control",), self._control_loop)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for _, ev in self._watches.values():
                ev.set()

    def retarget(self) -> None:
        """Watch exactly the kinds the engine's last reconcile applied."""
        refs = list(self.engine.applied.refs().values())
        kinds = {(r.api_version, r.kind) for r in refs}
        with self._lock:
            applied_keys = {r.key for r in refs}
            for k in [k for k in self.drifts if k not in applied_keys]:
                del self.drifts[k]
            for k in [k for k in self.health if k not in applied_keys]:
                del self.health[k]
            wanted = {("kind", av, kind) for av, kind in kinds}
            for watch_id in [
                w
                for w in self._watches
                if (w[0] == "kind" and w not in wanted) or (w[0] == "kindns" and ("kind", w[1], w[2]) not in wanted)
            ]:
                _, ev = self._watches.pop(watch_id)
                ev.set()
        for _, av, kind in sorted(wanted):
            self._ensure(("kind", av, kind), lambda stop, av=av, kind=kind: self._kind_loop(av, kind, stop))

    def _ensure(self, watch_id: tuple, target: Callable[[threading.Event], None]) -> None:
        with self._lock:
            existing = self._watches.get(watch_id)
            if existing is not None and existing[0].is_alive() and not existing[1].is_set():
                return
            stop = threading.Event()
            thread = threading.Thread(target=target, args=(stop,), name=f"skerry-watch-{watch_id}", daemon=True)
            self._watches[watch_id] = (thread, stop)
        thread.start()

    def _stopped(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._stop.is_set()

    # --- the loops -------------------------------------------------------------------------

    def _kind_loop(self, api_version: str, kind: str, stop: threading.Event, ns: str | None = None) -> None:
        label = f"{api_version} {kind}" + (f" -n {ns}" if ns else "")
        while not self._stopped(stop):
            try:
                self._list_and_watch(api_version, kind, ns, stop)
            except KubeError as e:
                if self._stopped(stop):
                    return
                if e.reason == FORBIDDEN and ns is None:
                    namespaces = sorted({k[2] for k in self._expected(api_version, kind) if k[2]})
                    if namespaces:
                        log.info("cluster-wide watch forbidden; watching namespace by namespace", kind=label)
                        for n in namespaces:
                            self._ensure(
                                ("kindns", api_version, kind, n),
                                lambda st, n=n: self._kind_loop(api_version, kind, st, n),
                            )
                        return
                self.errors[label] = str(e)
                log.warning("watch failed; retrying", kind=label, reason=e.reason, error=str(e))
                stop.wait(spread(self.error_backoff))
            except Exception as e:  # noqa: BLE001 - a watch thread must never die silently
                if self._stopped(stop):
                    return
                log.exception("watch thread error; retrying", kind=label)
                self.errors[label] = f"{type(e).__name__}: {e}"
                stop.wait(self.error_backoff)

    def _list_and_watch(self, api_version: str, kind: str, ns: str | None, stop) -> None:
        items, rv = self.kube.list_objects(api_version, kind, namespace=ns, label_selector=MANAGED_SELECTOR)
        self.resyncs += 1
        self.errors.pop(f"{api_version} {kind}" + (f" -n {ns}" if ns else ""), None)
        seen = set()
        for obj in items:
            seen.add(_key(obj))
            self._handle("SYNC", obj)
        for key in self._expected(api_version, kind):
            if key not in seen and (ns is None or key[2] == ns):
                self._gone(key)
        deadline = time.monotonic() + self.resync_seconds
        while not self._stopped(stop):
            remaining = deadline - time.monotonic()
            if remaining <= 1:
                return  # full resync: list again
            for etype, obj in self.kube.watch(
                api_version,
                kind,
                namespace=ns,
                label_selector=MANAGED_SELECTOR,
                resource_version=rv,
                timeout_seconds=max(1, int(remaining)),
                stop=stop,
            ):
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if etype == "BOOKMARK":
                    continue
                self.events += 1
                if etype == "DELETED":
                    self._deleted(obj)
                else:
                    self._handle(etype, obj)
                if self._stopped(stop):
                    return

    def _control_loop(self, stop: threading.Event) -> None:
        selector = f"metadata.name={CONFIGMAP_NAME}"
        while not self._stopped(stop):
            try:
                items, rv = self.kube.list_objects("v1", "ConfigMap", namespace=self.namespace, field_selector=selector)
                for obj in items:
                    self._control(obj)
                for etype, obj in self.kube.watch(
                    "v1",
                    "ConfigMap",
                    namespace=self.namespace,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=int(self.resync_seconds),
                    stop=stop,
                ):
                    if etype in ("ADDED", "MODIFIED"):
                        self._control(obj)
            except KubeError as e:
                if self._stopped(stop):
                    return
                if e.reason != "NotFound":
                    log.warning("control watch failed; retrying", reason=e.reason, error=str(e))
                stop.wait(spread(self.error_backoff))
            except Exception:  # noqa: BLE001
                log.exception("control watch error; retrying")
                stop.wait(self.error_backoff)

    # --- evaluation ------------------------------------------------------------------------

    def _expected(self, api_version: str, kind: str) -> list[Key]:
        return self.engine.applied.keys_of(api_version, kind)

    def _stale(self, key: Key, obj: Mapping) -> bool:
        """An event older than the engine's own last write of this object."""
        mine = self.engine.applied.last_version(key)
        theirs = (obj.get("metadata") or {}).get("resourceVersion")
        try:
            return mine is not None and theirs is not None and int(theirs) < int(mine)
        except ValueError:
            return False

    def _handle(self, etype: str, obj: Mapping) -> None:
        key = _key(obj)
        if self.engine.applied.defer_if_in_flight(key, lambda: self._defer(key, etype, obj)):
            return  # judged when the apply settles (``_settled``), against what it wrote
        entry = self.engine.applied.fingerprint(key)
        if entry is None or self._stale(key, obj):
            return
        ref, fp = entry
        yielded: list = []
        found = drift_mod.find_drift(
            ref, fp, obj, field_manager=self.field_manager, ignore=self.ignore, yielded=yielded
        )
        if yielded:
            self.engine.applied.yield_fields(key, yielded)
        health = health_mod.assess(obj)
        self._record(key, found, health)

    def _defer(self, key: Key, etype: str, obj: Mapping) -> None:
        with self._lock:
            self._deferred[key] = (etype, obj)

    def _deleted(self, obj: Mapping) -> None:
        """A DELETED event. Like any event it is judged only once an apply of the object in flight
        has settled: that apply's success clears the object's drift, and a deletion that happened
        after the write it answered (a drift correction patching an object that was terminating,
        as a CRD is while the API server removes its custom resources) must survive it. A deletion
        older than the engine's last write (the write re-created the object) is no drift."""
        key = _key(obj)
        if self.engine.applied.defer_if_in_flight(key, lambda: self._defer(key, "DELETED", obj)):
            return
        if self._stale(key, obj):
            return
        self._gone(key)

    def _gone(self, key: Key) -> None:
        entry = self.engine.applied.fingerprint(key)
        if entry is None:
            return
        ref, fp = entry
        self.engine.applied.observe(key, None)
        self._record(key, drift_mod.find_drift(ref, fp, None, field_manager=self.field_manager), None)

    def _record(self, key: Key, found: list, health) -> None:
        changed = False
        with self._lock:
            if found != self.drifts.get(key, []):
                changed = True
                if found:
                    self.drifts[key] = found
                else:
                    self.drifts.pop(key, None)
            if health is None:
                changed = self.health.pop(key, None) is not None or changed
            elif self.health.get(key) != health:
                self.health[key] = health
                changed = True
        if found:
            for d in found:
                log.warning(
                    "drift", object=str(d.ref), field=d.field, live=d.live, git=d.desired, changed_by=d.changed_by
                )
        if changed:
            self._on_change()

    def _control(self, obj: Mapping) -> None:
        annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
        self._on_control(annotations)

    # --- views -----------------------------------------------------------------------------

    def current_drifts(self) -> list[drift_mod.Drift]:
        with self._lock:
            return [d for k in sorted(self.drifts) for d in self.drifts[k]]

    def health_condition(self, *, elapsed_seconds: float, timeout_seconds: float):
        refs = self.engine.applied.refs()
        with self._lock:
            healths = {
                ref: self.health.get(k, health_mod.Health(health_mod.PROGRESSING, "not observed yet"))
                for k, ref in refs.items()
            }
        return health_mod.rollup(healths, elapsed_seconds=elapsed_seconds, timeout_seconds=timeout_seconds)
