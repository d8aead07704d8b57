"""Pure pieces of the operator commands: conflict parsing, status text, agent settings for drift."""

from __future__ import annotations

import pytest

from skerry.agent.cli import format_status
from skerry.agent.config import AgentConfig
from skerry.agent.kube import conflicting_managers
from skerry.api.v1 import common_pb2, hub_pb2
from skerry.core.errors import ConfigError


def test_every_conflicting_manager_is_named_with_its_fields():
    one = 'ConfigMap x: Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas'
    assert conflicting_managers(one) == ("kubectl: .spec.replicas",)
    two = (
        'Apply failed with 2 conflicts: conflicts with "helm" using v1:\n- .data.a\n- .data.b\n'
        'conflicts with "platform-team" using v1:\n- .data.a'
    )
    assert conflicting_managers(two) == ("helm: .data.a, .data.b", "platform-team: .data.a")


def test_status_text_shows_ready_health_drift_and_failed_objects():
    status = hub_pb2.ClusterStatus(
        cluster="oslo",
        applied_version=7,
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
        revision="abc", clusters=[hub_pb2.ClusterView(cluster="oslo", desired_version=8, reported=status)]
    )
    text = format_status(resp)
    assert "oslo: desired 8 applied 7 ready=False (ApplyFailed)" in text
    assert "Healthy=Unknown Progressing: 1 progressing" in text
    assert "Drifted=True DriftDetected: x .spec.replicas" in text
    assert "failed ConfigMap shop/c: forbidden" in text


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
    with pytest.raises(ConfigError, match="drift policy"):
        AgentConfig.from_env({**base, "SKERRY_AGENT_DRIFT_POLICY": "yolo"})
    with pytest.raises(ConfigError, match="ignore rule"):
        AgentConfig.from_env({**base, "SKERRY_AGENT_DRIFT_IGNORE": "spec.replicas"})
