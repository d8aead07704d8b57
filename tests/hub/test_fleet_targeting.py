"""Fleet targeting beyond selectors: per-cluster paths, environments, path templates."""

from __future__ import annotations

import pytest

from skerry.core.errors import ConfigError
from skerry.hub.config import HubConfig
from skerry.hub.fleet import parse_fleet

FLEET = """
apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev, prod]
clusters:
  - {name: oslo-dev, environment: dev, labels: {region: oslo}}
  - {name: oslo-prod, environment: prod, labels: {region: oslo}, paths: [clusters/oslo-prod]}
  - {name: lab, labels: {region: lab}}
paths:
  - {path: "apps/shop/overlays/{environment}", selector: {}}
  - {path: apps/billing/prod, environments: [prod]}
  - {path: "clusters/{cluster}/extra", selector: {matchLabels: {region: lab}}}
"""


def test_environment_templates_environments_and_per_cluster_paths():
    fleet = parse_fleet(FLEET)
    assert fleet.paths_for("oslo-dev") == ("apps/shop/overlays/dev",)
    assert fleet.paths_for("oslo-prod") == (
        "apps/shop/overlays/prod",
        "apps/billing/prod",
        "clusters/oslo-prod",
    )
    assert fleet.paths_for("lab") == ("clusters/lab/extra",)  # no environment: templates skip it


def test_a_cluster_that_matches_nothing_is_a_clear_error():
    text = FLEET.replace("- {name: lab, labels: {region: lab}}", "- {name: lab, labels: {region: moon}}")
    with pytest.raises(ConfigError, match="cluster 'lab': matches no entry in paths"):
        parse_fleet(text).paths_for("lab")


@pytest.mark.parametrize(
    "change, where",
    [
        (("environment: dev, labels", "environment: qa, labels"), "clusters[0].environment"),
        (("environments: [prod]", "environments: [staging]"), "paths[1].environments[0]"),
        (("{cluster}/extra", "{region}/extra"), "paths[2].path"),
        (("paths: [clusters/oslo-prod]", "paths: [../escape]"), "clusters[1].paths[0]"),
        (("{path: apps/billing/prod, environments: [prod]}", "{path: apps/billing/prod}"), "paths[1]"),
    ],
)
def test_bad_targeting_names_the_field(change, where):
    with pytest.raises(ConfigError) as info:
        parse_fleet(FLEET.replace(*change))
    assert str(info.value).startswith(f"skerry.yaml: {where}"), str(info.value)


def test_hub_config_reads_the_git_and_webhook_settings(tmp_path):
    env = {
        "SKERRY_HUB_REPO": "ssh://git@example.invalid/fleet.git",
        "SKERRY_HUB_TAG": "v1.2.0",
        "SKERRY_HUB_DEPTH": "1",
        "SKERRY_HUB_ENGINE": "binary",
        "SKERRY_HUB_GIT_SSH_KEY": str(tmp_path / "key"),
        "SKERRY_HUB_GIT_KNOWN_HOSTS": str(tmp_path / "known_hosts"),
        "SKERRY_HUB_WEBHOOK_LISTEN": "127.0.0.1:0",
        "SKERRY_HUB_WEBHOOK_SECRET_FILE": str(tmp_path / "secret"),
    }
    cfg = HubConfig.from_env(env)
    assert (cfg.tag, cfg.depth, cfg.engine) == ("v1.2.0", 1, "binary")
    assert cfg.git_known_hosts == tmp_path / "known_hosts" and cfg.webhook_listen == "127.0.0.1:0"


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"SKERRY_HUB_GIT_SSH_KEY": "/k"}, "git_known_hosts: required"),
        ({"SKERRY_HUB_WEBHOOK_LISTEN": "127.0.0.1:0"}, "webhook_secret_file: required"),
        ({"SKERRY_HUB_TAG": "v1", "SKERRY_HUB_COMMIT": "a" * 40}, "not both"),
        ({"SKERRY_HUB_COMMIT": "abc"}, "40-character"),
        ({"SKERRY_HUB_ENGINE": "fast"}, "engine"),
        ({"SKERRY_HUB_DEPTH": "lots"}, "depth"),
    ],
)
def test_hub_config_refuses_incomplete_git_settings(extra, message):
    with pytest.raises(ConfigError, match=message):
        HubConfig.from_env({"SKERRY_HUB_REPO": "/r", **extra})
