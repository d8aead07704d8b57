"""Interoperability: independent implementations of the Bitnami format agree with the sealer.

``bitnami_reference`` is a separate Python implementation; ``bitnami_go`` is
a stdlib-only Go program mirroring upstream's HybridEncrypt/HybridDecrypt.
"""

from __future__ import annotations

import base64
import os
import pathlib
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from skerry.core.errors import SealError
from skerry.core.sealedsecret import CLUSTER_WIDE, NAMESPACE_WIDE, STRICT, encryption_label
from skerry.sealer import crypto

from .bitnami_reference import reference_open, reference_seal

LABELS = [
    encryption_label("apps", "db", STRICT),
    encryption_label("apps", "db", NAMESPACE_WIDE),
    encryption_label("", "", CLUSTER_WIDE),
]
VALUE = "pässwörd \U0001f510 with spaces\n".encode()


@pytest.mark.parametrize("label", LABELS, ids=["strict", "namespace-wide", "cluster-wide"])
def test_reference_sealed_values_unseal_in_the_registry(shared_registry, label):
    key = shared_registry.sealing_key()
    item = reference_seal(key.public_key, VALUE, label)
    plaintext, key_id = shared_registry.unseal("default", item, label)
    assert plaintext == VALUE
    assert key_id == key.key_id


@pytest.mark.parametrize("label", LABELS, ids=["strict", "namespace-wide", "cluster-wide"])
def test_sealer_sealed_values_open_with_the_reference(sealing_key, label):
    item = crypto.hybrid_encrypt(sealing_key.public_key, VALUE, label)
    assert reference_open(sealing_key.private_key, item, label) == VALUE


def test_reference_sealed_value_for_another_name_is_refused(shared_registry):
    item = reference_seal(shared_registry.sealing_key().public_key, VALUE, b"apps/db")
    with pytest.raises(SealError):
        shared_registry.unseal("default", item, b"apps/other")


GO_SOURCE = pathlib.Path(__file__).with_name("bitnami_go") / "main.go"


@pytest.fixture(scope="module")
def go_bitnami(tmp_path_factory) -> pathlib.Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH (install golang-go) - the Go interoperability check needs it")
    work = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    binary = work / "bitnami"
    proc = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"go build failed:\n{proc.stderr}"
    return binary


@pytest.mark.parametrize("label", LABELS, ids=["strict", "namespace-wide", "cluster-wide"])
def test_go_sealed_values_unseal_in_the_registry(go_bitnami, shared_registry, tmp_path, label):
    key = shared_registry.sealing_key()
    cert = tmp_path / "sealer.crt"
    cert.write_bytes(key.cert_pem)
    proc = subprocess.run(
        [str(go_bitnami), "seal", str(cert), label.decode()], input=VALUE, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    plaintext, _ = shared_registry.unseal("default", crypto.decode_item(proc.stdout.decode()), label)
    assert plaintext == VALUE


def test_sealer_sealed_values_open_in_go(go_bitnami, sealing_key, tmp_path):
    key_file = tmp_path / "sealer.key"
    key_file.write_bytes(
        sealing_key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    sealed = crypto.seal_value(sealing_key.public_key, VALUE, b"apps/db")
    proc = subprocess.run(
        [str(go_bitnami), "open", str(key_file), "apps/db"],
        input=sealed.encode(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == VALUE
    wrong = subprocess.run(
        [str(go_bitnami), "open", str(key_file), "apps/other"],
        input=sealed.encode(),
        capture_output=True,
        timeout=60,
    )
    assert wrong.returncode != 0


def test_go_and_python_agree_on_standard_base64(go_bitnami, sealing_key, tmp_path):
    cert = tmp_path / "sealer.crt"
    cert.write_bytes(sealing_key.cert_pem)
    out = subprocess.run(
        [str(go_bitnami), "seal", str(cert), ""], input=b"", capture_output=True, timeout=60
    ).stdout.decode()
    assert base64.b64encode(base64.b64decode(out, validate=True)).decode() == out
