"""Agent fixtures: bundles released in a real trust repository, a Kubernetes client and a per-test namespace."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid

import pytest

from skerry.agent.app import AgentApp
from skerry.agent.config import AgentConfig
from skerry.core.clock import FixedClock

from .fakes import FakeHub, FakeUnsealer
from .helpers import CLUSTER, ENVIRONMENT, NOW, Bundles, kubectl

_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(AgentConfig))


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


@pytest.fixture
def make_app(pki, bundles, tmp_path, kubeconfig, agent_namespace, clock):
    """``make_app(hub_address, **options)``: an ``AgentApp`` of the test cluster (several hubs: comma-separated).

    Options naming an ``AgentConfig`` field set it (default: the trust root of ``bundles``, state and ready
    file under ``tmp_path``); the others go to ``AgentApp`` (default: a ``FakeUnsealer`` and the test's clock).
    """
    files = pki.agent(CLUSTER)

    def make(hub_address: str, **options) -> AgentApp:
        settings = {name: options.pop(name) for name in list(options) if name in _CONFIG_FIELDS}
        config = AgentConfig(**{
            "cluster": CLUSTER, "hub_address": hub_address, "tls_ca": files.ca, "tls_cert": files.cert,
            "tls_key": files.key, "trust_root": bundles.root, "environment": ENVIRONMENT,
            "kubeconfig": kubeconfig, "state_dir": tmp_path / "state", "namespace": agent_namespace,
            "ready_file": tmp_path / "ready.json", **settings,
        })
        return AgentApp(config, **{"unsealer": FakeUnsealer(), "clock": clock, **options})

    return make


@pytest.fixture
def running_app(make_app):
    """``async with running_app(hub_address, **options) as app``: a started agent (``make_app``), stopped after."""

    @contextlib.asynccontextmanager
    async def running(hub_address: str, **options):
        app = make_app(hub_address, **options)
        await app.start()
        try:
            yield app
        finally:
            await app.stop()

    return running


@pytest.fixture
def agent_on_hub(pki, bundles, running_app):
    """``async with agent_on_hub(**options) as (hub, app)``: a ``FakeHub`` serving the trust repository of
    ``bundles`` (this test's unless ``trust=`` names others, whose root the agent then trusts) and an agent
    started on it (``make_app`` options); the agent and then the hub are stopped after."""

    @contextlib.asynccontextmanager
    async def running(*, trust: Bundles | None = None, **options):
        trust = trust or bundles
        options.setdefault("trust_root", trust.root)
        hub = await FakeHub(pki, trust=trust.world).start()
        try:
            async with running_app(hub.address, **options) as app:
                yield hub, app
        finally:
            await hub.stop()

    return running
