"""The pure parts: freight read/written with comments untouched, the promotion policy parser, the gates."""

from __future__ import annotations

import datetime as _dt

import pytest

from skerry.core.errors import ConfigError, InvalidInput
from skerry.hub.fleet import parse_fleet
from skerry.hub.promotion.freight import Image, diff_images, read_images, set_images
from skerry.hub.promotion.gates import ClusterHealth, HealthTracker, evaluate
from skerry.hub.promotion_policy import EnvironmentRules, Freeze, parse_promotion

KUST = b"""\
# top comment
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
    - ../../base   # odd indentation, kept
images:
    # the web image, promoted by skerry
    - name: web
      newName: registry.example/web   # where it comes from
      newTag: '1.0'   # single-quoted on purpose
    - {name: sidecar, newTag: v2}
"""


def test_read_images_sorted_with_references():
    images = read_images(KUST, "k")
    assert [i.reference for i in images] == ["sidecar:v2", "registry.example/web:1.0"]


def test_set_images_changes_only_the_values_keeping_quotes_comments_and_indentation():
    out = set_images(KUST, [Image("web", "registry.example/web", "1.1"), Image("sidecar", "", "v3")], "k")
    assert out == KUST.replace(b"'1.0'", b"'1.1'").replace(b"newTag: v2}", b"newTag: v3}")


def test_set_images_adds_a_digest_and_an_entry_in_the_files_own_indentation():
    digest = "sha256:" + "b" * 64
    out = set_images(KUST, [Image("web", "registry.example/web", "1.0", digest), Image("db", "pg", "16")], "k")
    got = {i.name: i for i in read_images(out, "k")}
    assert got["web"].digest == digest and got["db"].reference == "pg:16"
    assert b"# the web image, promoted by skerry" in out and b"# single-quoted on purpose" in out
    assert b"# top comment" in out and b"# odd indentation, kept" in out


def test_set_images_removes_a_field_the_freight_no_longer_has():
    with_digest = set_images(KUST, [Image("web", "registry.example/web", "1.0", "sha256:" + "c" * 64)], "k")
    out = set_images(with_digest, [Image("web", "registry.example/web", "1.0")], "k")
    assert b"digest" not in out


def test_bad_kustomizations_are_named():
    with pytest.raises(InvalidInput, match="overlays/x: invalid YAML"):
        read_images(b"images: [", "overlays/x")
    with pytest.raises(InvalidInput, match=r"images\[0\] needs a name"):
        read_images(b"images:\n  - newTag: x\n", "k")


def test_diff_names_each_changed_image():
    changes = diff_images([Image("web", "n", "2")], [Image("web", "n", "1")])
    assert [(c.name, c.before, c.after) for c in changes] == [("web", "n:1", "n:2")]
    assert diff_images([Image("web", "n", "1")], [Image("web", "n", "1")]) == []


FLEET = """
apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev, prod]
"""


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("promotion: {apps: {web: {overlays: {qa: overlays/qa}}}}", "promotion.apps.web.overlays.qa: 'qa' is not in environments"),
        ("promotion: {environments: {prod: {approvals: 2, approvers: [a]}}}", "needs 2 approvals but lists only 1"),
        ("promotion: {environments: {prod: {soak: soon}}}", "promotion.environments.prod.soak"),
        ("promotion: {environments: {prod: {freezes: [{name: x, start: '25:00', end: '01:00'}]}}}", "not HH:MM"),
        ("promotion: {apps: {web: {overlays: {dev: ../x}}}}", "escapes the repository"),
        ("promotion: {approvers: [a]}", "unknown key(s) 'approvers'"),
    ],
)
def test_policy_errors_name_the_field(section, error):
    with pytest.raises(ConfigError) as e:
        parse_fleet(FLEET + section)
    assert error in str(e.value)


def test_a_fleet_without_promotion_still_parses():
    fleet = parse_fleet(FLEET)
    assert fleet.promotion.apps == {} and fleet.promotion.promoters is None


def test_freezes_cover_their_days_and_hours_including_over_midnight():
    night = Freeze("night", days=("fri",), start="22:00", end="06:00")
    fri_23 = _dt.datetime(2030, 1, 4, 23, 0, tzinfo=_dt.UTC)
    assert night.covers(fri_23)
    assert night.covers(fri_23 + _dt.timedelta(hours=5))  # Saturday 04:00, still Friday's night
    assert not night.covers(fri_23 + _dt.timedelta(hours=8))
    assert not night.covers(fri_23 - _dt.timedelta(days=1))
    assert Freeze("weekend", days=("sat", "sun")).covers(fri_23 + _dt.timedelta(hours=12))
    assert parse_promotion(None, ()).rules("prod") == EnvironmentRules()


NOW = _dt.datetime(2030, 1, 2, 12, 0, tzinfo=_dt.UTC)


def healthy(name: str, minutes: float) -> ClusterHealth:
    return ClusterHealth(name, desired_digest="d", applied_digest="d", ready=True, reported=True,
                         healthy_since=NOW - _dt.timedelta(minutes=minutes))


def gates(clusters, *, to_rules=None, approvals=(), envs=("dev", "staging", "prod"), to="staging"):
    to_rules = to_rules or EnvironmentRules()
    return {g.name: g for g in evaluate(environments=envs, from_env="dev", to_env=to, from_clusters=clusters,
                                        from_rules=EnvironmentRules(soak_seconds=600), to_rules=to_rules,
                                        approvals=approvals, now=NOW)}


def test_every_gate_passes_when_soaked_and_approved():
    g = gates([healthy("a", 11), healthy("b", 30)],
              to_rules=EnvironmentRules(approvals=1, approvers=("alice", "bob")), approvals=["bob"])
    assert all(x.passed for x in g.values()), g


def test_skipping_an_environment_is_refused():
    g = gates([healthy("a", 60)], to="prod")
    assert not g["order"].passed and "promote dev -> staging first" in g["order"].message


def test_approvals_from_non_approvers_do_not_count():
    g = gates([healthy("a", 60)], to_rules=EnvironmentRules(approvals=1, approvers=("alice",)), approvals=["mallory"])
    assert not g["approvals"].passed and "has 0" in g["approvals"].message


def test_an_environment_without_clusters_cannot_prove_freight():
    assert not gates([])["clusters"].passed


def test_health_tracker_restarts_the_soak_on_failure_or_a_new_digest():
    t = HealthTracker()
    t.observe("a", "d1", True, NOW)
    t.observe("a", "d1", True, NOW + _dt.timedelta(minutes=5))
    assert t.healthy_since("a", "d1") == NOW
    t.observe("a", "d2", True, NOW + _dt.timedelta(minutes=6))
    assert t.healthy_since("a", "d1") is None and t.healthy_since("a", "d2") == NOW + _dt.timedelta(minutes=6)
    t.observe("a", "d2", False, NOW + _dt.timedelta(minutes=7))
    assert t.healthy_since("a", "d2") is None
