"""Generated directories to render: the large tree ``bench/render.py`` times ``skerry render`` on, and the
render tests check the same tree's output on.

``crd_tree``: one kustomization of CustomResourceDefinitions with large schemas (like the CRDs of an
operator, ~100 KiB each at the default size) and small namespaced objects (ConfigMaps, Services,
ServiceAccounts). Most of the time of rendering it goes to reading and writing YAML, which is what
the start-up acceptance of ``skerry render`` (no slower than ``kubectl kustomize`` on such a tree)
is about.
"""

from __future__ import annotations

import pathlib

from skerry.core import documents

# The benchmark's tree: 130 objects, 10 of them CRDs with 40 fields of 6 settings each.
CRDS = 10
SMALL_OBJECTS = 120
FIELDS = 40
SETTINGS = 6


def _crd(i: int, fields: int) -> dict:
    props = {
        f"field{j}": {
            "type": "object",
            "description": f"Field {j} of thing {i}: " + "what it configures and why, at some length. " * 3,
            "properties": {
                f"sub{k}": {"type": "string", "description": "One setting. " * 4, "enum": ["=", "a", "b"]}
                for k in range(SETTINGS)
            },
        }
        for j in range(fields)
    }
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things{i}.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": f"Thing{i}", "plural": f"things{i}", "singular": f"thing{i}", "listKind": f"Thing{i}List"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def _small(i: int) -> dict:
    kind = ("ConfigMap", "Service", "ServiceAccount")[i % 3]
    obj: dict = {"apiVersion": "v1", "kind": kind,
                 "metadata": {"name": f"obj-{i}", "namespace": "shop", "labels": {"app": "shop"}}}
    if kind == "ConfigMap":
        obj["data"] = {"LOG_LEVEL": "info", "SINCE": "2024-01-01", "NOTE": "plain text " * 5}
    elif kind == "Service":
        obj["spec"] = {"selector": {"app": f"obj-{i}"}, "ports": [{"port": 80, "targetPort": 8080}]}
    return obj


def crd_tree_files(*, crds: int = CRDS, small: int = SMALL_OBJECTS, fields: int = FIELDS) -> dict[str, dict]:
    """The tree's objects by file name (the kustomization lists them in this order)."""
    files = {f"crd-{i}.yaml": _crd(i, fields) for i in range(crds)}
    files.update({f"obj-{i}.yaml": _small(i) for i in range(small)})
    return files


def crd_tree(root: pathlib.Path, **sizes: int) -> pathlib.Path:
    """Write the tree (``crd_tree_files``) into ``root``, made if missing: a file per object and a
    kustomization listing them."""
    root.mkdir(parents=True, exist_ok=True)
    files = crd_tree_files(**sizes)
    for name, obj in files.items():
        (root / name).write_text(documents.dump_yaml(obj))
    (root / "kustomization.yaml").write_text(documents.dump_yaml({"resources": list(files)}))
    return root
