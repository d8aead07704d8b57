"""Hub test fixtures: real Git repositories shaped like examples/fleet, the real Kustomize, a trust repository."""

from __future__ import annotations

import pytest

from skerry.hub.render.engine import KustomizeEngine

from .helpers import FLEET_FILES, GitRepo


@pytest.fixture
def fleet_repo(tmp_path) -> GitRepo:
    """A repository shaped like examples/fleet, one commit on main."""
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


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
