"""Shared fixtures: throwaway PKI, a dev trust repository, one real kube-apiserver + etcd (+ controller-manager)
per session (per pytest-xdist worker: scripts/test.sh runs two), and the one async test runner.

``async def`` tests run in a fresh event loop each (no pytest-asyncio here), bounded by
``ASYNC_TEST_TIMEOUT`` seconds so a hung test fails instead of waiting for pytest-timeout.

The API server comes from ``skerry.testing.envtest`` (``$KUBEBUILDER_ASSETS``, else a
cached build under ``~/.cache/skerry/envtest``, else it builds one). Set
``SKERRY_TEST_KUBECONFIG`` to run the cluster tests against a cluster of your
own instead. Each test gets its own namespace.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pathlib
import subprocess
import tempfile
import uuid

import pytest
from devtrust import DevTrust
from hub.helpers import FLEET_FILES, GitRepo

from skerry.core import logging as skerry_logging
from skerry.core import tls
from skerry.hub.render.engine import KustomizeEngine
from skerry.testing.envtest import LocalCluster

# The slowest async tests start a whole hub (Git, kustomize, gRPC over mTLS) on a loaded 2-core machine.
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


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Every test starts with logging as a fresh process has it: services and commands under test
    configure it (onto a captured stream, at their level), and that must not reach the next test."""
    skerry_logging.reset()
    yield
    skerry_logging.reset()


@pytest.fixture(scope="session")
def ca() -> tls.CertificateAuthority:
    return tls.CertificateAuthority.create("skerry-test-ca")


@pytest.fixture(scope="session")
def pki(ca, tmp_path_factory) -> Pki:
    return Pki(ca, tmp_path_factory.mktemp("pki"))


class Pki:
    """Issues mTLS identities on demand, written to files as the services expect."""

    def __init__(self, ca: tls.CertificateAuthority, directory: pathlib.Path):
        self.ca = ca
        self.dir = directory
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(ca.cert_pem)

    def files(self, name: str, role: str, *, server: bool = False) -> tls.TlsFiles:
        stem = f"{role.replace(':', '_')}-{name}"
        crt = self.dir / f"{stem}.crt"
        if not crt.exists():
            pair = self.ca.issue(name, role=role, server_names=("127.0.0.1", "localhost") if server else ())
            tls.write_keypair(self.dir, stem, pair)
        return tls.TlsFiles(ca=self.ca_file, cert=crt, key=self.dir / f"{stem}.key")

    def server(self, name: str, role: str) -> tls.TlsFiles:
        return self.files(name, role, server=True)

    def agent(self, cluster: str) -> tls.TlsFiles:
        return self.files(cluster, tls.ROLE_AGENT)

    def operator(self, user: str = "ops") -> tls.TlsFiles:
        return self.files(user, tls.ROLE_OPERATOR)


@pytest.fixture
def dev_trust(tmp_path) -> DevTrust:
    return DevTrust(tmp_path / "trust")


@pytest.fixture
def fleet_repo(tmp_path) -> GitRepo:
    """A real Git repository shaped like examples/fleet (``hub/helpers.py``), one commit on main."""
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


@pytest.fixture(scope="session")
def engine() -> KustomizeEngine:
    """The real kustomize binary (tests/hub overrides it with the engine the hub picks by default)."""
    return KustomizeEngine.detect()


@pytest.fixture
def fast_dir(tmp_path):
    """A tmpfs directory where there is one: for tests about files and bytes, not the disk's speed."""
    shm = pathlib.Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm) as d:
        yield pathlib.Path(d)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory) -> pathlib.Path:
    """Admin kubeconfig of the session's real API server."""
    own = os.environ.get("SKERRY_TEST_KUBECONFIG")
    if own:
        yield pathlib.Path(own)
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("envtest"))
    cluster.start()
    try:
        yield cluster.kubeconfig
    finally:
        cluster.stop()


@pytest.fixture
def namespace(kubeconfig, request) -> str:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "namespace", name], check=True, capture_output=True)
    yield name
    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "delete", "namespace", name, "--wait=false"],
        capture_output=True,
    )
