"""Hub test fixtures: real Git repositories shaped like examples/fleet, the real Kustomize, a trust repository."""

from __future__ import annotations

import pytest

from skerry.hub.render.engine import KustomizeEngine


@pytest.fixture(scope="session")
def engine():
    """The engine the hub picks by default (in-process kustomize in its worker process if installed, else
    the binary)."""
    from skerry.hub.render.detect import detect_engine

    engine = detect_engine()
    yield engine
    if hasattr(engine, "close"):
        engine.close()


@pytest.fixture(scope="session")
def binary_engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


@pytest.fixture
def director(dev_trust):
    """The hub's trust repository (dev: it holds every release key, so each bundle is released at once)."""
    return dev_trust.repository()
