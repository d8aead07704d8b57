"""Transport test fixtures: a fleet repository and the real kustomize (the hubs they feed are in hubs.py)."""

from __future__ import annotations

import pytest
from hub.helpers import FLEET_FILES, GitRepo  # tests/hub/helpers.py

from skerry.hub.render.engine import KustomizeEngine


@pytest.fixture
def fleet_repo(tmp_path) -> GitRepo:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


@pytest.fixture(scope="session")
def engine() -> KustomizeEngine:
    return KustomizeEngine.detect()
