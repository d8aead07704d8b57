"""Hub test fixtures: real Git repositories shaped like examples/fleet, the real Kustomize, a trust repository.

``async def`` tests run in a fresh event loop each (no pytest-asyncio here),
bounded by ``ASYNC_TEST_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

from skerry.hub.render.engine import KustomizeEngine

from .helpers import FLEET_FILES, GitRepo

ASYNC_TEST_TIMEOUT = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

        async def bounded():
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT)

        asyncio.run(bounded())
        return True
    return None


@pytest.fixture
def fleet_repo(tmp_path) -> GitRepo:
    """A repository shaped like examples/fleet, one commit on main."""
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


@pytest.fixture(scope="session")
def engine():
    """The engine the hub picks by default (in-process kustomize if installed, else the binary)."""
    from skerry.hub.render.detect import detect_engine

    return detect_engine()


@pytest.fixture(scope="session")
def binary_engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


@pytest.fixture
def director(dev_trust):
    """The hub's trust repository (dev: it holds every release key, so each bundle is released at once)."""
    return dev_trust.repository()
