"""The dashboard snapshot from real hub state objects: sync, health, drift, last error, apps, history."""

from __future__ import annotations

import dataclasses
import datetime as _dt

from skerry.hub.bundles.store import RenderFailure, SignedBundle
from skerry.hub.dashboard.model import (
    DEGRADED,
    HEALTHY,
    NO_BUNDLE,
    OUT_OF_SYNC,
    PROGRESSING,
    ROOT_APP,
    SUSPENDED,
    SYNCED,
    UNKNOWN,
    ReleaseHistory,
    app_of,
    build_snapshot,
    cluster_view,
)
from skerry.hub.state import open_state
from skerry.hub.status import ClusterStatus, Condition, ObjectStatus

NOW = _dt.datetime(2026, 12, 1, 12, 0, tzinfo=_dt.UTC)


def signed(release=7, digest="sha256:" + "a" * 64, revision="c" * 40) -> SignedBundle:
    return SignedBundle(
        cluster="oslo", release=release, digest=digest, content_digest=digest, bundle=b"",
        revision=revision, paths=("overlays/prod",), objects=3, expires=NOW + _dt.timedelta(days=6),
        signed_at=NOW,
    )


def report(digest, ready="True", reason="ReconciliationSucceeded", objects=()) -> ClusterStatus:
    return ClusterStatus(
        cluster="oslo", applied_version=6, applied_digest=digest, revision="b" * 40,
        conditions=(Condition("Ready", ready, reason, "msg"),), objects=tuple(objects), received_at=NOW,
    )


def view(current, reported, error=None):
    return cluster_view("oslo", {"region": "no", "env": "prod"}, ["overlays/prod"], current, error, reported, NOW, [])


def test_synced_and_healthy_when_the_agent_reports_the_desired_digest():
    v = view(signed(), report("sha256:" + "a" * 64))
    assert (v["sync"], v["health"], v["drift"], v["last_error"]) == (SYNCED, HEALTHY, None, None)
    assert v["desired"]["expires_in_seconds"] == 6 * 86400
    assert (v["region"], v["env"]) == ("no", "prod")


def test_another_applied_digest_is_drift_out_of_sync():
    v = view(signed(), report("sha256:" + "b" * 64))
    assert v["sync"] == OUT_OF_SYNC
    assert "applied release r6" in v["drift"] and "desired is r7" in v["drift"]


def test_not_ready_is_degraded_with_the_reason_as_last_error():
    failed = ObjectStatus("apps", "v1", "Deployment", "shop", "web", "failed", "forbidden")
    v = view(signed(), report("sha256:" + "a" * 64, ready="False", reason="ApplyFailed", objects=[failed]))
    assert v["health"] == DEGRADED and v["last_error"]["source"] == "agent"
    assert "ApplyFailed" in v["last_error"]["message"]
    assert v["objects"][0]["action"] == "failed" and v["drift"] == "1 object(s) failed to apply"


def test_no_report_is_unknown_and_no_bundle_shows_the_render_error():
    assert view(signed(), None)["sync"] == UNKNOWN
    v = view(None, None, RenderFailure(cluster="oslo", revision="d" * 40, message="kustomize: boom", at=NOW))
    assert v["sync"] == NO_BUNDLE and v["last_error"] == {"source": "render", "message": "kustomize: boom",
                                                          "revision": "d" * 40}


def test_apps_are_paths_without_their_environment():
    envs = ("dev", "prod")
    assert app_of("apps/shop/overlays/prod", envs) == "apps/shop"
    assert app_of("apps/shop/prod", envs) == "apps/shop"
    assert app_of("overlays/dev", envs) == ROOT_APP
    assert app_of("platform/ingress", envs) == "platform/ingress"


def with_conditions(*conditions: Condition) -> ClusterStatus:
    return ClusterStatus(cluster="oslo", applied_version=7, applied_digest="sha256:" + "a" * 64, revision="c" * 40,
                         conditions=conditions, received_at=NOW)


def test_health_is_what_runs_apart_from_ready():
    ready, not_ready = Condition("Ready", "True", "Ready", ""), Condition("Ready", "False", "VerifyFailed", "bad sig")
    progressing = Condition("Healthy", "Unknown", "Progressing", "apps/Deployment shop/web progressing")
    v = view(signed(), with_conditions(Condition("Ready", "Unknown", "Progressing", ""), progressing))
    assert (v["health"], v["health_reason"]) == (PROGRESSING, "Progressing") and "web" in v["health_message"]
    # a refused new release leaves what runs healthy: health says so, the last error says why Ready is False
    v = view(signed(), with_conditions(not_ready, Condition("Healthy", "True", "AllReady", "3 object(s) ready")))
    assert v["health"] == HEALTHY and v["last_error"]["message"] == "VerifyFailed: bad sig"
    v = view(signed(), with_conditions(ready, Condition("Healthy", "False", "Failed", "web failed")))
    assert v["health"] == DEGRADED
    v = view(signed(), with_conditions(ready, Condition("Healthy", "True", "AllReady", ""),
                                       Condition("Suspended", "True", "Suspended", "by annotation")))
    assert (v["health"], v["health_message"]) == (SUSPENDED, "by annotation")


class _App:
    def __init__(self, overlays):
        self.overlays = overlays


class _Fleet:
    """A fleet as the snapshot reads it: clusters, their paths, the promotion policy's apps."""

    environments = ("dev", "prod")

    def __init__(self):
        self.clusters = [type("C", (), {"name": n, "labels": {"env": e}})() for n, e in (("d", "dev"), ("p", "prod"))]
        self.promotion = type("P", (), {"apps": {"web": _App({"dev": "overlays/dev", "prod": "./overlays/prod"})}})()

    def paths_for(self, c):
        return (f"overlays/{c.labels['env']}", "platform/ingress")


class _Store:
    def __contains__(self, name):
        return True

    def current(self, name):
        return None

    def error(self, name):
        return None


class _OneCluster:
    """The store's surface ``ReleaseHistory.record_fleet`` reads: one cluster and its current release."""

    def __init__(self, current):
        self._current = current

    def clusters(self):
        return ["oslo"]

    def current(self, name):
        return self._current


def test_apps_are_named_as_the_promotion_config_names_them():
    snap = build_snapshot(type("V", (), {"fleet": _Fleet()})(), _Store(), {}, ReleaseHistory(), NOW)
    apps = {a["name"]: a for a in snap["apps"]}
    assert set(apps) == {"web", "platform/ingress"}  # not "(repository root)"
    assert {e: [x["cluster"] for x in xs] for e, xs in apps["web"]["environments"].items()} == {"dev": ["d"], "prod": ["p"]}


def test_release_history_records_each_new_release_once_and_is_bounded():
    h = ReleaseHistory(limit=3)
    for n in range(5):
        h.observe("oslo", signed(release=n, digest=f"sha256:{n}"), NOW)
        h.observe("oslo", signed(release=n, digest=f"sha256:{n}"), NOW)
    assert [e["release"] for e in h.get("oslo")] == [2, 3, 4]


def test_releases_show_their_numbers_and_history_kept_before_numbers_shows_its_counter_readably(tmp_path):
    floor = 1796415910010
    current = dataclasses.replace(signed(release=floor + 7), number=7)
    applied = dataclasses.replace(report("sha256:" + "b" * 64), applied_version=floor + 6, applied_number=6)
    v = view(current, applied)
    assert (v["desired"]["label"], v["applied"]["label"]) == ("r7", "r6")
    assert (v["desired"]["release"], v["applied"]["release"]) == (floor + 7, floor + 6)  # the counters stay

    state = open_state(f"sqlite:///{tmp_path / 'hub.db'}", state_dir=tmp_path)
    try:
        with state.write() as tx:  # what an older hub stored: entries without numbers
            tx.put_record(ReleaseHistory.KIND, "oslo",
                          {"entries": [{"release": floor, "digest": "sha256:0", "revision": "c"}]})
        h = ReleaseHistory(state=state)
        h.observe("oslo", current, NOW)
        readable = ["r2026-12-04T20:25:10.010", "r7"]
        assert [e["label"] for e in h.get("oslo")] == readable
        h.record_fleet(_OneCluster(current), NOW)  # stores what grew
        assert [e["label"] for e in ReleaseHistory(state=state).get("oslo")] == readable
    finally:
        state.close()


class FakePromoter:
    """Stands in for ``Promoter``: only its ``records`` mapping is read (the real one needs Git and a fleet)."""

    def __init__(self, records):
        self.records = {r.id: r for r in records}


def test_promotion_history_is_newest_first_with_who_and_what():
    from skerry.hub.ops import PromoterHistory
    from skerry.hub.promotion.records import Record

    old = Record(id="1", app="web", from_env="dev", to_env="prod", kind="promote", state="done",
                 requested_by="skerry:operator:alice", commit="e" * 40, approved_by=["bob"], updated=NOW)
    new = Record(id="2", app="api", from_env="dev", to_env="prod", kind="rollback", state="pending",
                 requested_by="skerry:operator:carol", updated=NOW + _dt.timedelta(minutes=5))
    history = PromoterHistory(FakePromoter([old, new]))
    assert [h["app"] for h in history.history()] == ["api", "web"]
    web = history.history("web")
    assert web == [{"app": "web", "from": "dev", "to": "prod", "kind": "promote", "state": "done",
                    "commit": "e" * 40, "by": "skerry:operator:alice", "approved_by": ["bob"],
                    "at": NOW.isoformat(timespec="seconds"), "message": ""}]


def test_a_change_made_in_the_cluster_outside_git_shows_as_drift_while_in_sync():
    live = Condition("Drifted", "True", "DriftDetected", "apps/Deployment shop/web .spec.replicas: 3 → 5 by kubectl")
    r = report("sha256:" + "a" * 64)
    v = view(signed(), ClusterStatus(cluster=r.cluster, applied_version=r.applied_version,
                                     applied_digest=r.applied_digest, revision=r.revision,
                                     conditions=(*r.conditions, live), received_at=NOW))
    assert v["sync"] == SYNCED and ".spec.replicas" in v["drift"] and "kubectl" in v["drift"]
    assert view(signed(), r)["drift"] is None
