"""Every key, CA, certificate and trust file an installation needs, and the objects that carry them.

Two CAs, kept apart on purpose:

* the *installation CA* signs the hub's and the sealer's server certificates. Its key is offline
  (``<out-dir>/installation-ca.key``, 0600): it is needed again only to re-issue those two
  certificates, and a hub that is broken into cannot mint a sealer certificate with it.
* the *enrollment CA* is the hub's own (``skerry.hub.enrollment.authority``): it issues agent and
  operator client certificates, so its key is online and goes to the hub in ``skerry-hub-seed``.

Objects (namespace ``skerry-system`` unless told otherwise)::

    Secret skerry-hub-tls      ca.crt (installation CA), tls.crt, tls.key   O=skerry:hub
    Secret skerry-sealer-tls   ca.crt (installation CA + enrollment CA: agents unseal, the hub is
                               verified), tls.crt, tls.key   O=skerry:sealer, serverAuth + clientAuth
    Secret skerry-hub-seed     enrollment-ca.crt/.key, token.key, trust.tar.gz  (skerry.hub.seed)
    Secret skerry-hub-dashboard-token   token: opens the read-only dashboard (kubectl get secret ...)
    ConfigMap skerry-hub-trust root.json (the TUF root agents and the sealer start from), hub-ca.crt

Hub replicas (``deploy/overlays/ha``) share one copy of the seed's keys instead of each unpacking it::

    Secret skerry-hub-enrollment     ca.crt, ca.key (the enrollment CA), token.key
    Secret skerry-hub-trust-online   root.json, config.json, <role>.key and <role>.key.pub.json of the
                                     online roles (the trust directory's keys/; offline keys are not in it)

The TUF repository is made by ``skerry keys init``'s code with its offline keys (root, targets,
release-<env>) written under ``<out-dir>/offline`` and never put in a Secret.
"""

from __future__ import annotations

import base64
import dataclasses
import pathlib
import secrets
import tempfile
from collections.abc import Mapping, Sequence

from skerry.core.errors import ConfigError
from skerry.core.files import atomic_write, ensure_dir
from skerry.core.tls import ROLE_HUB, ROLE_SEALER, CertificateAuthority, KeyPair
from skerry.hub.enrollment.authority import CA_LIFETIME_DAYS, CA_NAME
from skerry.hub.seed import CA_CERT, CA_KEY, TOKEN_KEY, TRUST_ARCHIVE, pack_trust, unpack_trust
from skerry.hub.trust import admin

NAMESPACE = "skerry-system"
HUB_TLS, SEALER_TLS, SEED, TRUST = "skerry-hub-tls", "skerry-sealer-tls", "skerry-hub-seed", "skerry-hub-trust"
DASHBOARD_TOKEN = "skerry-hub-dashboard-token"
ENROLLMENT, TRUST_ONLINE = "skerry-hub-enrollment", "skerry-hub-trust-online"
# The trust directory's files the replicas need (the overlay's keys init container installs them).
TRUST_ONLINE_FILES = ("root.json", "config.json")
TRUST_KEY_SUFFIXES = (".key", ".key.pub.json")
# Every object install makes from keys (read back on a second run): kind, name.
MADE = (("Secret", SEED), ("Secret", HUB_TLS), ("Secret", SEALER_TLS), ("Secret", DASHBOARD_TOKEN),
        ("ConfigMap", TRUST))
INSTALLATION_CA_NAME = "skerry-installation-ca"
# The installation CA outlives many server certificates; the server certificates are re-issued by a
# re-run of `skerry install` (with the offline CA key) well before a year is over.
INSTALLATION_CA_DAYS = 3650
SERVER_CERT_DAYS = 365
TOKEN_KEY_BYTES = 32
# The dashboard's bearer token (besides operator certificates): 32 random bytes, hex.
DASHBOARD_TOKEN_BYTES = 32
LABELS = {"app.kubernetes.io/part-of": "skerry", "app.kubernetes.io/managed-by": "skerry-install"}


def service_names(service: str, namespace: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The names a Service is reached by inside the cluster, then the ones given (external)."""
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local", *extra)


@dataclasses.dataclass(frozen=True)
class OfflineDir:
    """What stays with the person who installs: offline keys (0600) and public files to hand out."""

    path: pathlib.Path

    @property
    def ca_cert(self) -> pathlib.Path:
        return self.path / "installation-ca.crt"

    @property
    def ca_key(self) -> pathlib.Path:
        return self.path / "installation-ca.key"

    @property
    def keys(self) -> pathlib.Path:
        return self.path / "offline"

    def installation_ca(self) -> CertificateAuthority | None:
        if not self.ca_key.exists():
            return None
        return CertificateAuthority.load(self.ca_cert.read_bytes(), self.ca_key.read_bytes())

    def new_installation_ca(self) -> CertificateAuthority:
        if self.ca_key.exists() or any(self.keys.glob("*.key")):
            raise ConfigError(f"{self.path} already holds offline keys of another installation, but the cluster "
                              "has no skerry-hub-seed Secret: give another --out-dir (or restore the Secret)")
        ensure_dir(self.path)
        ca = CertificateAuthority.create(INSTALLATION_CA_NAME, days=INSTALLATION_CA_DAYS)
        atomic_write(self.ca_key, ca.key_pem, 0o600)
        atomic_write(self.ca_cert, ca.cert_pem, 0o644)
        return ca

    def write_public(self, material: Material) -> None:
        """``root.json`` and ``hub-ca.crt``: what operators (``skerry login --tls-ca``) and CI need."""
        ensure_dir(self.path)
        atomic_write(self.path / "root.json", material.root_json, 0o644)
        atomic_write(self.path / "hub-ca.crt", material.ca_cert, 0o644)


@dataclasses.dataclass(frozen=True)
class Material:
    ca_cert: bytes  # the installation CA's certificate
    hub_tls: KeyPair
    sealer_tls: KeyPair
    enrollment_ca: KeyPair
    token_key: bytes
    trust_archive: bytes
    root_json: bytes
    dashboard_token: bytes

    def objects(self, namespace: str = NAMESPACE) -> list[dict]:
        sealer_ca = self.ca_cert + self.enrollment_ca.cert_pem
        return [
            secret(HUB_TLS, namespace, {"ca.crt": self.ca_cert, "tls.crt": self.hub_tls.cert_pem,
                                        "tls.key": self.hub_tls.key_pem}),
            secret(SEALER_TLS, namespace, {"ca.crt": sealer_ca, "tls.crt": self.sealer_tls.cert_pem,
                                           "tls.key": self.sealer_tls.key_pem}),
            secret(SEED, namespace, {CA_CERT: self.enrollment_ca.cert_pem, CA_KEY: self.enrollment_ca.key_pem,
                                     TOKEN_KEY: self.token_key, TRUST_ARCHIVE: self.trust_archive}),
            secret(DASHBOARD_TOKEN, namespace, {"token": self.dashboard_token}),
            trust_configmap(namespace, self.root_json, self.ca_cert),
        ]


    def replica_objects(self, namespace: str = NAMESPACE) -> list[dict]:
        """The Secrets every hub replica of ``deploy/overlays/ha`` mounts, from the same keys as the seed."""
        return [
            secret(ENROLLMENT, namespace, {"ca.crt": self.enrollment_ca.cert_pem, "ca.key": self.enrollment_ca.key_pem,
                                           "token.key": self.token_key}),
            secret(TRUST_ONLINE, namespace, online_trust_files(self.trust_archive)),
        ]


def online_trust_files(archive: bytes) -> dict[str, bytes]:
    """``root.json``, ``config.json`` and the online keys of a packed trust directory, by file name."""
    with tempfile.TemporaryDirectory(prefix="skerry-install-") as tmp:
        trust = pathlib.Path(tmp) / "trust"
        unpack_trust(archive, trust)
        files = {name: (trust / name).read_bytes() for name in TRUST_ONLINE_FILES if (trust / name).is_file()}
        missing = [name for name in TRUST_ONLINE_FILES if name not in files]
        if missing:
            raise ConfigError(f"Secret {SEED} {TRUST_ARCHIVE} lacks {', '.join(missing)}: restore it from a backup")
        keys = trust / "keys"
        for path in sorted(keys.iterdir()) if keys.is_dir() else ():
            if path.is_file() and path.name.endswith(TRUST_KEY_SUFFIXES):
                files[path.name] = path.read_bytes()
        return files


def trust_configmap(namespace: str, root_json: bytes, ca_cert: bytes) -> dict:
    return configmap(TRUST, namespace, {"root.json": root_json.decode(), "hub-ca.crt": ca_cert.decode()})


def _server_pairs(ca: CertificateAuthority, namespace: str, hub_names: Sequence[str],
                  sealer_names: Sequence[str]) -> tuple[KeyPair, KeyPair]:
    hub = ca.issue("skerry-hub", role=ROLE_HUB, server_names=service_names("skerry-hub", namespace, hub_names),
                   days=SERVER_CERT_DAYS)
    sealer = ca.issue("skerry-sealer", role=ROLE_SEALER, days=SERVER_CERT_DAYS,
                      server_names=service_names("skerry-sealer", namespace, sealer_names))
    return hub, sealer


def create(offline: OfflineDir, environments: Mapping[str, tuple[int, int]], *, namespace: str = NAMESPACE,
           hub_names: Sequence[str] = (), sealer_names: Sequence[str] = ()) -> Material:
    """A new installation: both CAs, both server certificates, the token key and a TUF repository."""
    ca = offline.new_installation_ca()
    with tempfile.TemporaryDirectory(prefix="skerry-install-") as tmp:
        trust = pathlib.Path(tmp) / "trust"
        admin.init(trust, environments, offline_dir=offline.keys)
        archive, root = pack_trust(trust), (trust / "root.json").read_bytes()
    enrollment = CertificateAuthority.create(CA_NAME, days=CA_LIFETIME_DAYS)
    hub, sealer = _server_pairs(ca, namespace, hub_names, sealer_names)
    return Material(ca.cert_pem, hub, sealer, KeyPair(enrollment.cert_pem, enrollment.key_pem),
                    secrets.token_bytes(TOKEN_KEY_BYTES), archive, root, _dashboard_token())


def recover(existing: Mapping[str, dict], offline: OfflineDir, *, namespace: str = NAMESPACE,
            hub_names: Sequence[str] = (), sealer_names: Sequence[str] = ()) -> Material | None:
    """The material of an earlier install, from its live objects (``None`` if there was none).

    A server certificate Secret that was deleted is issued again, which needs the offline
    installation CA key; every other key comes back exactly as it was.
    """
    seed = existing.get(SEED)
    if seed is None:
        return None
    seed_data = secret_data(seed)
    missing = [k for k in (CA_CERT, CA_KEY, TOKEN_KEY, TRUST_ARCHIVE) if k not in seed_data]
    if missing:
        raise ConfigError(f"Secret {namespace}/{SEED} lacks {', '.join(missing)}: restore it from a backup")
    pairs: dict[str, KeyPair] = {}
    for name in (HUB_TLS, SEALER_TLS):
        if name in existing:
            data = secret_data(existing[name])
            pairs[name] = KeyPair(data.get("tls.crt", b""), data.get("tls.key", b""))
    ca = offline.installation_ca()
    if len(pairs) < 2:
        if ca is None:
            raise ConfigError(f"{' and '.join(n for n in (HUB_TLS, SEALER_TLS) if n not in pairs)} must be issued "
                              f"again, which needs the installation CA key {offline.ca_key}: give --out-dir")
        hub, sealer = _server_pairs(ca, namespace, hub_names, sealer_names)
        pairs.setdefault(HUB_TLS, hub)
        pairs.setdefault(SEALER_TLS, sealer)
    # The installation CA certificate alone: skerry-hub-tls's ca.crt, else the offline copy.
    ca_cert = secret_data(existing[HUB_TLS]).get("ca.crt", b"") if HUB_TLS in existing else ca.cert_pem
    trust = existing.get(TRUST)
    root = ((trust.get("data") or {}).get("root.json", "").encode() if trust is not None else b"") \
        or _root_of(seed_data[TRUST_ARCHIVE])  # a root rotated since the install is kept
    return Material(ca_cert, pairs[HUB_TLS], pairs[SEALER_TLS], KeyPair(seed_data[CA_CERT], seed_data[CA_KEY]),
                    seed_data[TOKEN_KEY], seed_data[TRUST_ARCHIVE], root,
                    secret_data(existing[DASHBOARD_TOKEN]).get("token", b"") if DASHBOARD_TOKEN in existing
                    else _dashboard_token())


def _dashboard_token() -> bytes:
    return secrets.token_hex(DASHBOARD_TOKEN_BYTES).encode()


def _root_of(archive: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="skerry-install-") as tmp:
        unpack_trust(archive, pathlib.Path(tmp) / "trust")
        return (pathlib.Path(tmp) / "trust" / "root.json").read_bytes()


def secret(name: str, namespace: str, data: Mapping[str, bytes]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def configmap(name: str, namespace: str, data: Mapping[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)}, "data": dict(data)}


def secret_data(obj: Mapping) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
