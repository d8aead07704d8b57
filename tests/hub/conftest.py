"""Hub test fixtures: real Git repositories shaped like examples/fleet, the real Kustomize, keys."""

from __future__ import annotations

import pathlib

import pytest

from skerry.core.bundle import generate_signing_key
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
    """The engine the hub picks by default (in-process kustomize if installed, else the binary)."""
    from skerry.hub.render.detect import detect_engine

    return detect_engine()


@pytest.fixture(scope="session")
def binary_engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


@pytest.fixture
def signing_key(tmp_path) -> pathlib.Path:
    path = tmp_path / "keys" / "signing.key"
    generate_signing_key(path)
    return path


@pytest.fixture
def signer(signing_key):
    from skerry.core.bundle import load_signer

    return load_signer(signing_key)


@pytest.fixture
def trusted_keys(signing_key):
    from skerry.core.bundle import load_public_key

    key = load_public_key(pathlib.Path(f"{signing_key}.pub"))
    return {key.keyid: key}
