"""Pure pieces of the operator commands: conflict parsing, status text, agent settings for drift."""

from __future__ import annotations

import pytest

from skerry.agent.config import AgentConfig
from skerry.agent.kube import conflicting_managers
from skerry.api.v1 import common_pb2, hub_pb2
from skerry.cli.fleet import STATUS_COLUMNS, STATUS_WIDE, status_rows
from skerry.cli.output import table
from skerry.core.errors import ConfigError


def test_every_conflicting_manager_is_named_with_its_fields():
    one = 'ConfigMap x: Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas'
    assert conflicting_managers(one) == ("kubectl: .spec.replicas",)
    two = (
        'Apply failed with 2 conflicts: conflicts with "helm" using v1:\n- .data.a\n- .data.b\n'
        'conflicts with "platform-team" using v1:\n- .data.a'
    )
    assert conflicting_managers(two) == ("helm: .data.a, .data.b", "platform-team: .data.a")


def test_status_table_shows_releases_ready_health_drift_and_the_failed_object():
    status = hub_pb2.ClusterStatus(
        cluster="oslo",
        applied_version=1796415910017,
        applied_number=7,
        conditions=[
            common_pb2.Condition(type="Ready", status="False", reason="ApplyFailed", message="1 of 3 failed"),
            common_pb2.Condition(type="Healthy", status="Unknown", reason="Progressing", message="1 progressing"),
            common_pb2.Condition(type="Drifted", status="True", reason="DriftDetected", message="x .spec.replicas"),
        ],
        objects=[
            hub_pb2.ObjectStatus(
                ref=common_pb2.ObjectRef(kind="ConfigMap", namespace="shop", name="c"),
                action="failed",
                message="forbidden",
            )
        ],
    )
    resp = hub_pb2.GetFleetStatusResponse(
        revision="abc",
        clusters=[
            hub_pb2.ClusterView(cluster="oslo", desired_version=1796415910018, desired_release="r8",
                                applied_release="r7", reported=status),
            # an older hub: counters only
            hub_pb2.ClusterView(cluster="bergen-prod", desired_version=1796415910010),
        ],
    )
    lines = table(status_rows(resp), STATUS_COLUMNS).splitlines()
    assert lines[0].split() == ["CLUSTER", "DESIRED", "APPLIED", "READY", "HEALTHY", "DRIFTED", "SUSPENDED", "MESSAGE"]
    assert lines[1].split()[:8] == ["oslo", "r8", "r7", "False", "Unknown", "True", "-", "ConfigMap"]
    assert lines[1].endswith("ConfigMap shop/c: forbidden")
    # a millisecond-epoch counter without a number is shown as the instant it names, not 13 digits
    assert lines[2].split()[:4] == ["bergen-prod", "r2026-12-04T20:25:10.010", "-", "Unknown"]
    assert lines[2].endswith("no report from the agent yet")
    # aligned: every column starts at the same offset on every line
    for column in ("DESIRED", "READY", "MESSAGE"):
        start = lines[0].index(column)
        assert all(line[start - 1] == " " and line[start] != " " for line in lines)
    wide = table(status_rows(resp), (*STATUS_COLUMNS, *STATUS_WIDE)).splitlines()
    assert wide[0].split()[-4:] == ["DIGEST", "REVISION", "OBJECTS", "FAILED"]


def test_drift_settings_come_from_the_environment_and_are_checked(tmp_path):
    base = {
        "SKERRY_AGENT_CLUSTER": "oslo",
        "SKERRY_AGENT_HUB": "hub:7440",
        "SKERRY_AGENT_TLS_CA": "ca",
        "SKERRY_AGENT_TLS_CERT": "c",
        "SKERRY_AGENT_TLS_KEY": "k",
        "SKERRY_AGENT_TRUST_ROOT": "root.json",
        "SKERRY_AGENT_ENVIRONMENT": "prod",
    }
    cfg = AgentConfig.from_env(
        {
            **base,
            "SKERRY_AGENT_DRIFT_POLICY": "detect",
            "SKERRY_AGENT_DRIFT_IGNORE": "apps/Deployment:.spec.replicas, *:.metadata.annotations",
            "SKERRY_AGENT_RESYNC_SECONDS": "120",
        }
    )
    assert cfg.drift_policy == "detect" and cfg.resync_seconds == 120.0
    assert cfg.drift_ignore == ("apps/Deployment:.spec.replicas", "*:.metadata.annotations")
    assert AgentConfig.from_env(base).resync_seconds == 600.0  # the default full resync
    with pytest.raises(ConfigError, match="drift_policy: 'yolo' is not one of"):
        AgentConfig.from_env({**base, "SKERRY_AGENT_DRIFT_POLICY": "yolo"})
    with pytest.raises(ConfigError, match="ignore rule"):
        AgentConfig.from_env({**base, "SKERRY_AGENT_DRIFT_IGNORE": "spec.replicas"})
