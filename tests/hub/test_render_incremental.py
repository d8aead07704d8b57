"""Incremental rendering: closures keyed by Git ids, only changed paths re-render, clear errors."""

from __future__ import annotations

import pytest

from skerry.core.errors import RenderError
from skerry.hub.bundles.store import HubStore
from skerry.hub.render.closure import closure
from skerry.hub.render.incremental import IncrementalRenderer
from skerry.hub.render.kustomization import is_remote
from skerry.hub.source.git import GitSource
from skerry.hub.sync import Syncer

from .helpers import CountingEngine, GitRepo

APP = """
    apiVersion: v1
    kind: ConfigMap
    metadata: {{name: {name}}}
    data: {{v: "{value}"}}
"""


def app_files(name: str, value: str = "1") -> dict[str, str]:
    return {
        f"apps/{name}/base/kustomization.yaml": "resources: [cm.yaml]\n",
        f"apps/{name}/base/cm.yaml": APP.format(name=name, value=value),
        f"apps/{name}/dev/kustomization.yaml": "resources: [../base]\nnamePrefix: dev-\n",
        f"apps/{name}/prod/kustomization.yaml": "resources: [../base]\nnamePrefix: prod-\npatches: [{path: patch.yaml}]\n",
        f"apps/{name}/prod/patch.yaml": APP.format(name=name, value="prod"),
        f"apps/{name}/prod/NOTES.md": "not an input\n",
    }


FLEET = """
apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev, prod]
clusters:
  - {name: dev-1, environment: dev}
  - {name: prod-1, environment: prod, labels: {shard: a}}
  - {name: prod-2, environment: prod, labels: {shard: b}}
paths:
  - {path: "apps/one/{environment}", environments: [dev, prod]}
  - {path: apps/two/prod, selector: {matchLabels: {shard: b}}}
"""


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    r = GitRepo(tmp_path / "repo")
    r.commit("apps", {"skerry.yaml": FLEET, **app_files("one"), **app_files("two")})
    return r


@pytest.fixture
def counting(engine) -> CountingEngine:
    return CountingEngine(engine)


@pytest.fixture
def source(repo, tmp_path) -> GitSource:
    return GitSource(str(repo.path), cache_dir=tmp_path / "state")


PATHS = ["apps/one/dev", "apps/one/prod", "apps/two/prod"]


def test_a_commit_re_renders_only_the_paths_whose_closure_changed(repo, source, counting):
    renderer = IncrementalRenderer(counting)
    first = renderer.render(source, source.fetch(), PATHS)
    assert first.failures == {} and first.stats.rendered == 3
    counting.calls.clear()

    repo.commit("prod patch of one", {"apps/one/prod/patch.yaml": APP.format(name="one", value="p2")})
    second = renderer.render(source, source.fetch(), PATHS)
    assert dict(counting.calls) == {"apps/one/prod": 1}
    assert second.rendered["apps/one/prod"][0]["data"] == {"v": "p2"}
    assert second.keys["apps/one/dev"] == first.keys["apps/one/dev"]
    assert second.keys["apps/one/prod"] != first.keys["apps/one/prod"]

    counting.calls.clear()
    repo.commit("docs only", {"apps/one/prod/NOTES.md": "still not an input\n"})
    renderer.render(source, source.fetch(), PATHS)
    assert counting.calls == {}

    repo.commit("base of two", {"apps/two/base/cm.yaml": APP.format(name="two", value="2")})
    renderer.render(source, source.fetch(), PATHS)
    assert dict(counting.calls) == {"apps/two/prod": 1}


def test_creating_a_file_a_kustomization_names_changes_the_key(repo, source, counting):
    repo.commit(
        "configmap from a file",
        {
            "apps/one/dev/kustomization.yaml": (
                "resources: [../base]\nconfigMapGenerator: [{name: extra, files: [conf=extra.conf]}]\n"
            )
        },
    )
    renderer = IncrementalRenderer(counting)
    failed = renderer.render(source, source.fetch(), ["apps/one/dev"])
    assert "apps/one/dev" in failed.failures  # extra.conf does not exist yet
    repo.commit("add the file", {"apps/one/dev/extra.conf": "x=1\n"})
    ok = renderer.render(source, source.fetch(), ["apps/one/dev"])
    assert ok.failures == {}
    assert any(
        o["kind"] == "ConfigMap" and o["data"] == {"conf": "x=1\n"} for o in ok.rendered["apps/one/dev"]
    )


def test_engine_version_is_part_of_the_key(repo, source, counting):
    renderer = IncrementalRenderer(counting)
    commit = source.fetch()
    renderer.render(source, commit, PATHS)
    counting.version_suffix = "+new"
    counting.calls.clear()
    renderer.render(source, commit, PATHS)
    assert sum(counting.calls.values()) == 3


async def test_only_clusters_whose_inputs_changed_get_a_new_release(repo, source, counting, director):
    store = HubStore(director)
    syncer = Syncer(source, counting, store)
    first = await syncer.sync_once()
    assert first.ok and sorted(first.published) == ["dev-1", "prod-1", "prod-2"]
    releases = {c: store.current(c).release for c in store.clusters()}

    repo.commit("two only", {"apps/two/prod/patch.yaml": APP.format(name="two", value="p9")})
    second = await syncer.sync_once()
    assert second.ok and second.published == ("prod-2",)
    assert store.current("prod-1").release == releases["prod-1"]
    assert store.current("dev-1").release == releases["dev-1"]
    assert store.current("prod-2").release > releases["prod-2"]


# --- errors -------------------------------------------------------------------------------


def errors_for(repo, source, counting, files, path="apps/one/prod") -> str:
    repo.commit("break", files)
    outcome = IncrementalRenderer(counting).render(source, source.fetch(), [path])
    assert path in outcome.failures, outcome
    return outcome.failures[path]


def test_a_missing_base_names_the_file_and_the_field(repo, source, counting):
    msg = errors_for(repo, source, counting, {"apps/one/prod/kustomization.yaml": "resources: [../gone]\n"})
    assert msg == (
        "apps/one/prod/kustomization.yaml: resources[0] '../gone': no such file or directory (apps/one/gone)"
    )


def test_a_cycle_is_named_with_its_chain(repo, source, counting):
    msg = errors_for(
        repo,
        source,
        counting,
        {
            "apps/one/prod/kustomization.yaml": "resources: [../base]\n",
            "apps/one/base/kustomization.yaml": "resources: [cm.yaml, ../prod]\n",
        },
    )
    assert "kustomization cycle: apps/one/prod -> apps/one/base -> apps/one/prod" in msg


@pytest.mark.parametrize(
    "ref",
    [
        "https://github.com/example/app//deploy?ref=v1",
        "github.com/example/app/deploy?ref=main",
        "git@github.com:example/app.git",
        "ssh://git@example.com/app.git",
    ],
)
def test_a_remote_base_is_refused(repo, source, counting, ref):
    msg = errors_for(repo, source, counting, {"apps/one/prod/kustomization.yaml": f"resources: ['{ref}']\n"})
    assert (
        msg.startswith("apps/one/prod/kustomization.yaml: resources[0]") and "remote bases are refused" in msg
    )


def test_local_paths_are_not_remote():
    assert not any(is_remote(p) for p in ["../base", "deploy.yaml", "sub/dir", "a.github.com.yaml"])


def test_broken_kustomization_yaml_names_the_file(repo, source, counting):
    msg = errors_for(repo, source, counting, {"apps/one/prod/kustomization.yaml": "resources: [../base\n"})
    assert msg.startswith("apps/one/prod/kustomization.yaml: invalid YAML")


def test_a_reference_out_of_the_repository_is_refused(repo, source, counting):
    msg = errors_for(
        repo, source, counting, {"apps/one/prod/kustomization.yaml": "resources: [../../../../x]\n"}
    )
    assert "points outside the repository" in msg


def test_an_invalid_object_names_path_and_object(repo, source, counting):
    msg = errors_for(
        repo,
        source,
        counting,
        {"apps/one/base/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_DNS}\n"},
        path="apps/one/dev",
    )
    assert msg.startswith("apps/one/dev: object #0 (ConfigMap dev-Not_DNS)") and "DNS-1123" in msg


def test_a_schema_violation_names_the_field(repo, source, counting):
    bad = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: eighty}]}\n"
    msg = errors_for(repo, source, counting, {"apps/one/base/cm.yaml": bad}, path="apps/one/dev")
    assert "Service dev-web" in msg and "spec/ports/0/port" in msg


def test_a_cluster_scoped_object_with_a_namespace_renders_without_it(repo, source, counting):
    odd = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: default}\n"
    repo.commit("ns", {"plain/ns.yaml": odd})
    outcome = IncrementalRenderer(counting).render(source, source.fetch(), ["plain"])
    assert outcome.failures == {}
    assert [o["metadata"] for o in outcome.rendered["plain"]] == [{"name": "shop"}]


def test_closure_of_a_plain_directory_is_its_tree(repo, source):
    repo.commit("plain", {"plain/a.yaml": APP.format(name="a", value="1"), "plain/sub/b.yaml": "x: 1\n"})
    entries = source.list_tree(source.fetch())
    c = closure("plain", entries, lambda oid, path: None)
    assert c.kind == "plain" and c.files == ("plain/a.yaml",)
    assert c.items == (("plain", entries["plain"].oid),)


def test_render_error_type_is_render_error(repo, source):
    entries = source.list_tree(source.fetch())
    with pytest.raises(RenderError, match="no such directory"):
        closure("nope", entries, lambda oid, path: None)


@pytest.mark.parametrize(
    "files, needle",
    [
        (
            {"apps/two/prod/kustomization.yaml": "resources: [../base\n"},
            "apps/two/prod/kustomization.yaml: invalid YAML",
        ),
        (
            {"apps/two/prod/kustomization.yaml": "resources: [../nope]\n"},
            "resources[0] '../nope': no such file",
        ),
        (
            {"apps/two/base/kustomization.yaml": "resources: [cm.yaml, ../prod]\n"},
            "kustomization cycle: apps/two/prod -> apps/two/base -> apps/two/prod",
        ),
        (
            {"apps/two/prod/kustomization.yaml": "resources: ['github.com/acme/app//base?ref=main']\n"},
            "remote bases are refused",
        ),
        (
            {
                "apps/two/base/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\ndata: {w: 1}\n"
            },
            "apps/two/prod: object #0 (ConfigMap prod-two): 1 is not of type 'string'",
        ),
    ],
    ids=["broken-yaml", "missing-base", "cycle", "remote-base", "invalid-object"],
)
async def test_each_kind_of_breakage_keeps_the_previous_bundle_served(
    repo, source, counting, director, files, needle
):
    store = HubStore(director)
    syncer = Syncer(source, counting, store)
    assert (await syncer.sync_once()).ok
    before = {c: store.current(c) for c in store.clusters()}
    repo.commit("break two", files)
    result = await syncer.sync_once()
    assert set(result.errors) == {"prod-2"}, result.errors
    assert needle in result.errors["prod-2"], result.errors["prod-2"]
    assert store.current("prod-2") == before["prod-2"]  # still served, same release
    assert store.error("prod-2") is not None
    assert result.published == ()


def test_an_alias_bomb_in_a_kustomization_is_refused_by_the_alias_budget(repo, source, counting):
    bomb = "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    msg = errors_for(repo, source, counting, {"apps/one/prod/kustomization.yaml": "a0: &a0 [x, x, x, x]\n" + bomb})
    assert msg.startswith("apps/one/prod/kustomization.yaml: line ") and "aliases expand" in msg
    assert len(msg) < 1024
