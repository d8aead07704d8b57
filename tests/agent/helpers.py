"""Plain helpers of the agent tests: the test cluster, bundles released in a real trust repository, objects, kubectl.

Fixtures live in ``conftest.py``; test modules import these names from here.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import subprocess
import time

from tuf.api import exceptions as tuf_errors

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import InMemoryFetcher
from skerry.api.v1 import bundle_pb2, hub_pb2
from skerry.core.bundle import Bundle, VerifiedBundle
from skerry.core.canonical import sha256_digest
from skerry.core.errors import NotFound
from tests.e2e.trust_world import TrustWorld

CLUSTER = "oslo"
ENVIRONMENT = "dev"
# Near the wall clock: python-tuf checks metadata expiry against it, the agent against its injected clock.
NOW = _dt.datetime.now(_dt.UTC).replace(microsecond=0)


class RepositoryFetcher(InMemoryFetcher):
    """The trust repository's files in-process: the bytes the hub's ``TrustService.Fetch`` serves."""

    def __init__(self, repo):
        self.repo, self.last_path = repo, ""

    def _fetch(self, url: str):
        self.last_path = url[len("skerry:/") :]
        try:
            return iter([self.repo.fetch(self.last_path)])
        except NotFound:
            raise tuf_errors.DownloadHTTPError(self.last_path, 404) from None


class Bundles:
    """Bundles as the hub releases them: directed and released (hub-held dev key) in a ``TrustWorld``.

    ``signed_message`` publishes a bundle and returns the watch event announcing it (the agent then
    fetches it through TUF from ``FakeHub(trust=bundles.world)``); ``verifier`` is a real agent
    verifier over the repository; ``verified`` is only the reconciler's input, built without a
    signature for tests of what happens after verification.
    """

    def __init__(self, tmp_path, cluster: str = CLUSTER, *, expiry=None):
        self.cluster = cluster
        self.world = TrustWorld(tmp_path / "trust", expiry=expiry)
        self.release = 0

    @property
    def root(self):
        return self.world.root

    def _bundle(
        self, objects, release: int | None, revision: str | None, cluster: str | None
    ) -> tuple[Bundle, int]:
        if release is None:
            self.release += 1
            release = self.release
        bundle = Bundle(
            cluster=cluster or self.cluster,
            revision=revision or f"{release:040x}",
            source_url="https://git.example/fleet.git",
            paths=("clusters/oslo",),
            engine="raw",
            engine_version="",
            objects=tuple(objects),
        )
        return bundle, release

    def publish(self, objects=(), *, release: int | None = None, revision: str | None = None) -> bytes:
        """Release and direct a bundle of ``objects`` for this cluster; returns its bytes."""
        bundle, release = self._bundle(objects, release, revision, None)
        data = bundle.encode()
        self.world.publish(self.cluster, ENVIRONMENT, data, release=release)
        return data

    def signed_message(self, objects=(), **kw) -> bundle_pb2.SignedBundle:
        data = self.publish(objects, **kw)
        release = kw.get("release") or self.release
        return bundle_pb2.SignedBundle(cluster=self.cluster, version=release, digest=sha256_digest(data))

    def verifier(self, state_dir, clock=None) -> TufVerifier:
        return TufVerifier(
            self.cluster, ENVIRONMENT, self.root, state_dir, lambda: RepositoryFetcher(self.world.repo), clock
        )

    def verified(
        self, objects=(), *, release: int | None = None, revision: str | None = None
    ) -> VerifiedBundle:
        bundle, release = self._bundle(objects, release, revision, None)
        raw = bundle.encode()
        return VerifiedBundle(
            bundle=bundle,
            release=release,
            digest=sha256_digest(raw),
            expires=NOW + _dt.timedelta(days=1),
            metadata=b"{}",
            raw=raw,
        )


def kubectl(kubeconfig, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], check=check, capture_output=True, text=True
    )


def configmap(name: str, namespace: str, data=None, labels=None, annotations=None) -> dict:
    meta = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data or {"k": "v"})}


def deployment(name: str, namespace: str, image: str = "nginx:1.25", replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def run(coro, timeout: float = 90):
    """Run one test scenario, given up after ``timeout`` seconds (a hang fails instead of stalling the suite)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` from a thread of the test until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


async def poll(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def applied_ready(hub, app, bundles: Bundles, objects) -> bundle_pb2.SignedBundle:
    """Send a bundle of ``objects`` down the hub's watch and wait until the agent applied it Ready."""
    msg = bundles.signed_message(objects)
    await hub.send(hub_pb2.WatchBundlesResponse(bundle=msg))
    await app.wait_until(lambda a: a.last_result is not None and a.last_result.ready, 30)
    return msg
