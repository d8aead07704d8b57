"""Helpers the fault tests share: a one-cluster fleet of their own, what "nothing lost" reads, and the
warnings and errors a service logged (the end-to-end bad-input tests read those too).

Each fault module names its own cluster (and so its own namespaces) on the shared API server.
"""

from __future__ import annotations

import base64
import json
import pathlib

from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, Inventory
from skerry.testing.devstack import Stack

SEALED_FILE = "sealed-db.yaml"  # the sealed Secret's file in the cluster's path


def write_fleet(root: pathlib.Path, cluster: str, objects: dict[str, str]) -> pathlib.Path:
    """A repository tree: ``skerry.yaml`` naming ``cluster`` (env dev) and a plain-YAML path of ``objects``."""
    (root / "apps" / cluster).mkdir(parents=True, exist_ok=True)
    (root / "skerry.yaml").write_text(
        "apiVersion: skerry.io/v1alpha1\nkind: Fleet\n"
        f"clusters:\n  - name: {cluster}\n    labels: {{env: dev}}\n"
        f"paths:\n  - path: apps/{cluster}\n    selector:\n      matchLabels: {{env: dev}}\n"
    )
    put_objects(root, cluster, objects)
    return root


def put_objects(root: pathlib.Path, cluster: str, objects: dict[str, str]) -> None:
    """Replace the cluster's path with ``{file name: YAML}``."""
    path = root / "apps" / cluster
    for old in path.glob("*.yaml"):
        old.unlink()
    for name, text in objects.items():
        (path / name).write_text(text)


def namespace_yaml(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def configmap_yaml(namespace: str, name: str, data: dict[str, str]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                       "data": data})


def app_objects(namespace: str, version: str) -> dict[str, str]:
    """The smallest release: ``namespace`` and one ConfigMap ``app`` whose ``v`` is ``version``."""
    return {"ns.yaml": namespace_yaml(namespace), "app.yaml": configmap_yaml(namespace, "app", {"v": version})}


def seed_sealed_app(stack: Stack, cluster: str, namespace: str, secret: dict) -> None:
    """Seed the stack's repository with ``cluster``'s app at version 1 and ``secret`` sealed beside it (the
    sealer must be running)."""
    stack.seed_repo(write_fleet(stack.workdir / "fleet", cluster, app_objects(namespace, "1")),
                    seal={f"apps/{cluster}/{SEALED_FILE}": secret})


def commit_sealed_app(stack: Stack, cluster: str, namespace: str, version: str, message: str) -> str:
    """Commit ``cluster``'s app at ``version``, the sealed Secret kept as it is; the commit id."""
    sealed = (stack.repo / "apps" / cluster / SEALED_FILE).read_text()
    write_fleet(stack.repo, cluster, {**app_objects(namespace, version), SEALED_FILE: sealed})
    return stack.commit(message)


def live(stack: Stack, kind: str, namespace: str, name: str) -> dict | None:
    out = stack.kubectl("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "json")
    return json.loads(out) if out else None


def inventory(stack: Stack, cluster: str) -> Inventory:
    """The agent's recorded inventory (Devstack agents keep it in ``skerry-<cluster>``)."""
    return Inventory.from_configmap(live(stack, "configmap", f"skerry-{cluster}", CONFIGMAP_NAME))


def secret_manifest(namespace: str, name: str, password: str) -> dict:
    """A Secret to seal (``Stack.seed_repo(seal=...)``) holding ``password``."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "stringData": {"password": password}}


def secret_password(stack: Stack, namespace: str, name: str) -> str | None:
    """The live Secret's ``password``, decoded; None if there is no such Secret."""
    secret = live(stack, "secret", namespace, name)
    return None if secret is None else base64.b64decode(secret["data"]["password"]).decode()


def trusted_release(stack: Stack, cluster: str) -> int:
    """The release counter the agent persisted (it must never go down)."""
    path = stack.workdir / "agents" / cluster / "trust-state.json"
    return int(json.loads(path.read_text())["release"])


def error_lines(log: str, *needles: str) -> list[dict]:
    """Warning/error records (JSON lines) of a service log whose text contains every needle."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") in ("warning", "error") and all(n in line for n in needles):
            found.append(record)
    return found
