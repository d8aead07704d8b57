"""Shared fixtures: one RSA-4096 sealing key per session, a throwaway CA, a live sealer.

RSA-4096 generation takes about a second, so the key directory is made once
and copied for every test that needs its own registry.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from skerry.core import logging as skerry_logging
from skerry.core import tls
from skerry.sealer.keys import KeyRegistry

from .helpers import LogCapture, Pki, ServerThread, sealer_config


@pytest.fixture(scope="session")
def pristine_keys_dir(tmp_path_factory) -> pathlib.Path:
    """A keys directory holding one freshly generated RSA-4096 key in the default domain."""
    path = tmp_path_factory.mktemp("sealer-keys") / "keys"
    KeyRegistry.from_directory(path).open()
    return path


@pytest.fixture
def keys_dir(pristine_keys_dir, tmp_path) -> pathlib.Path:
    """A private copy of the session key directory (permissions preserved)."""
    path = tmp_path / "keys"
    shutil.copytree(pristine_keys_dir, path)
    return path


@pytest.fixture
def registry(keys_dir) -> KeyRegistry:
    # Extra keys made by tests are 2048-bit to keep the suite fast; the default is 4096.
    reg = KeyRegistry.from_directory(keys_dir, key_bits=2048)
    reg.open()
    return reg


@pytest.fixture(scope="session")
def shared_registry(pristine_keys_dir) -> KeyRegistry:
    """A read-only registry over the session key (loading an RSA-4096 key costs ~0.3 s)."""
    reg = KeyRegistry.from_directory(pristine_keys_dir)
    reg.open()
    return reg


@pytest.fixture(scope="session")
def sealing_key(shared_registry):
    return shared_registry.sealing_key()


@pytest.fixture(scope="session")
def mtls(tmp_path_factory) -> Pki:
    root = tmp_path_factory.mktemp("mtls")
    ca = tls.CertificateAuthority.create("skerry-test-ca")
    (root / "ca.crt").write_bytes(ca.cert_pem)

    def files(stem: str, pair: tls.KeyPair, ca_pem: bytes = ca.cert_pem) -> tls.TlsFiles:
        crt, key = tls.write_keypair(root, stem, pair)
        ca_path = root / f"{stem}-ca.crt"
        ca_path.write_bytes(ca_pem)
        return tls.TlsFiles(ca=ca_path, cert=crt, key=key)

    other = tls.CertificateAuthority.create("some-other-ca")
    return Pki(
        ca=ca,
        sealer=files(
            "sealer", ca.issue("sealer", role=tls.ROLE_SEALER, server_names=("127.0.0.1", "localhost"))
        ),
        agent=files("agent", ca.issue("cluster-a", role=tls.ROLE_AGENT)),
        operator=files("operator", ca.issue("alice", role=tls.ROLE_OPERATOR)),
        # Trusts our CA (so the handshake fails only on the client side being foreign).
        foreign=files("foreign", other.issue("mallory", role=tls.ROLE_AGENT)),
    )


@pytest.fixture
def logs():
    """Every structlog line as JSON, at debug level, for the duration of the test."""
    capture = LogCapture()
    skerry_logging.configure("debug", json_output=True, stream=capture.stream)
    return capture  # tests/conftest.py puts logging back after the test


@pytest.fixture(scope="module")
def sealer(mtls, pristine_keys_dir, tmp_path_factory):
    """A live sealer over mutual TLS, shared by a test module."""
    keys = tmp_path_factory.mktemp("live-sealer") / "keys"
    shutil.copytree(pristine_keys_dir, keys)
    ready = keys.parent / "ready.json"
    with ServerThread(sealer_config(mtls, keys, ready_file=ready)) as server:
        yield server
