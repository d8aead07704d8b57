"""A small fleet of its own for the content, state and clock fault tests.

Each test module gets a ``World``: a real sealer, hub and agent (``skerry.testing.devstack``)
following a Git repository with one cluster whose name, namespace and agent namespace are unique
to the module, so the shared API server's other tests never see its objects or its inventory.
The cluster's overlay holds a Namespace, two ConfigMaps, a Deployment and a SealedSecret: enough
to see that nothing is lost (``Snapshot``), small enough to reconcile in about a second.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import uuid

from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, Inventory
from skerry.core import tls
from skerry.testing.devstack import Service, Stack, fleet_status, wait_for

FLEET = """\
apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev]
clusters:
  - name: {cluster}
    labels: {{env: dev}}
paths:
  - path: apps/{cluster}
    selector:
      matchLabels: {{env: dev}}
"""

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
"""

CONFIGMAPS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: "1"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: features
data:
  flags: "a,b"
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {ns}
resources:
{resources}"""

BASE_RESOURCES = ("namespace.yaml", "configmaps.yaml", "deployment.yaml", "sealed-db.yaml")


def unique(prefix: str) -> str:
    """A DNS label no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What must never be lost: the live objects, the recorded inventory and the applied release."""

    objects: frozenset[str]
    inventory: frozenset[str]
    release: int
    secret: str  # the unsealed password as the cluster holds it


class World:
    """One cluster's overlay in a Git repo, and the stack that serves and applies it."""

    def __init__(self, kubeconfig: pathlib.Path, workdir: pathlib.Path, prefix: str):
        self.cluster = unique(prefix)
        self.ns = f"{self.cluster}-app"
        self.agent_ns = f"skerry-{self.cluster}"
        self.password = secrets.token_urlsafe(16)
        self.stack = Stack(workdir, kubeconfig, interval=0.5, auto_release=("dev",), environments=("dev",))
        self.overlay = f"apps/{self.cluster}"
        self._source = workdir / "source"

    # --- set-up ---------------------------------------------------------------------------------
    def seed(self, *, sealer: bool = True) -> str:
        """Write the fleet and the overlay, start the sealer (to seal the Secret) and commit."""
        if sealer:
            self.stack.start_sealer()
        src = self._source / self.overlay
        src.mkdir(parents=True, exist_ok=True)
        (self._source / "skerry.yaml").write_text(FLEET.format(cluster=self.cluster))
        (src / "namespace.yaml").write_text(NAMESPACE.format(ns=self.ns))
        (src / "configmaps.yaml").write_text(CONFIGMAPS)
        (src / "deployment.yaml").write_text(DEPLOYMENT)
        resources = BASE_RESOURCES if sealer else BASE_RESOURCES[:-1]
        (src / "kustomization.yaml").write_text(self.kustomization(resources))
        seal = None
        if sealer:
            secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": "db", "namespace": self.ns},
                      "stringData": {"password": self.password}}
            seal = {f"{self.overlay}/sealed-db.yaml": secret}
        return self.stack.seed_repo(self._source, seal=seal)

    def kustomization(self, resources) -> str:
        if not resources:  # a commit whose overlay renders zero objects
            return KUSTOMIZATION.format(ns=self.ns, resources="").replace("resources:\n", "resources: []\n")
        return KUSTOMIZATION.format(ns=self.ns, resources="".join(f"  - {r}\n" for r in resources))

    def start(self, *, hub_extra: tuple[str, ...] = (), hub_env: dict[str, str] | None = None,
              agent_extra: tuple[str, ...] = (), allow_prune_protected: bool = False) -> dict:
        """Start the hub and the agent; return the agent's first Ready status."""
        self.stack.start_hub(extra=hub_extra, env=hub_env)
        self.start_agent(agent_extra, allow_prune_protected=allow_prune_protected)
        return self.wait_ready()

    def start_agent(self, extra: tuple[str, ...] = (), *, allow_prune_protected: bool = False) -> Service:
        return self.stack.start_agent(self.cluster, environment="dev", extra=extra,
                                      allow_prune_protected=allow_prune_protected)

    @property
    def agent(self) -> Service:
        return self.stack.agents[self.cluster]

    @property
    def agent_state(self) -> pathlib.Path:
        return self.stack.workdir / "agents" / self.cluster

    def stop(self) -> None:
        self.stack.stop()
        self.stack.kubectl("delete", "namespace", self.ns, self.agent_ns, "--wait=false", "--ignore-not-found",
                           check=False)

    # --- Git --------------------------------------------------------------------------------------
    def write(self, name: str, text: str) -> None:
        (self.stack.repo / self.overlay / name).write_text(text)

    def set_resources(self, resources) -> None:
        self.write("kustomization.yaml", self.kustomization(resources))

    def commit(self, message: str) -> str:
        return self.stack.commit(message)

    # --- observing --------------------------------------------------------------------------------
    def desired(self) -> dict:
        ops = self.stack.identity("tester", tls.ROLE_OPERATOR)
        return next((v for v in fleet_status(self.stack.hub_address, ops) if v["cluster"] == self.cluster), {})

    def wait_ready(self, *, release_above: int = 0, timeout: float = 30.0) -> dict:
        return self.stack.wait_applied(self.cluster, release_above=release_above, timeout=timeout)

    def wait_status(self, probe, what: str, timeout: float = 20.0) -> dict:
        """Wait for an agent status (its ready file) for which ``probe(status)`` is true."""
        def check():
            if not self.agent.alive():
                raise AssertionError(f"agent exited; log:\n{self.agent.log_tail()}")
            st = self.agent.status()
            return st if st and probe(st) else None
        return wait_for(check, timeout, what, self.agent)

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.stack.kubectl(*args, check=check)

    def live_objects(self) -> frozenset[str]:
        out = self.kubectl("get", "configmap,deployment,secret", "-n", self.ns, "-o",
                           "jsonpath={range .items[*]}{.kind}/{.metadata.name} {end}")
        names = {n for n in out.split() if not n.startswith(("ConfigMap/kube-root-ca", "Secret/default-token-"))}
        if self.kubectl("get", "namespace", self.ns, "--ignore-not-found", "-o", "name"):
            names.add(f"Namespace/{self.ns}")
        return frozenset(names)

    def inventory(self) -> Inventory:
        raw = self.kubectl("get", "configmap", CONFIGMAP_NAME, "-n", self.agent_ns, "-o", "json",
                           "--ignore-not-found")
        return Inventory.from_configmap(json.loads(raw) if raw else None)

    def secret_password(self) -> str:
        raw = self.kubectl("get", "secret", "db", "-n", self.ns, "--ignore-not-found",
                           "-o", "jsonpath={.data.password}")
        return base64.b64decode(raw).decode() if raw else ""

    def snapshot(self) -> Snapshot:
        inv = self.inventory()
        status = self.agent.status() or {}
        return Snapshot(
            objects=self.live_objects(),
            inventory=frozenset(f"{r.kind}/{r.name}" for r in inv.objects),
            release=int(status.get("applied_release", 0)),
            secret=self.secret_password(),
        )

    def assert_nothing_lost(self, before: Snapshot) -> Snapshot:
        now = self.snapshot()
        assert before.objects <= now.objects, f"objects lost: {sorted(before.objects - now.objects)}"
        assert before.inventory <= now.inventory, f"inventory entries lost: {sorted(before.inventory - now.inventory)}"
        assert now.release >= before.release, f"release counter went down: {before.release} -> {now.release}"
        if before.secret:
            assert now.secret == before.secret, "the unsealed Secret changed or vanished"
        return now


@contextlib.contextmanager
def running_world(kubeconfig: pathlib.Path, workdir: pathlib.Path, prefix: str):
    """A seeded world with its sealer, hub and agent running (Ready); stopped afterwards."""
    world = World(kubeconfig, workdir, prefix)
    try:
        world.seed()
        world.start()
        yield world
    finally:
        world.stop()


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


class SmallDisk:
    """A small tmpfs mounted on ``path`` (we are root in a container): a disk that can be filled.

    ``fill`` takes every free byte with one filler file, ``free`` gives them back. Mount it before
    a service writes there (it hides what the directory held)."""

    def __init__(self, path: pathlib.Path, size: str = "16m"):
        self.path = pathlib.Path(path)
        self.size = size
        self._filler = self.path / ".filler"

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)],
                       check=True, capture_output=True)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    def fill(self) -> None:
        block = b"\0" * 4096
        try:
            with open(self._filler, "ab", buffering=0) as f:
                while True:
                    f.write(block)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        assert shutil.disk_usage(self.path).free < 4096

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` of the filler (a page is 4096 bytes)."""
        os.truncate(self._filler, max(0, self._filler.stat().st_size - nbytes))

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def files(self) -> dict[str, bytes]:
        """Every file on the disk but the filler (to compare before and after a fault)."""
        return {str(p.relative_to(self.path)): p.read_bytes() for p in sorted(self.path.rglob("*"))
                if p.is_file() and p != self._filler}

    def leftovers(self) -> list[str]:
        """Temporary or staged files a write left behind (an atomic write leaves none)."""
        return [name for name in self.files() if name.endswith((".tmp", ".next", ".commit"))]


def tracebacks(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Traceback" in line or '"exception"' in line]
