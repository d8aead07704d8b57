"""The deploy/ overlays rendered with one installation's settings.

Why a generated kustomization instead of editing YAML: the overlays' ConfigMaps come from
``configMapGenerator`` (hashed names, so a changed setting rolls the pods), and kustomize itself
replaces them here (``behavior: replace``) and rewrites every reference; the rendering is the
hub's own kustomize engine, so what is applied is what ``kubectl kustomize`` would build.

The overlay directory is copied with its bases into a scratch directory next to the generated
``kustomization.yaml``, because kustomize loads files only from below its root.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import tempfile
from collections.abc import Mapping

from skerry.core import documents
from skerry.core.errors import ConfigError
from skerry.hub.render.detect import detect_engine

# The deploy/ directory this Skerry ships with: in a source checkout a link to the tree's deploy/, in a
# wheel its copy (package data), so `skerry install` from `pip install skerry` applies its own manifests.
SHIPPED_DEPLOY = pathlib.Path(__file__).resolve().parent / "deploy"
MANAGEMENT, WORKLOAD = "management", "workload"
# The ConfigMap each overlay generates for its service's settings (environment variables).
HUB_SETTINGS, AGENT_SETTINGS = "skerry-hub", "skerry-agent"
GENERATED_NAMESPACE = "skerry-system"
# deploy/ says what current Kubernetes says; two spellings are newer than some clusters still running,
# each named with the minor release that brought it. An older API server gets the nearest older spelling.
NEWER_SPELLINGS = {
    # PodDisruptionBudget policy/v1: 1.21 (v1beta1 was removed in 1.25); the fields used are the same
    "policy/v1 PodDisruptionBudget": 21,
    # ReadWriteOncePod: 1.22 (alpha), beta on by default 1.27, GA 1.29; older: ReadWriteOnce
    "ReadWriteOncePod": 22,
}


@dataclasses.dataclass(frozen=True)
class Overlay:
    deploy_dir: pathlib.Path
    name: str  # a directory under deploy/overlays
    settings: Mapping[str, Mapping[str, str]]  # generated ConfigMap name -> its literals

    def kustomization(self) -> dict:
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [f"../overlays/{self.name}"],
            "configMapGenerator": [
                {"name": name, "namespace": GENERATED_NAMESPACE, "behavior": "replace",
                 "literals": [f"{k}={v}" for k, v in sorted(literals.items())]}
                for name, literals in sorted(self.settings.items())
            ],
        }

    def render(self, engine: str = "auto") -> list[dict]:
        overlay = self.deploy_dir / "overlays" / self.name / "kustomization.yaml"
        if not overlay.is_file():
            raise ConfigError(f"{overlay}: not found; give --manifests DIR (the deploy/ directory of a Skerry "
                              "source tree)")
        with tempfile.TemporaryDirectory(prefix="skerry-install-") as tmp:
            root = pathlib.Path(tmp) / "deploy"
            shutil.copytree(self.deploy_dir, root, ignore=shutil.ignore_patterns("*.txt", "Dockerfile"))
            here = root / "skerry-install"
            here.mkdir()
            (here / "kustomization.yaml").write_text(documents.dump_yaml(self.kustomization()))
            return detect_engine(engine).render(here)


def for_server(doc: dict, minor: int) -> dict:
    """``doc`` as an API server of minor version ``minor`` can take it (see ``NEWER_SPELLINGS``)."""
    if doc["kind"] == "PodDisruptionBudget" and minor < NEWER_SPELLINGS["policy/v1 PodDisruptionBudget"]:
        doc = {**doc, "apiVersion": "policy/v1beta1"}
    if doc["kind"] == "PersistentVolumeClaim" and minor < NEWER_SPELLINGS["ReadWriteOncePod"]:
        modes = ["ReadWriteOnce" if m == "ReadWriteOncePod" else m for m in doc["spec"]["accessModes"]]
        doc = {**doc, "spec": {**doc["spec"], "accessModes": modes}}
    return doc


def deploy_dir(given: pathlib.Path | None) -> pathlib.Path:
    path = given or SHIPPED_DEPLOY
    if not (path / "overlays").is_dir():
        raise ConfigError(f"{path}: no overlays/ in it; give --manifests DIR (a Skerry "
                          "deploy/ directory)")
    return path


def references(objects: list[dict]) -> set[tuple[str, str]]:
    """Every (kind, name) of a Secret or ConfigMap the workloads among ``objects`` mount or read.

    A reference marked ``optional: true`` is left out: the pod starts without it.
    """
    found: set[tuple[str, str]] = set()
    for obj in objects:
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for volume in pod.get("volumes") or []:
            if "secret" in volume and not volume["secret"].get("optional"):
                found.add(("Secret", volume["secret"]["secretName"]))
            if "configMap" in volume and not volume["configMap"].get("optional"):
                found.add(("ConfigMap", volume["configMap"]["name"]))
            if "persistentVolumeClaim" in volume:
                found.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            for source in container.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source and not source[key].get("optional"):
                        found.add((kind, source[key]["name"]))
            for env in container.get("env") or []:
                ref = env.get("valueFrom") or {}
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in ref and not ref[key].get("optional"):
                        found.add((kind, ref[key]["name"]))
    return found
