"""skerry.yaml parsing: clusters, Kubernetes label selectors, and a clear error for every mistake."""

from __future__ import annotations

import textwrap

import pytest

from skerry.core.errors import ConfigError, NotFound
from skerry.hub.fleet import LabelSelector, Requirement, parse_fleet

from .helpers import FLEET_YAML


def fleet_text(clusters: str = "", paths: str = "", extra: str = "") -> str:
    return (
        textwrap.dedent(
            """\
        apiVersion: skerry.io/v1alpha1
        kind: Fleet
        """
        )
        + textwrap.dedent(extra)
        + textwrap.dedent(clusters)
        + textwrap.dedent(paths)
    )


def test_example_fleet_parses_clusters_labels_and_paths():
    fleet = parse_fleet(FLEET_YAML)
    assert fleet.environments == ("dev", "prod")
    assert fleet.cluster_names == ("oslo-dev", "bergen-dev", "oslo-prod")
    assert dict(fleet.cluster("oslo-prod").labels) == {"region": "no-oslo", "env": "prod"}
    assert fleet.paths_for("oslo-dev") == ("platform/monitoring", "overlays/dev")
    assert fleet.paths_for("oslo-prod") == ("platform/monitoring", "overlays/prod")


def test_paths_are_normalised():
    fleet = parse_fleet(
        fleet_text(
            "clusters: [{name: a}]\n",
            "paths: [{path: ./overlays//dev/, selector: {}}]\n",
        )
    )
    assert fleet.paths_for("a") == ("overlays/dev",)


def test_empty_selector_selects_every_cluster():
    fleet = parse_fleet(
        fleet_text(
            "clusters: [{name: a, labels: {x: '1'}}, {name: b}]\n", "paths: [{path: all, selector: {}}]\n"
        )
    )
    assert fleet.paths_for("a") == ("all",) and fleet.paths_for("b") == ("all",)


@pytest.mark.parametrize(
    "expression, labels, expected",
    [
        ({"key": "env", "operator": "In", "values": ["dev", "test"]}, {"env": "dev"}, True),
        ({"key": "env", "operator": "In", "values": ["dev"]}, {"env": "prod"}, False),
        ({"key": "env", "operator": "In", "values": ["dev"]}, {}, False),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {"env": "dev"}, True),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {"env": "prod"}, False),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {}, True),  # absent key matches NotIn
        ({"key": "gpu", "operator": "Exists"}, {"gpu": ""}, True),
        ({"key": "gpu", "operator": "Exists"}, {}, False),
        ({"key": "gpu", "operator": "DoesNotExist"}, {}, True),
        ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": "a100"}, False),
    ],
)
def test_match_expressions_behave_like_kubernetes(expression, labels, expected):
    import yaml

    text = fleet_text(
        f"clusters: [{{name: c, labels: {yaml.safe_dump(labels, default_flow_style=True).strip()}}}]\n",
        f"paths: [{{path: p, selector: {{matchExpressions: [{yaml.safe_dump(expression, default_flow_style=True).strip()}]}}}}]\n",
    )
    fleet = parse_fleet(text)
    assert fleet.paths[0].selector.matches(fleet.cluster("c").labels) is expected


def test_match_labels_and_expressions_must_all_hold():
    selector = LabelSelector(
        match_labels={"env": "prod"},
        match_expressions=(
            Requirement("region", "In", ("no-oslo", "no-bergen")),
            Requirement("legacy", "DoesNotExist"),
        ),
    )
    assert selector.matches({"env": "prod", "region": "no-oslo"})
    assert not selector.matches({"env": "dev", "region": "no-oslo"})
    assert not selector.matches({"env": "prod", "region": "se-sto"})
    assert not selector.matches({"env": "prod", "region": "no-oslo", "legacy": "true"})


def test_cluster_matching_no_path_is_an_error_for_that_cluster_only():
    fleet = parse_fleet(
        fleet_text(
            "clusters: [{name: a, labels: {env: dev}}, {name: lonely, labels: {env: qa}}]\n",
            "paths: [{path: overlays/dev, selector: {matchLabels: {env: dev}}}]\n",
        )
    )
    assert fleet.paths_for("a") == ("overlays/dev",)
    with pytest.raises(ConfigError, match=r"skerry.yaml: cluster 'lonely': matches no entry in paths"):
        fleet.paths_for("lonely")


def test_unknown_cluster_is_not_found():
    with pytest.raises(NotFound, match="'nope' is not in skerry.yaml"):
        parse_fleet(FLEET_YAML).paths_for("nope")


def test_fleet_without_clusters_or_paths_is_valid():
    fleet = parse_fleet(fleet_text())
    assert fleet.clusters == () and fleet.paths == ()


GOOD_PATHS = "paths: [{path: p, selector: {}}]\n"


@pytest.mark.parametrize(
    "text, field, problem",
    [
        (None, "", "not found"),
        ("", "", "is empty"),
        ("apiVersion: [unclosed\n", "", "invalid YAML: line"),
        ("- just\n- a list\n", "", "must be a mapping"),
        ("apiVersion: skerry.io/v1\nkind: Fleet\n", "apiVersion", "must be 'skerry.io/v1alpha1'"),
        ("apiVersion: skerry.io/v1alpha1\nkind: Fleets\n", "kind", "must be 'Fleet'"),
        ("kind: Fleet\n", "", "'apiVersion' is required"),
        (fleet_text(extra="cluster: []\n"), "", "unknown key(s) 'cluster'"),
        (fleet_text(extra="apiVersion: again\n"), "", "duplicate key 'apiVersion'"),
        (fleet_text(extra="environments: [dev, dev]\n"), "environments[1]", "duplicate environment 'dev'"),
        (fleet_text(extra="environments: [Dev]\n"), "environments[0]", "DNS-1123"),
        (fleet_text("clusters: {name: a}\n"), "clusters", "must be a list"),
        (fleet_text("clusters: [{labels: {}}]\n"), "clusters[0]", "'name' is required"),
        (fleet_text("clusters: [{name: a, label: {}}]\n"), "clusters[0]", "unknown key(s) 'label'"),
        (
            fleet_text("clusters: [{name: a}, {name: b}, {name: a}]\n"),
            "clusters[2].name",
            "duplicate cluster 'a' (also clusters[0])",
        ),
        (fleet_text("clusters: [{name: Oslo}]\n"), "clusters[0].name", "DNS-1123"),
        (fleet_text("clusters: [{name: oslo_dev}]\n"), "clusters[0].name", "DNS-1123"),
        (fleet_text(f"clusters: [{{name: {'a' * 64}}}]\n"), "clusters[0].name", "DNS-1123"),
        (
            fleet_text("clusters: [{name: a, labels: {tier: 1}}]\n"),
            "clusters[0].labels.tier",
            "must be a string",
        ),
        (
            fleet_text("clusters: [{name: a, labels: {'bad key!': x}}]\n"),
            "clusters[0].labels",
            "label key 'bad key!'",
        ),
        (
            fleet_text("clusters: [{name: a, labels: {x: 'no spaces'}}]\n"),
            "clusters[0].labels.x",
            "label value",
        ),
        (
            fleet_text(paths="paths: [{path: ../outside, selector: {}}]\n"),
            "paths[0].path",
            "escapes the repository",
        ),
        (
            fleet_text(paths="paths: [{path: overlays/../../x, selector: {}}]\n"),
            "paths[0].path",
            "escapes the repository",
        ),
        (fleet_text(paths="paths: [{path: /etc, selector: {}}]\n"), "paths[0].path", "is absolute"),
        (fleet_text(paths="paths: [{path: '', selector: {}}]\n"), "paths[0].path", "non-empty path"),
        (
            fleet_text(paths="paths: [{path: .git/hooks, selector: {}}]\n"),
            "paths[0].path",
            "points into .git",
        ),
        (
            fleet_text(paths="paths: [{path: p, selector: {}}, {path: ./p, selector: {}}]\n"),
            "paths[1].path",
            "duplicate path 'p'",
        ),
        (fleet_text(paths="paths: [{path: p}]\n"), "paths[0]", "needs a selector, environments, or both"),
        (fleet_text(paths="paths: [{path: p, selector: null}]\n"), "paths[0].selector", "is required"),
        (
            fleet_text(paths="paths: [{path: p, selector: {}, env: dev}]\n"),
            "paths[0]",
            "unknown key(s) 'env'",
        ),
        (
            fleet_text(paths="paths: [{path: p, selector: {matchLabel: {}}}]\n"),
            "paths[0].selector",
            "unknown key(s) 'matchLabel'",
        ),
        (
            fleet_text(
                paths="paths: [{path: p, selector: {matchExpressions: [{key: a, operator: Equals, values: [x]}]}}]\n"
            ),
            "paths[0].selector.matchExpressions[0].operator",
            "'Equals' is not one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            fleet_text(paths="paths: [{path: p, selector: {matchExpressions: [{key: a, operator: In}]}}]\n"),
            "paths[0].selector.matchExpressions[0].values",
            "must be non-empty for operator In",
        ),
        (
            fleet_text(
                paths="paths: [{path: p, selector: {matchExpressions: [{key: a, operator: NotIn, values: []}]}}]\n"
            ),
            "paths[0].selector.matchExpressions[0].values",
            "must be non-empty for operator NotIn",
        ),
        (
            fleet_text(
                paths="paths: [{path: p, selector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}]\n"
            ),
            "paths[0].selector.matchExpressions[0].values",
            "must be empty for operator Exists",
        ),
        (
            fleet_text(paths="paths: [{path: p, selector: {matchExpressions: [{operator: Exists}]}}]\n"),
            "paths[0].selector.matchExpressions[0]",
            "'key' is required",
        ),
        (
            fleet_text(paths="paths: [{path: p, selector: {matchLabels: {env: [dev]}}}]\n"),
            "paths[0].selector.matchLabels.env",
            "must be a string",
        ),
    ],
)
def test_invalid_fleet_files_name_skerry_yaml_and_the_field(text, field, problem):
    with pytest.raises(ConfigError) as info:
        parse_fleet(text)
    message = str(info.value)
    prefix = f"skerry.yaml: {field}: " if field else "skerry.yaml: "
    assert message.startswith(prefix), message
    assert problem in message, message


@pytest.mark.parametrize("field", ["kind", "apiVersion"])
def test_a_huge_or_aliased_value_is_clipped_in_the_message(field):
    other = "kind: Fleet" if field == "apiVersion" else "apiVersion: skerry.io/v1alpha1"
    anchors = "environments: [&a0 [" + ", ".join(["lol"] * 9) + "], " + ", ".join(
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in (1, 2)) + "]\n"
    for value in ("x" * 1_000_000, "*a2"):
        with pytest.raises(ConfigError) as e:
            parse_fleet(anchors + f"{other}\n{field}: {value}\n")
        assert f"skerry.yaml: {field}: must be" in str(e.value) and len(str(e.value)) < 1024
