"""Helpers shared by the hub tests: Git repositories on disk and the examples/fleet-shaped content."""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess
import sys
import textwrap

from skerry.hub.render.engine import Engine

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Skerry Test",
    "GIT_AUTHOR_EMAIL": "test@skerry.invalid",
    "GIT_COMMITTER_NAME": "Skerry Test",
    "GIT_COMMITTER_EMAIL": "test@skerry.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A working repository on disk, edited and committed with the git CLI."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV}
        out = subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True, env=env
        )
        return out.stdout.strip()

    def write(self, files: dict[str, str | None]) -> None:
        """Write (dedented) files; None deletes one."""
        for rel, content in files.items():
            target = self.path / rel
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(content).lstrip("\n"))

    def commit(self, message: str = "change", files: dict[str, str | None] | None = None) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


FLEET_YAML = """
apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev, prod]
clusters:
  - name: oslo-dev
    labels: {region: no-oslo, env: dev}
  - name: bergen-dev
    labels: {region: no-bergen, env: dev}
  - name: oslo-prod
    labels: {region: no-oslo, env: prod}
paths:
  - path: platform/monitoring
    selector: {}
  - path: overlays/dev
    selector: {matchLabels: {env: dev}}
  - path: overlays/prod
    selector:
      matchLabels: {env: prod}
      matchExpressions: [{key: region, operator: In, values: [no-oslo]}]
"""

FLEET_FILES = {
    "skerry.yaml": FLEET_YAML,
    "base/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [namespace.yaml, deployment.yaml, service.yaml]
        labels:
          - pairs: {app.kubernetes.io/name: web}
    """,
    "base/namespace.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata: {name: web}
    """,
    "base/deployment.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: web}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: nginx:1.27
                  ports: [{containerPort: 80}]
    """,
    "base/service.yaml": """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: web}
        spec:
          selector: {app: web}
          ports: [{port: 80, targetPort: 80}]
    """,
    "overlays/dev/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [../../base]
        configMapGenerator:
          - name: web-config
            namespace: web
            literals: [LOG_LEVEL=debug, RELEASED=2024-01-01]
    """,
    "overlays/prod/kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [../../base]
        patches:
          - target: {kind: Deployment, name: web}
            patch: |-
              - op: replace
                path: /spec/replicas
                value: 3
        configMapGenerator:
          - name: web-config
            namespace: web
            literals: [LOG_LEVEL=info]
    """,
    "platform/monitoring/00-namespace.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata: {name: monitoring}
    """,
    "platform/monitoring/10-agent.yaml": """
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: node-agent, namespace: monitoring}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: node-agent, namespace: monitoring}
        data: {scrape: "30s"}
    """,
}

def scale_prod(replicas: int) -> dict[str, str]:
    """Files of a commit that changes prod alone: its overlay with the web Deployment at ``replicas``."""
    return {
        "overlays/prod/kustomization.yaml": f"""
            resources: [../../base]
            replicas: [{{name: web, count: {replicas}}}]
        """
    }


BROKEN_PROD = {
    "overlays/prod/kustomization.yaml": """
        resources: [../../base, missing.yaml]
    """
}


class CountingEngine(Engine):
    """The real engine, counting renders per path; ``version_suffix`` makes it another engine version."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()
        self.version_suffix = ""

    @property
    def name(self):
        return self.inner.name

    @property
    def version(self):
        return self.inner.version + self.version_suffix

    def render(self, directory, *, root=None):
        self.calls[pathlib.Path(directory).relative_to(root).as_posix()] += 1
        return self.inner.render(directory, root=root)

    def _build(self, directory, *, where, root):  # pragma: no cover - render is delegated
        raise NotImplementedError


def kubectl_kustomize(directory: pathlib.Path) -> list[dict]:
    """What ``kubectl kustomize DIR`` prints, parsed (the reference the engine must match)."""
    import yaml

    out = subprocess.run(["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


# The hub's command surface in a child process, as a user meets it (exit code, stderr). Stands in for
# skerry/cli/__init__.py, which calls add_commands the same way.
HARNESS = """
import argparse, sys
from skerry.cli import hub, render
parser = argparse.ArgumentParser(prog="skerry")
sub = parser.add_subparsers(dest="command", required=True)
hub.add_commands(sub)
render.add_commands(sub)
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def skerry(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HARNESS, *args], capture_output=True, cwd=cwd, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{command}: error: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]
