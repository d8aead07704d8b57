"""The sealer's settings, and the only place that reads its environment.

Every field is a ``skerry.core.config.setting`` with a safe default (loopback listener, mutual TLS always
on, one ``default`` key domain) and its own help text: the one loader reads field ``keys_dir`` from
``SKERRY_SEALER_KEYS_DIR`` and makes the flag ``--keys-dir`` of ``skerry sealer serve``, whose help names the
variable (``skerry sealer serve --help`` lists them all). A flag beats its variable, which beats the
default. Durations are Go's (``30s``, ``5m``, ``720h``, ``30d``); ``renewal_days`` alone reads a bare number
as days, as its variable ``SKERRY_SEALER_RENEWAL_DAYS`` always did (its flag is ``--key-renewal``).
``kek`` (the key-encryption key as base64) is read from the environment only: a command line is visible to
every user of the host. There is no plaintext mode: a sealer without TLS files does not start.

With ``hub`` set, the sealer follows the hub's revocation list (``EnrollmentService.WatchRevocations``,
mutual TLS with the sealer's own certificate, which needs clientAuth and role ``skerry:sealer``) and refuses
revoked agent certificates on every RPC; the last list received is kept in ``<keys dir>/../revocations.json``
for a restart while the hub is down.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from skerry.core import config
from skerry.core.config import setting
from skerry.core.duration import parse_duration
from skerry.core.errors import ConfigError
from skerry.core.peers import parse_addresses, parse_listen
from skerry.core.tlsfiles import TlsFiles

ENV_PREFIX = "SKERRY_SEALER_"
SECONDS_PER_DAY = 86400.0


def days(value: object, where: str) -> float:
    """Days from a duration (``720h``, ``30d``), or from a bare number of days (the variable's unit)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return parse_duration(value, where) / SECONDS_PER_DAY


@dataclasses.dataclass(frozen=True)
class SealerConfig:
    listen: str = setting("127.0.0.1:7443", metavar="HOST:PORT", help="gRPC listen address (default 127.0.0.1:7443)")
    tls_ca: pathlib.Path | None = setting(None, metavar="FILE", help="CA bundle that signs clients")
    tls_cert: pathlib.Path | None = setting(None, metavar="FILE", help="the sealer's server certificate")
    tls_key: pathlib.Path | None = setting(None, metavar="FILE", help="the sealer's private key")
    keys_dir: pathlib.Path = setting(
        pathlib.Path("/var/lib/skerry/sealer/keys"),
        metavar="DIR",
        help="sealing keys directory (default /var/lib/skerry/sealer/keys)",
    )
    domains: tuple[str, ...] = setting(
        ("default",), flag="--domain", metavar="D[,D...]", help="key domain(s) to serve; repeatable (default: default)"
    )
    ready_file: pathlib.Path | None = setting(None, metavar="FILE", help='write {"port": N} here once serving')
    log_level: str = config.log_level()
    grace_seconds: float = setting(
        10.0,
        flag="--grace-period",
        metavar="DURATION",
        parse=config.duration,
        help="on SIGTERM, let calls in flight finish this long (default 10s)",
    )
    drain: float = config.drain()
    metrics_listen: str = setting(
        "", metavar="HOST:PORT", help="serve plaintext /metrics, /healthz, /readyz here (default off)"
    )
    trust_root: pathlib.Path | None = setting(
        None,
        metavar="FILE",
        help="the hub's TUF root.json: unseal only what director + release agreed on for the caller's cluster",
    )
    trust_state_dir: pathlib.Path | None = setting(
        None,
        metavar="DIR",
        help="per-cluster trusted TUF metadata and release counters (default <keys-dir>/../tuf-state)",
    )
    cluster_domains: pathlib.Path | None = setting(
        None,
        metavar="FILE",
        help='which key domains each cluster may use, YAML {clusters: {<cluster>|"*": [domains]}} '
        '(default: every cluster the "default" domain only)',
    )
    kek_file: pathlib.Path | None = setting(
        None, metavar="FILE", help="key-encryption key (exactly 32 raw bytes): keys encrypted at rest"
    )
    kek: str | None = setting(
        None, flag=False, repr=False, help="the key-encryption key as base64 of 32 bytes (the file wins)"
    )
    renewal_days: float = setting(
        30.0,
        flag="--key-renewal",
        metavar="DURATION",
        parse=days,
        help="add a new sealing key when the newest is this old, e.g. 720h or 30d; 0: never (default 30d)",
    )
    keys_refresh_seconds: float = setting(
        60.0,
        flag="--keys-refresh",
        metavar="DURATION",
        parse=config.duration,
        help="re-read key storage and check renewal this often (default 1m)",
    )
    rate_per_second: float = setting(50.0, metavar="N", help="sustained RSA decryptions per second per agent (default 50)")
    rate_burst: float = setting(2000.0, metavar="N", help="decryptions an agent may spend at once (default 2000)")
    cert_listen: str | None = setting(
        None,
        metavar="HOST:PORT",
        help="plain-HTTP /v1/cert.pem[?domain=D] serving only public certificates (kubeseal --cert URL); default off",
    )
    # The hub API (HOST:PORT, or the replicas as HOST:PORT,HOST:PORT,...) whose revocation list the
    # sealer follows. None: no revocations are known.
    hub: str | None = setting(
        None,
        metavar="HOST:PORT[,...]",
        help="the hub API, or its replicas separated by commas: follow its revocation list (mTLS with "
        "--tls-cert/--tls-key, a skerry:sealer client certificate); a lost feed resumes from another replica",
    )

    @property
    def revocations_file(self) -> pathlib.Path:
        """The last revocation list received from the hub (beside the keys, on the same volume)."""
        return self.keys_dir.parent / "revocations.json"

    @property
    def tuf_state_dir(self) -> pathlib.Path:
        return self.trust_state_dir if self.trust_state_dir is not None else self.keys_dir.parent / "tuf-state"

    @property
    def tls_files(self) -> TlsFiles:
        missing = [n for n in ("tls_ca", "tls_cert", "tls_key") if getattr(self, n) is None]
        if missing:
            names = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise ConfigError(f"the sealer only serves mutual TLS; set {names} (or the matching flags)")
        return TlsFiles(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)  # type: ignore[arg-type]

    def validate(self) -> SealerConfig:
        self.tls_files  # noqa: B018 - raises if incomplete
        parse_listen(self.listen, f"listen address ({ENV_PREFIX}LISTEN or --listen)")
        config.check_choices(self)  # log_level
        if not self.domains:
            raise ConfigError("the sealer needs at least one key domain")
        if self.grace_seconds < 0:
            raise ConfigError("grace seconds must not be negative")
        config.check_drain(self.drain)
        if self.renewal_days < 0:
            raise ConfigError("renewal days must not be negative (0 disables renewal)")
        if self.keys_refresh_seconds <= 0:
            raise ConfigError("keys refresh seconds must be positive")
        if self.rate_per_second <= 0 or self.rate_burst < 1:
            raise ConfigError("unseal rate limits must be positive (rate > 0, burst >= 1)")
        if self.hub is not None:
            parse_addresses(self.hub, f"hub ({ENV_PREFIX}HUB or --hub)")
        if self.cert_listen is not None:
            parse_listen(self.cert_listen, f"certificate listen address ({ENV_PREFIX}CERT_LISTEN or --cert-listen)")
        if self.metrics_listen:
            parse_listen(self.metrics_listen, f"metrics listen address ({ENV_PREFIX}METRICS_LISTEN or --metrics-listen)")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> SealerConfig:
        """Defaults, then ``SKERRY_SEALER_*`` from ``environ`` (default ``os.environ``), then non-None overrides."""
        return config.load(cls, ENV_PREFIX, environ, overrides).validate()

