"""The dashboard's data: one JSON-ready snapshot of the fleet, built from the hub's live state.

Pure functions over what the hub already holds (the fleet, the store's
signed bundles and render errors, the agents' reports), so the page, the
JSON API and the tests all read the same thing. Terms, as Argo CD / Flux
users know them:

* **sync**: ``Synced`` (the agent reports the desired digest applied),
  ``OutOfSync`` (it reports another one: *drift* between desired and
  applied), ``Unknown`` (no report yet), ``NoBundle`` (nothing to apply:
  render error or no matching path);
* **health**: the health of what runs, apart from ``Ready`` (a bundle can be
  applied and not healthy yet, or healthy and refused a new release): from
  the agent's ``Suspended`` and ``Healthy`` conditions, ``Suspended``,
  ``Healthy``, ``Progressing`` (objects not ready yet, within their timeout),
  ``Degraded`` (with reason and message) or ``Unknown``; an agent that
  reports no ``Healthy`` condition is judged by ``Ready``;
* **freight**: per app, the revision and bundle each environment is on. An
  app is named as ``skerry.yaml``'s ``promotion.apps`` names it (the name
  ``skerry freight`` and ``skerry promote`` take); a path no promotion app
  lists is named by itself with its environment segment taken off
  (``apps/shop/overlays/prod`` -> ``apps/shop``).

Promotion history comes from a ``PromotionSource`` (the promotion feature
plugs in here); until one is given the snapshot says so rather than
inventing history. Meanwhile the hub's own release history (each new
desired release, per cluster, bounded) is recorded after every sync by
``ReleaseHistory``, kept in the hub state, and shown per app and environment.
"""

from __future__ import annotations

import collections
import datetime as _dt
import posixpath
from collections.abc import Mapping
from typing import Any, Protocol

from skerry.core import release_number

# How many past releases are kept per cluster for the history view (memory bound per cluster).
HISTORY_PER_CLUSTER = 50
# Promotions listed in a snapshot, newest first.
MAX_PROMOTIONS_SHOWN = 50
# Objects listed per cluster in a snapshot; the rest are counted (page and SSE size bound).
MAX_OBJECTS_SHOWN = 500

SYNCED, OUT_OF_SYNC, UNKNOWN, NO_BUNDLE = "Synced", "OutOfSync", "Unknown", "NoBundle"
HEALTHY, DEGRADED, PROGRESSING, SUSPENDED = "Healthy", "Degraded", "Progressing", "Suspended"
ROOT_APP = "(repository root)"


class PromotionSource(Protocol):
    """Where promotion history comes from (``skerry.hub.ops.PromoterHistory`` adapts the promoter)."""

    def history(self, app: str | None = None) -> list[Mapping[str, Any]]:
        """Newest first: ``{"app", "from", "to", "kind", "state", "commit", "at", "by", "approved_by"}``."""
        ...


class ReleaseHistory:
    """The desired releases the hub has published, per cluster, newest last; bounded.

    With a hub state it survives restarts: ``record_fleet`` (called after every sync, whether or
    not a browser watches) notes each cluster's current release and stores the clusters whose
    history grew in one transaction (records of kind ``release-history``); a new process loads them.
    A server notes on its event loop (``note_fleet``) and stores off it (``store``); a history not
    stored (``unstored``) is stored with the next one.
    """

    KIND = "release-history"

    def __init__(self, limit: int = HISTORY_PER_CLUSTER, *, state=None):
        self._limit = limit
        self._state = state
        self._by_cluster: dict[str, collections.deque] = {}
        self._dirty: set[str] = set()
        if state is not None:
            with state.read() as tx:
                stored = tx.records(self.KIND)
            for cluster, doc in stored.items():
                self._by_cluster[cluster] = collections.deque(doc.get("entries", ())[-limit:], maxlen=limit)

    def observe(self, cluster: str, signed, at: _dt.datetime) -> None:
        entries = self._by_cluster.setdefault(cluster, collections.deque(maxlen=self._limit))
        if entries and entries[-1]["digest"] == signed.digest:
            return
        entries.append({"release": signed.release, "number": signed.number, "label": signed.label,
                        "digest": signed.digest, "revision": signed.revision, "at": _iso(at)})
        self._dirty.add(cluster)

    def record_fleet(self, store, at: _dt.datetime) -> int:
        """Note every cluster's current release; store what grew (one transaction). Returns the clusters stored."""
        return self.store(self.note_fleet(store, at))

    def note_fleet(self, store, at: _dt.datetime) -> dict[str, dict]:
        """Note every cluster's current release; the records of the clusters whose history grew (``store``)."""
        for cluster in store.clusters():
            current = store.current(cluster)
            if current is not None:
                self.observe(cluster, current, at)
        dirty, self._dirty = self._dirty, set()
        return {c: {"entries": list(self._by_cluster[c])} for c in sorted(dirty)} if self._state is not None else {}

    def store(self, grown: Mapping[str, dict]) -> int:
        """Store ``note_fleet``'s records in one transaction (a state write: a server calls it off its loop).
        Returns the clusters stored."""
        if grown:
            with self._state.write() as tx:  # after a fleet-wide release: every cluster, many to a statement
                tx.put_records(self.KIND, grown)
        return len(grown)

    def unstored(self, grown: Mapping[str, dict]) -> None:
        """``store`` failed: store these clusters' histories with the next ones."""
        self._dirty.update(grown)

    def get(self, cluster: str) -> list[dict]:
        # entries stored before release numbers carry no label: their counter's readable form
        return [e if "label" in e else {**e, "label": release_number.label(0, int(e.get("release", 0)))}
                for e in self._by_cluster.get(cluster, ())]


def _iso(when: _dt.datetime | None) -> str | None:
    return None if when is None else when.astimezone(_dt.UTC).isoformat(timespec="seconds")


def promotion_apps(fleet) -> dict[str, str]:
    """Overlay path -> app name, as ``promotion.apps`` in ``skerry.yaml`` names them ({} without one)."""
    policy = getattr(fleet, "promotion", None)
    return {posixpath.normpath(path): name for name, app in (getattr(policy, "apps", None) or {}).items()
            for path in app.overlays.values()}


def app_of(path: str, environments: tuple[str, ...], named: Mapping[str, str] | None = None) -> str:
    """The app a fleet path belongs to: its promotion app's name, else the path without its environment
    (and ``overlays``) segment."""
    if named and posixpath.normpath(path) in named:
        return named[posixpath.normpath(path)]
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1] in environments:
        parts = parts[:-1]
    if parts and parts[-1] == "overlays":
        parts = parts[:-1]
    return posixpath.join(*parts) if parts else ROOT_APP


def _condition(status, type_: str):
    for c in status.conditions:
        if c.type == type_:
            return c
    return None


def health_of(reported) -> tuple[str, str, str]:
    """(health, reason, message) from an agent's report: Suspended, then Healthy, else Ready."""
    if reported is None:
        return UNKNOWN, "", ""
    suspended = _condition(reported, "Suspended")
    if suspended is not None and suspended.status == "True":
        return SUSPENDED, suspended.reason, suspended.message
    healthy = _condition(reported, "Healthy")
    judged = healthy if healthy is not None else _condition(reported, "Ready")
    if judged is None:
        return UNKNOWN, "", ""
    health = {"True": HEALTHY, "False": DEGRADED}.get(judged.status, PROGRESSING)
    return health, judged.reason, judged.message


def cluster_view(name: str, labels: Mapping[str, str], paths, current, error, reported, now: _dt.datetime,
                 history: list[dict], connected: bool | None = None, *, objects_shown: int = MAX_OBJECTS_SHOWN) -> dict:
    """One cluster's row and detail: desired vs applied, sync, health, drift, last error, objects.

    The fleet snapshot lists no objects (``objects_shown=0``: it goes to every open page on every change);
    the cluster detail (``/api/clusters/NAME``) lists up to ``MAX_OBJECTS_SHOWN``.
    """
    view = _applied(reported, objects_shown)
    sync = _sync(current, reported)
    return {
        "name": name,
        "labels": dict(labels),
        "region": labels.get("region", ""),
        "env": labels.get("env", labels.get("environment", "")),
        "paths": list(paths),
        "desired": _desired(current, now),
        "applied": view["applied"],
        "sync": sync,
        "health": view["health"],
        "health_reason": view["health_reason"],
        "health_message": view["health_message"],
        "drift": _drift(sync, current, reported, view["conditions"], view["object_counts"]),
        "last_error": _last_error(error, reported, view),
        "conditions": view["conditions"],
        "objects": view["objects"],
        "object_counts": view["object_counts"],
        "objects_total": len(reported.objects) if reported is not None else 0,
        "history": history,
        "connected": connected,  # None: the hub cannot tell
    }


def _desired(current, now: _dt.datetime) -> dict | None:
    if current is None:
        return None
    return {
        "release": current.release,
        "number": current.number,
        "label": current.label,
        "digest": current.digest,
        "revision": current.revision,
        "objects": current.objects,
        "expires": _iso(current.expires),
        "expires_in_seconds": int((current.expires - now).total_seconds()),
    }


def _applied(reported, objects_shown: int) -> dict:
    """What the agent reported: applied, health (``health_of``), conditions, objects and their counts."""
    view: dict[str, Any] = {
        "applied": None, "health": UNKNOWN, "health_reason": "", "health_message": "",
        "conditions": [], "objects": [], "object_counts": {},
    }
    if reported is None:
        return view
    view["applied"] = {
        "release": reported.applied_version,
        "number": reported.applied_number,
        "label": reported.applied_label,
        "digest": reported.applied_digest,
        "revision": reported.revision,
        "agent_version": reported.agent_version,
        "reported_at": _iso(reported.received_at),
    }
    view["health"], view["health_reason"], view["health_message"] = health_of(reported)
    view["conditions"] = [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message} for c in reported.conditions
    ]
    counts = view["object_counts"]
    for o in reported.objects:
        counts[o.action] = counts.get(o.action, 0) + 1
    view["objects"] = [
        {
            "group": o.group, "version": o.version, "kind": o.kind, "namespace": o.namespace, "name": o.name,
            "action": o.action, "message": o.message,
        }
        for o in reported.objects[:objects_shown]
    ]
    return view


def _sync(current, reported) -> str:
    if current is None:
        return NO_BUNDLE
    if reported is None:
        return UNKNOWN
    return SYNCED if reported.applied_digest == current.digest else OUT_OF_SYNC


def _drift(sync: str, current, reported, conditions: list[dict], counts: Mapping[str, int]) -> str | None:
    """Why the cluster differs from Git: another release applied, a change in the cluster, failed objects."""
    if sync == OUT_OF_SYNC:
        return (
            f"applied release {reported.applied_label} ({(reported.applied_digest or 'none')[:19]}) "
            f"but desired is {current.label} ({current.digest[:19]})"
        )
    live = next((c for c in conditions if c["type"] == "Drifted" and c["status"] == "True"), None)
    if live is not None:  # a change made in the cluster, outside Git (from the agent's watches)
        return live["message"]
    failed = counts.get("failed", 0)
    return f"{failed} object(s) failed to apply" if failed else None


def _last_error(error, reported, view: Mapping[str, Any]) -> dict | None:
    if error is not None:
        return {"source": "render", "message": error.message, "revision": error.revision}
    ready = _condition(reported, "Ready") if reported is not None else None
    if ready is not None and ready.status == "False":  # e.g. a refused release while what runs is healthy
        return {"source": "agent", "message": f"{ready.reason}: {ready.message}".strip(": "),
                "revision": reported.revision}
    if view["health"] == DEGRADED:
        return {"source": "agent", "message": f"{view['health_reason']}: {view['health_message']}".strip(": "),
                "revision": reported.revision if reported else ""}
    last_error = None
    for c in view["conditions"]:
        if c["status"] == "False" and c["type"] in ("Verified", "Rendered"):
            last_error = {"source": "agent", "message": f"{c['reason']}: {c['message']}", "revision": ""}
    return last_error


def cluster_detail(name: str, fleet_view, store, statuses, history: ReleaseHistory, now: _dt.datetime,
                   connected: set[str] | None = None) -> dict | None:
    """One cluster with its objects, or None if it is not in the fleet."""
    fleet = getattr(fleet_view, "fleet", None)
    if fleet is None or name not in fleet.cluster_names or name not in store:
        return None
    c = fleet.cluster(name)
    try:
        paths = fleet.paths_for(c)
    except Exception:  # noqa: BLE001 - shown through the render error
        paths = ()
    return cluster_view(name, c.labels, paths, store.current(name), store.error(name), statuses.get(name), now,
                        history.get(name), None if connected is None else name in connected)


def build_snapshot(fleet_view, store, statuses, history: ReleaseHistory, now: _dt.datetime,
                   promotions: PromotionSource | None = None, connected: set[str] | None = None) -> dict:
    """The whole dashboard: clusters (grouped by region and environment) and apps with their freight."""
    fleet = getattr(fleet_view, "fleet", None)
    environments: tuple[str, ...] = tuple(getattr(fleet, "environments", ()) or ())
    clusters: list[dict] = []
    if fleet is not None:
        for c in fleet.clusters:
            if c.name not in store:
                continue
            current = store.current(c.name)
            if current is not None:
                history.observe(c.name, current, now)
            try:
                paths = fleet.paths_for(c)
            except Exception:  # noqa: BLE001 - a cluster matching no path shows its render error instead
                paths = ()
            clusters.append(
                cluster_view(c.name, c.labels, paths, current, store.error(c.name), statuses.get(c.name), now,
                             history.get(c.name), None if connected is None else c.name in connected,
                             objects_shown=0)
            )
    envs = list(environments) + sorted({c["env"] for c in clusters if c["env"] and c["env"] not in environments})
    groups: dict[tuple[str, str], list[str]] = {}
    for c in clusters:
        groups.setdefault((c["region"] or "(no region)", c["env"] or "(no env)"), []).append(c["name"])
    env_rank = {e: i for i, e in enumerate(envs)}
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], env_rank.get(kv[0][1], len(envs)), kv[0][1]))
    apps: dict[str, dict] = {}
    named = promotion_apps(fleet)
    for c in clusters:
        for path in c["paths"]:
            app = apps.setdefault(app_of(path, environments, named), {"environments": {}})
            app["environments"].setdefault(c["env"] or "(no env)", []).append({
                "cluster": c["name"],
                "path": path,
                "desired_revision": (c["desired"] or {}).get("revision", ""),
                "desired_release": (c["desired"] or {}).get("label"),
                "applied_revision": (c["applied"] or {}).get("revision", ""),
                "sync": c["sync"],
                "health": c["health"],
                "history": c["history"],
            })
    app_list = [{"name": name, "environments": apps[name]["environments"]} for name in sorted(apps)]
    # Promotion apps are named by the fleet's promotion policy, not by path: shown fleet-wide, newest first.
    promotion_history = None if promotions is None else list(promotions.history())[:MAX_PROMOTIONS_SHOWN]
    for c in clusters:
        c.pop("history", None)  # shown per app and environment above; per cluster in its detail
    summary = collections.Counter(c["sync"] for c in clusters)
    health = collections.Counter(c["health"] for c in clusters)
    return {
        "connected_agents": None if connected is None else len(connected & {c["name"] for c in clusters}),
        "revision": getattr(fleet_view, "revision", ""),
        "fleet_error": getattr(fleet_view, "fleet_error", None),
        "source_error": getattr(fleet_view, "source_error", None),
        "generated_at": _iso(now),
        "environments": envs,
        "groups": [{"region": r, "env": e, "clusters": names} for (r, e), names in ordered],
        "clusters": clusters,
        "apps": app_list,
        "promotions": promotion_history,  # None: no promotion source on this hub
        "summary": {"clusters": len(clusters), "sync": dict(summary), "health": dict(health)},
    }
