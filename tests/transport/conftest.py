"""Transport test fixtures: a real hub (HubApp with Git + kustomize) or a bare store+servicer over real mTLS.

``async def`` tests run in a fresh event loop each, bounded by ``ASYNC_TEST_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import pathlib

import pytest
from devtrust import DevTrust
from hub.helpers import FLEET_FILES, GitRepo  # tests/hub/helpers.py

from skerry.hub.render.engine import KustomizeEngine

ASYNC_TEST_TIMEOUT = 90.0


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
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


@pytest.fixture(scope="session")
def engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


@contextlib.asynccontextmanager
async def running_hub(repo, state_dir, pki, engine, **config):
    from skerry.core.tls import ROLE_HUB
    from skerry.hub.app import HubApp
    from skerry.hub.config import HubConfig

    trust = DevTrust(pathlib.Path(state_dir).parent / "trust")  # kept across a restart of the hub
    cfg = HubConfig(
        trust_dir=trust.dir,
        release_keys=trust.release_keys,
        repo=str(repo.path),
        interval=3600,
        tls=pki.server("hub", ROLE_HUB),
        state_dir=state_dir,
        listen="127.0.0.1:0",
        enroll_listen="127.0.0.1:0",
        **config,
    )
    app = HubApp(cfg, engine=engine)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=0)
