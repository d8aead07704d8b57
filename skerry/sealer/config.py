"""The sealer's settings, and the only place that reads its environment.

Every setting has a safe default (loopback listener, mutual TLS always on,
one ``default`` key domain) and an ``SKERRY_SEALER_*`` variable; command-line
flags arrive as ``overrides`` and win over the environment. There is no
plaintext mode: a sealer without TLS files does not start.

    SKERRY_SEALER_LISTEN         host:port              127.0.0.1:7443
    SKERRY_SEALER_TLS_CA         CA bundle that signs clients (PEM)
    SKERRY_SEALER_TLS_CERT       the sealer's server certificate (PEM)
    SKERRY_SEALER_TLS_KEY        its private key (PEM)
    SKERRY_SEALER_KEYS_DIR       sealing keys directory  /var/lib/skerry/sealer/keys
    SKERRY_SEALER_DOMAINS        comma-separated key domains to serve   default
    SKERRY_SEALER_READY_FILE     write {"port": N} here once serving
    SKERRY_SEALER_METRICS_LISTEN plaintext /metrics, /healthz, /readyz HOST:PORT (default off)
    SKERRY_SEALER_LOG_LEVEL      debug|info|warning|error   info
    SKERRY_SEALER_GRACE_SECONDS  drain time on SIGTERM      10
    SKERRY_SEALER_TRUST_ROOT     the hub TUF repository's root.json; when set, agents unseal only
                                 SealedSecrets of a bundle the director and release roles agreed
                                 on for their own cluster (verified here again)
    SKERRY_SEALER_TRUST_STATE_DIR  per-cluster trusted TUF metadata and release counters
                                 default: <keys dir>/../tuf-state
    SKERRY_SEALER_CLUSTER_DOMAINS  YAML/JSON file {clusters: {<cluster>|"*": [domains]}}
                                 (default: every cluster may use the "default" domain only)
    SKERRY_SEALER_KEK_FILE       key-encryption key file (exactly 32 raw bytes): keys encrypted at rest
    SKERRY_SEALER_KEK            the same as base64 of 32 bytes (the file wins when both are set)
    SKERRY_SEALER_RENEWAL_DAYS   add a new sealing key when the newest is this old   30 (0: never)
    SKERRY_SEALER_KEYS_REFRESH_SECONDS  re-read storage and check renewal this often   60
    SKERRY_SEALER_RATE_PER_SECOND  sustained RSA decryptions per agent identity   50
    SKERRY_SEALER_RATE_BURST     decryptions an agent may spend at once   2000
    SKERRY_SEALER_CERT_LISTEN    host:port of a plain-HTTP endpoint serving only the public
                                 certificate at /v1/cert.pem[?domain=D] (kubeseal --cert URL); off by default
    SKERRY_SEALER_HUB            HOST:PORT of the hub API: the sealer follows its revocation list
                                 (EnrollmentService.WatchRevocations, mTLS with the sealer's own
                                 certificate, which needs clientAuth and role skerry:sealer) and refuses
                                 revoked agent certificates on every RPC; the last list received is kept
                                 in <keys dir>/../revocations.json for a restart while the hub is down
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from skerry.core import config
from skerry.core.errors import ConfigError
from skerry.core.tlsfiles import TlsFiles
from skerry.sealer.keys import load_kek

ENV_PREFIX = "SKERRY_SEALER_"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass(frozen=True)
class SealerConfig:
    listen: str = "127.0.0.1:7443"
    tls_ca: pathlib.Path | None = None
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    keys_dir: pathlib.Path = pathlib.Path("/var/lib/skerry/sealer/keys")
    domains: tuple[str, ...] = ("default",)
    ready_file: pathlib.Path | None = None
    log_level: str = "info"
    grace_seconds: float = 10.0
    metrics_listen: str = ""  # "": no metrics server
    trust_root: pathlib.Path | None = None
    trust_state_dir: pathlib.Path | None = None  # None: <keys_dir>/../tuf-state
    cluster_domains: pathlib.Path | None = None
    kek_file: pathlib.Path | None = None
    kek: str | None = dataclasses.field(default=None, repr=False)
    renewal_days: float = 30.0
    keys_refresh_seconds: float = 60.0
    rate_per_second: float = 50.0
    rate_burst: float = 2000.0
    cert_listen: str | None = None
    # The hub API (HOST:PORT) whose revocation list the sealer follows. None: no revocations are known.
    hub: str | None = None

    @property
    def revocations_file(self) -> pathlib.Path:
        """The last revocation list received from the hub (beside the keys, on the same volume)."""
        return self.keys_dir.parent / "revocations.json"

    @property
    def tuf_state_dir(self) -> pathlib.Path:
        return self.trust_state_dir if self.trust_state_dir is not None else self.keys_dir.parent / "tuf-state"

    def key_encryption_key(self) -> bytes | None:
        if self.kek_file is not None:
            return load_kek(path=self.kek_file)
        if self.kek:
            return load_kek(base64_text=self.kek)
        return None

    @property
    def tls_files(self) -> TlsFiles:
        missing = [n for n in ("tls_ca", "tls_cert", "tls_key") if getattr(self, n) is None]
        if missing:
            names = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise ConfigError(f"the sealer only serves mutual TLS; set {names} (or the matching flags)")
        return TlsFiles(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)  # type: ignore[arg-type]

    def validate(self) -> SealerConfig:
        self.tls_files  # noqa: B018 - raises if incomplete
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"listen address {self.listen!r} must be HOST:PORT")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r} must be one of {', '.join(LOG_LEVELS)}")
        if not self.domains:
            raise ConfigError("the sealer needs at least one key domain")
        if self.grace_seconds < 0:
            raise ConfigError("grace seconds must not be negative")
        if self.renewal_days < 0:
            raise ConfigError("renewal days must not be negative (0 disables renewal)")
        if self.keys_refresh_seconds <= 0:
            raise ConfigError("keys refresh seconds must be positive")
        if self.rate_per_second <= 0 or self.rate_burst < 1:
            raise ConfigError("unseal rate limits must be positive (rate > 0, burst >= 1)")
        if self.hub is not None:
            h, sep, prt = self.hub.rpartition(":")
            if not sep or not h or not prt.isdigit() or int(prt) > 65535:
                raise ConfigError(f"hub address {self.hub!r} must be HOST:PORT")
        if self.cert_listen is not None:
            h, sep, prt = self.cert_listen.rpartition(":")
            if not sep or not h or not prt.isdigit() or int(prt) > 65535:
                raise ConfigError(f"certificate listen address {self.cert_listen!r} must be HOST:PORT")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> SealerConfig:
        """Defaults, then ``SKERRY_SEALER_*`` from ``environ`` (default ``os.environ``), then non-None overrides."""
        return config.load(cls, ENV_PREFIX, environ, overrides, convert={"log_level": _lower}).validate()


def _lower(name: str, value: object) -> str:
    return str(value).lower()
