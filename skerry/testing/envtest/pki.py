"""The control plane's throwaway PKI and the kubeconfigs that carry its client certificates.

Certificates come from :class:`skerry.core.tls.CertificateAuthority` (ECDSA P-256), the same code that
makes Skerry's own mTLS identities; Kubernetes reads the subject's CN as the user and each O as a group.
Files under ``<workdir>/pki``: ``ca.crt``, ``ca.key``, ``apiserver.*``, ``admin.*`` (system:masters),
``controller-manager.*`` and ``sa.key``/``sa.pub`` (the service-account token signing key and its
public half). Keys are written 0600.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import pathlib
import re
from collections.abc import Sequence

from skerry.core import tls
from skerry.core.files import atomic_write
from skerry.testing.envtest.errors import EnvtestError

CA_NAME = "skerry-envtest-ca"
ADMIN_USER = "skerry-admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
MASTERS = "system:masters"
# Names a client may use for the API server (kubectl, in-cluster style names, loopback).
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# A cluster lives for a test session or a demo; a year outlasts any of them.
CERT_DAYS = 365


class ClusterPki:
    """Issues and writes the control plane's certificates under ``directory``."""

    def __init__(self, directory: pathlib.Path):
        self.dir = directory
        self._ca: tls.CertificateAuthority | None = None

    @property
    def ca_file(self) -> pathlib.Path:
        return self.dir / "ca.crt"

    @property
    def service_account_key_file(self) -> pathlib.Path:
        return self.dir / "sa.key"

    def cert(self, stem: str) -> pathlib.Path:
        return self.dir / f"{stem}.crt"

    def key(self, stem: str) -> pathlib.Path:
        return self.dir / f"{stem}.key"

    def pair(self, stem: str) -> tls.KeyPair:
        return tls.KeyPair(self.cert(stem).read_bytes(), self.key(stem).read_bytes())

    def write(self, service_ip: str) -> None:
        """Make a fresh CA and every certificate the control plane needs."""
        self._ca = ca = tls.CertificateAuthority.create(CA_NAME, days=CERT_DAYS)
        self._write("ca", tls.KeyPair(ca.cert_pem, ca.key_pem))
        self._write(
            "apiserver",
            ca.issue(
                "kube-apiserver",
                server_names=(*APISERVER_DNS_NAMES, "127.0.0.1", "::1", service_ip),
                client=False,
                days=CERT_DAYS,
            ),
        )
        self._write("admin", self.issue_user(ADMIN_USER, [MASTERS]))
        # With --use-service-account-credentials=false every controller acts as this identity, so it
        # needs more than the bootstrap system:kube-controller-manager role grants.
        self._write("controller-manager", self.issue_user(CONTROLLER_MANAGER_USER, [MASTERS]))
        sa_key = tls.generate_key_pem()
        atomic_write(self.service_account_key_file, sa_key, 0o600, durable=False)
        atomic_write(self.dir / "sa.pub", tls.public_key_pem(sa_key), 0o644, durable=False)

    def issue_user(self, name: str, groups: Sequence[str] = ()) -> tls.KeyPair:
        """A client certificate for user ``name`` in ``groups``."""
        if self._ca is None:
            raise EnvtestError("cluster not started (no CA yet): call start() first")
        return self._ca.issue(name, groups=groups, days=CERT_DAYS)

    def _write(self, stem: str, pair: tls.KeyPair) -> None:
        atomic_write(self.cert(stem), pair.cert_pem, 0o644, durable=False)
        atomic_write(self.key(stem), pair.key_pem, 0o600, durable=False)


def service_ip(cluster_ip_range: str) -> str:
    """The ``kubernetes`` Service's address: the first host of the service range."""
    return str(next(ipaddress.ip_network(cluster_ip_range).hosts()))


def write_kubeconfig(
    path: pathlib.Path, *, server: str, ca_pem: bytes, user: str, pair: tls.KeyPair
) -> pathlib.Path:
    """A one-context kubeconfig (JSON, which every YAML reader accepts) for a client-certificate user."""

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [
            {"name": user, "user": {"client-certificate-data": b64(pair.cert_pem), "client-key-data": b64(pair.key_pem)}}
        ],
        "contexts": [{"name": f"{user}@envtest", "context": {"cluster": "envtest", "user": user}}],
        "current-context": f"{user}@envtest",
        "preferences": {},
    }
    atomic_write(path, (json.dumps(config, indent=2) + "\n").encode(), 0o600, durable=False)
    return path


def user_file_stem(name: str, groups: Sequence[str]) -> str:
    """A file-name-safe stem for a user's kubeconfig."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "user"
    if groups:
        safe += "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", "+".join(groups))
    return safe
