"""Agent fixtures: bundles released in a real trust repository, a Kubernetes client and a per-test namespace."""

from __future__ import annotations

import uuid

import pytest

from skerry.core.clock import FixedClock

from .helpers import NOW, Bundles, kubectl


@pytest.fixture
def bundles(tmp_path) -> Bundles:
    return Bundles(tmp_path)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def kube(kubeconfig):
    from skerry.agent.kube import KubeClient

    client = KubeClient.from_kubeconfig(kubeconfig)
    yield client
    client.close()


@pytest.fixture
def agent_namespace(kubeconfig) -> str:
    """A namespace name for the agent's own state (the inventory); the agent creates it."""
    name = f"agent-{uuid.uuid4().hex[:8]}"
    yield name
    kubectl(kubeconfig, "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def reconciler(kube, agent_namespace):
    from skerry.agent.reconcile.engine import Reconciler

    from .fakes import FakeUnsealer

    return Reconciler(kube, FakeUnsealer(), "skerry", agent_namespace, crd_wait_seconds=20)
