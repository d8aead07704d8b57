"""`skerry render DIR` starts like a small tool: no logging library, Git library, schema validator,
gRPC or package metadata reader is imported to render a directory, and what it does log still goes to
stderr, never into the rendered output."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet" / "overlays" / "prod"
HEAVY = ("structlog", "rich", "git", "grpc", "jsonschema", "kubernetes_validate", "cffi", "pycparser", "pykustomize",
         "cryptography", "prometheus_client", "google")
# Standard library modules that each cost a render several milliseconds and that it does not need: the
# package metadata reader (~45 ms of CPU with the email package it pulls in), logging before anything is
# logged, dataclasses (inspect, ast) and hashlib (the hub's closure keys).
NOT_NEEDED = ("importlib.metadata", "email", "logging", "dataclasses", "hashlib")


def render(directory: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-m", "skerry", "render", str(directory)],
                          capture_output=True, cwd=ROOT, timeout=120)


def test_a_directory_render_imports_none_of_the_heavy_libraries():
    done = render(EXAMPLE, "-X", "importtime")
    assert done.returncode == 0 and b"kind: Deployment" in done.stdout
    modules = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()
               if line.startswith("import time:")}
    imported = {m.split(".")[0] for m in modules}
    assert imported and not imported.intersection(HEAVY), imported.intersection(HEAVY)
    assert not modules.intersection(NOT_NEEDED), modules.intersection(NOT_NEEDED)


def test_what_a_directory_render_logs_goes_to_stderr(tmp_path):
    (tmp_path / "role.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: shop}\nrules: []\n")
    done = render(tmp_path)
    assert done.returncode == 0
    assert done.stdout.decode() == "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\nrules: []\n"
    (line,) = done.stderr.decode().splitlines()
    assert json.loads(line)["event"] == "metadata.namespace dropped from a cluster-scoped object"
