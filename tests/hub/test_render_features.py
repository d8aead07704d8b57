"""Every Kustomize feature the hub relies on renders object for object as `kubectl kustomize` does,
through both engines (in-process pykustomize and the binary) and through the incremental renderer
(which renders a closure written from Git objects, not a checkout)."""

from __future__ import annotations

import pytest

from skerry.hub.render import inprocess
from skerry.hub.render.engine import KustomizeEngine
from skerry.hub.render.incremental import IncrementalRenderer
from skerry.hub.source.git import GitSource

from .helpers import GitRepo, kubectl_kustomize

needs_inprocess = pytest.mark.skipif(not inprocess.available(), reason="pykustomize is not installed")

DEPLOYMENT = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: api}
    spec:
      replicas: 1
      selector: {matchLabels: {app: api}}
      template:
        metadata: {labels: {app: api}}
        spec:
          containers:
            - name: api
              image: registry.example/api:1.0
              ports: [{containerPort: 8080}]
            - name: sidecar
              image: busybox
"""

FEATURES = {
    "base/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [deployment.yaml, service.yaml]
    """,
    "base/deployment.yaml": DEPLOYMENT,
    "base/service.yaml": """
        apiVersion: v1
        kind: Service
        metadata: {name: api}
        spec:
          selector: {app: api}
          ports: [{port: 80, targetPort: 8080}]
    """,
    "legacy/kustomization.yaml": """
        bases: [../base]
        commonLabels: {tier: backend}
        patchesStrategicMerge: [memory.yaml]
        patchesJson6902:
          - target: {group: apps, version: v1, kind: Deployment, name: api}
            path: replicas.json
    """,
    "legacy/memory.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api}
        spec:
          template:
            spec:
              containers:
                - name: api
                  resources: {limits: {memory: 256Mi}}
    """,
    "legacy/replicas.json": '[{"op": "replace", "path": "/spec/replicas", "value": 4}]\n',
    "components/monitoring/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        resources: [servicemonitor.yaml]
        commonAnnotations: {monitoring.example/scrape: "true"}
    """,
    "components/monitoring/servicemonitor.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: scrape-config}
        data: {interval: 30s}
    """,
    "overlays/prod/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        namespace: shop
        namePrefix: prod-
        nameSuffix: -v2
        resources: [../../base, namespace.yaml]
        components: [../../components/monitoring]
        labels:
          - pairs: {app.kubernetes.io/part-of: shop}
            includeSelectors: true
        commonAnnotations: {owner: team-shop}
        images:
          - name: registry.example/api
            newName: registry.example/shop/api
            newTag: "2.1"
          - name: busybox
            digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
        replicas: [{name: api, count: 3}]
        patches:
          - path: resources.yaml
          - target: {kind: Service, name: api}
            patch: |-
              - op: add
                path: /spec/sessionAffinity
                value: ClientIP
        configMapGenerator:
          - name: settings
            literals: [LOG_LEVEL=info, FEATURE_X=on]
            files: [app.properties, renamed.conf=extra.conf]
          - name: env-settings
            envs: [settings.env]
        secretGenerator:
          - name: credentials
            literals: [user=shop]
            files: [token.txt]
            type: Opaque
    """,
    "overlays/prod/namespace.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
    """,
    "overlays/prod/resources.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api}
        spec:
          template:
            spec:
              containers:
                - name: api
                  resources: {limits: {cpu: 500m}}
    """,
    "overlays/prod/app.properties": "mode=production\nthreads=8\n",
    "overlays/prod/extra.conf": "extra=1\n",
    "overlays/prod/settings.env": "REGION=no-oslo\nZONE=b\n",
    "overlays/prod/token.txt": "not-a-real-token\n",
    "overlays/prod/README.md": "docs only; not an input\n",
    "plain/10-config.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: plain, namespace: default}
        data: {a: "1"}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: plain-2, namespace: default}
    """,
}
KUSTOMIZED = ["base", "legacy", "overlays/prod"]


@pytest.fixture(scope="module")
def feature_repo(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("features") / "repo")
    repo.commit("features", FEATURES)
    return repo


@pytest.fixture(scope="module")
def binary() -> KustomizeEngine:
    return KustomizeEngine.detect()


@pytest.mark.parametrize("path", KUSTOMIZED)
def test_binary_engine_equals_kubectl_kustomize(feature_repo, binary, path):
    assert binary.render(feature_repo.path / path) == kubectl_kustomize(feature_repo.path / path)


@needs_inprocess
@pytest.mark.parametrize("path", KUSTOMIZED)
def test_inprocess_engine_equals_kubectl_kustomize(feature_repo, path):
    engine = inprocess.InProcessKustomizeEngine()
    expected = kubectl_kustomize(feature_repo.path / path)
    assert expected, "the fixture renders something"
    assert engine.render(feature_repo.path / path) == expected


def test_every_feature_is_exercised(feature_repo):
    objects = kubectl_kustomize(feature_repo.path / "overlays/prod")
    by_kind = {o["kind"]: o for o in objects}
    secret, deploy = by_kind["Secret"], by_kind["Deployment"]
    assert secret["metadata"]["name"].startswith("prod-credentials-v2-")  # hash suffix
    assert deploy["metadata"]["name"] == "prod-api-v2" and deploy["metadata"]["namespace"] == "shop"
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/shop/api:2.1"
    assert "@sha256:" in deploy["spec"]["template"]["spec"]["containers"][1]["image"]
    assert deploy["metadata"]["annotations"]["monitoring.example/scrape"] == "true"  # component
    assert deploy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/part-of"] == "shop"
    legacy = {o["kind"]: o for o in kubectl_kustomize(feature_repo.path / "legacy")}["Deployment"]
    assert legacy["spec"]["replicas"] == 4 and legacy["metadata"]["labels"]["tier"] == "backend"


@pytest.mark.parametrize("which", ["inprocess", "binary"])
def test_incremental_renderer_from_git_objects_equals_kubectl(feature_repo, binary, tmp_path, which):
    if which == "inprocess" and not inprocess.available():
        pytest.skip("pykustomize is not installed")
    engine = inprocess.InProcessKustomizeEngine() if which == "inprocess" else binary
    source = GitSource(str(feature_repo.path), cache_dir=tmp_path / "state")
    commit = source.fetch()
    outcome = IncrementalRenderer(engine).render(source, commit, [*KUSTOMIZED, "plain"])
    assert outcome.failures == {}
    for path in KUSTOMIZED:
        assert outcome.rendered[path] == kubectl_kustomize(feature_repo.path / path), path
    assert [o["metadata"]["name"] for o in outcome.rendered["plain"]] == ["plain", "plain-2"]


@needs_inprocess
def test_inprocess_engine_records_the_kustomize_library_version():
    engine = inprocess.InProcessKustomizeEngine()
    assert engine.name == "kustomize"
    assert engine.version.startswith("api v0.") and "pykustomize" in engine.version, engine.version


@needs_inprocess
def test_inprocess_error_names_the_path_and_kustomizes_message(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kustomization.yaml").write_text("resources: [nope.yaml]\n")
    with pytest.raises(Exception) as info:
        inprocess.InProcessKustomizeEngine().render(tmp_path / "bad", root=tmp_path)
    assert str(info.value).startswith("bad: kustomize build failed:") and "nope.yaml" in str(info.value)
    assert str(tmp_path) not in str(info.value)
