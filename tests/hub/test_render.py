"""The render engine: real Kustomize (via kubectl here), plain-YAML directories, bounded and clear failures."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import textwrap

import pytest

from skerry.core.errors import RenderError
from skerry.hub.render import inprocess
from skerry.hub.render.engine import KustomizeEngine, parse_documents

from .helpers import FLEET_FILES, kubectl_kustomize


def write(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


@pytest.fixture
def tree(tmp_path) -> pathlib.Path:
    return write(tmp_path / "repo", FLEET_FILES)


def test_engine_records_tool_and_version(binary_engine):
    assert binary_engine.name == "kustomize"
    assert binary_engine.version.startswith("v5.")
    if "kubectl" in repr(binary_engine):
        assert "(kubectl v1." in binary_engine.version


@pytest.mark.skipif(not inprocess.available(), reason="pykustomize is not installed")
def test_in_process_engine_records_the_installed_package_version():
    # read from the package's METADATA header, not through importlib.metadata (its import costs a render)
    package = importlib.metadata.version(inprocess.PACKAGE)
    version = inprocess.InProcessKustomizeEngine().version
    assert version.startswith("api v0.") and version.endswith(f"(pykustomize {package}, in-process)"), version


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_base_and_overlay_render_exactly_like_kubectl_kustomize(engine, tree, overlay):
    objects = engine.render(tree / overlay, root=tree)
    assert objects == kubectl_kustomize(tree / overlay)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "Service"]
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    assert cm["metadata"]["name"].startswith("web-config-")  # generator hash suffix, as kustomize does
    if overlay == "overlays/dev":
        assert cm["data"]["RELEASED"] == "2024-01-01"  # a date-like value stays a string
    else:
        deploy = next(o for o in objects if o["kind"] == "Deployment")
        assert deploy["spec"]["replicas"] == 3


@pytest.mark.parametrize("name", ["kustomization.yml", "Kustomization"])
def test_every_kustomization_file_name_is_recognised(engine, tmp_path, name):
    root = write(
        tmp_path,
        {
            f"app/{name}": "resources: [cm.yaml]\nnamePrefix: x-\n",
            "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        },
    )
    assert [o["metadata"]["name"] for o in engine.render(root / "app")] == ["x-c"]


def test_plain_yaml_directory_renders_every_file_sorted(engine, tmp_path):
    root = write(
        tmp_path,
        {
            "plain/b.yml": """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: b}
            data: {when: 2024-05-01, flag: "yes"}
        """,
            "plain/a.yaml": """
            ---
            apiVersion: v1
            kind: List
            items:
              - {apiVersion: v1, kind: ServiceAccount, metadata: {name: a1}}
              - {apiVersion: v1, kind: ServiceAccount, metadata: {name: a2}}
            ---
            # only a comment
        """,
            "plain/c.json": json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}}),
            "plain/README.md": "not rendered\n",
            "plain/nested/d.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n",
        },
    )
    objects = engine.render(root / "plain", root=root)
    assert [o["metadata"]["name"] for o in objects] == ["a1", "a2", "b", "c"]
    assert objects[2]["data"] == {"when": "2024-05-01", "flag": "yes"}


def test_plain_directory_rejects_documents_that_are_not_objects(engine, tmp_path):
    root = write(tmp_path, {"plain/x.yaml": "- a\n- b\n"})
    with pytest.raises(RenderError, match=r"^plain/x.yaml: a list is not a Kubernetes object"):
        engine.render(root / "plain", root=root)


def test_plain_directory_rejects_duplicate_keys_and_bad_yaml(engine, tmp_path):
    root = write(tmp_path, {"dup/x.yaml": "kind: A\nkind: B\n", "bad/y.yaml": "a: [\n"})
    with pytest.raises(RenderError, match=r"^dup/x.yaml: invalid YAML: line 2 .*duplicate key 'kind'"):
        engine.render(root / "dup", root=root)
    with pytest.raises(RenderError, match=r"^bad/y.yaml: invalid YAML: line"):
        engine.render(root / "bad", root=root)


def test_values_json_cannot_hold_are_rejected():
    with pytest.raises(RenderError, match="not representable in JSON"):
        parse_documents("apiVersion: v1\nkind: X\nmetadata: {name: n}\nspec: {v: .nan}\n", "f.yaml")
    with pytest.raises(RenderError, match="bytes value"):
        parse_documents("apiVersion: v1\nkind: X\nmetadata: {name: n}\nspec: {v: !!binary aGk=}\n", "f.yaml")


def test_broken_overlay_is_a_render_error_naming_the_path_and_the_tool_error(binary_engine, tree):
    write(tree, {"overlays/prod/kustomization.yaml": "resources: [../../base, missing.yaml]\n"})
    with pytest.raises(RenderError) as info:
        binary_engine.render(tree / "overlays/prod", root=tree)
    message = str(info.value)
    assert message.startswith("overlays/prod: kustomize build failed: Error: ")
    assert "missing.yaml" in message
    assert str(tree) not in message  # scratch paths are not leaked into the message


def test_missing_or_escaping_directory_is_a_render_error(engine, tree):
    with pytest.raises(RenderError, match="^overlays/qa: no such directory"):
        engine.render(tree / "overlays/qa", root=tree)
    with pytest.raises(RenderError, match="resolves outside the repository"):
        engine.render(tree / "..", root=tree)


def test_kustomize_runs_without_exec_plugins_or_helm(engine, tmp_path):
    root = write(
        tmp_path,
        {
            "helm/kustomization.yaml": "helmCharts: [{name: x, repo: https://charts.invalid, version: 1.0.0}]\n",
        },
    )
    with pytest.raises(RenderError, match="helm"):
        engine.render(root / "helm", root=root)


def test_tool_timeout_kills_it_and_names_the_path(tmp_path):
    root = write(tmp_path, {"slow/kustomization.yaml": "resources: []\n"})
    slow = KustomizeEngine(("sh", "-c", "sleep 30", "sh"), name="kustomize", version="test", timeout=0.5)
    with pytest.raises(RenderError, match=r"^slow: kustomize timed out after 0.5s"):
        slow.render(root / "slow", root=root)


def test_tool_output_is_bounded(tmp_path):
    root = write(tmp_path, {"big/kustomization.yaml": "resources: []\n"})
    chatty = KustomizeEngine(
        ("sh", "-c", "yes 'a: b' | head -c 1000000", "sh"),
        name="kustomize",
        version="test",
        max_output_bytes=10_000,
    )
    with pytest.raises(RenderError, match=r"^big: kustomize produced more than 10000 bytes"):
        chatty.render(root / "big", root=root)


def test_detect_without_any_tool_is_a_config_error(tmp_path):
    from skerry.core.errors import ConfigError

    with pytest.raises(ConfigError, match="neither kustomize nor kubectl"):
        KustomizeEngine.detect(path=str(tmp_path))


def test_yaml_merge_keys_may_be_overridden_explicitly():
    objects = parse_documents(
        textwrap.dedent("""
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: c}
            data:
              <<: &defaults {a: "1", b: "2"}
              b: "3"
        """),
        "f.yaml",
    )
    assert objects[0]["data"] == {"a": "1", "b": "3"}


def test_broken_overlay_errors_alike_in_process(engine, tree):
    write(tree, {"overlays/prod/kustomization.yaml": "resources: [../../base, missing.yaml]\n"})
    with pytest.raises(RenderError) as info:
        engine.render(tree / "overlays/prod", root=tree)
    message = str(info.value)
    assert message.startswith("overlays/prod: kustomize build failed: ") and "missing.yaml" in message
    assert str(tree) not in message
