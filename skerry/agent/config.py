"""The agent's settings, and the only place that reads its environment.

Every setting has a safe default and an ``SKERRY_AGENT_*`` variable;
command-line flags arrive as ``overrides`` and win over the environment.
There is no plaintext mode and no unsigned mode: an agent without mTLS
files or without a TUF trust root and its environment does not start.

    SKERRY_AGENT_CLUSTER              this cluster's name (must match the agent certificate)
    SKERRY_AGENT_HUB                  hub address HOST:PORT, or several separated by commas (replicas;
                                      a random one first, another at random on each reconnect)
    SKERRY_AGENT_SEALER               sealer address HOST:PORT (optional; without it SealedSecrets fail)
    SKERRY_AGENT_SEALER_DOMAIN        sealer key domain (default: the sealer's default)
    SKERRY_AGENT_TLS_CA               CA bundle that signs the hub and the sealer (PEM)
    SKERRY_AGENT_TLS_CERT             the agent's client certificate (PEM)
    SKERRY_AGENT_TLS_KEY              its private key (PEM)
    SKERRY_AGENT_TRUST_ROOT           TUF root.json to bootstrap from (the hub's <trust-dir>/root.json)
    SKERRY_AGENT_ENVIRONMENT          this cluster's environment (its release-<env> role)
    SKERRY_AGENT_FREEZE_POLICY        keep|suspend: what to do while trusted metadata is expired   keep
    SKERRY_AGENT_TRUST_POLL           seconds between TUF refreshes without a hub notification     60
    SKERRY_AGENT_KEEPALIVE            ping hub and sealer this often; silent as long again: dropped   30s
    SKERRY_AGENT_KUBECONFIG           kubeconfig (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)
    SKERRY_AGENT_KUBE_CONTEXT         kubeconfig context (default: current)
    SKERRY_AGENT_STATE_DIR            verifier state and bundle cache    /var/lib/skerry/agent
    SKERRY_AGENT_NAMESPACE            the agent's namespace (inventory)   skerry-system
    SKERRY_AGENT_FIELD_MANAGER        server-side apply field manager     skerry
    SKERRY_AGENT_READY_FILE           write a JSON status here after each reconcile
    SKERRY_AGENT_LOG_LEVEL            debug|info|warning|error            info
    SKERRY_AGENT_ALLOW_PRUNE_ALL      true: an empty bundle may prune everything   false
    SKERRY_AGENT_METRICS_LISTEN       plaintext /metrics, /healthz, /readyz HOST:PORT   off
    SKERRY_AGENT_DRIFT_POLICY         correct|detect: what to do with drift        correct
    SKERRY_AGENT_DRIFT_IGNORE         comma-separated KIND:.path rules never reported as drift
                                      (e.g. apps/Deployment:.spec.replicas for an HPA)
    SKERRY_AGENT_RESYNC_SECONDS       full re-list of watched kinds (lost events)   10m (durations: 30s, 5m, 1h30m)
    SKERRY_AGENT_HEALTH_TIMEOUT       how long a bundle may stay Progressing        5m
    SKERRY_AGENT_APPLY_WORKERS        parallel applies per phase                    8
    SKERRY_AGENT_WATCH                false: no drift/health watches                true
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping

from skerry.core import config
from skerry.core.client import parse_addresses
from skerry.core.duration import parse_duration
from skerry.core.errors import ConfigError
from skerry.core.metrics import parse_listen
from skerry.core.rpc import KEEPALIVE_TIME_MS, MIN_KEEPALIVE_SECONDS
from skerry.core.tlsfiles import TlsFiles

ENV_PREFIX = "SKERRY_AGENT_"
LOG_LEVELS = ("debug", "info", "warning", "error")
DRIFT_POLICIES = ("correct", "detect")
# More parallel applies than this buy nothing and crowd the API server's in-flight limit.
MAX_APPLY_WORKERS = 64
# A dead hub noticed after more than this is noticed too late to matter (NAT tables forget in minutes).
MAX_KEEPALIVE_SECONDS = 600.0

# Field -> environment variable suffix, where they differ.
_ENV_NAMES = {"hub_address": "HUB", "sealer_address": "SEALER"}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


FREEZE_POLICIES = ("keep", "suspend")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    cluster: str = ""
    hub_address: str = ""  # HOST:PORT, or HOST:PORT,HOST:PORT,... (hub replicas): see ``hub_addresses``
    sealer_address: str | None = None
    sealer_domain: str = ""
    tls_ca: pathlib.Path | None = None
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    kubeconfig: pathlib.Path | None = None
    kube_context: str | None = None
    state_dir: pathlib.Path = pathlib.Path("/var/lib/skerry/agent")
    namespace: str = "skerry-system"
    field_manager: str = "skerry"
    ready_file: pathlib.Path | None = None
    log_level: str = "info"
    allow_prune_all: bool = False
    allow_prune_protected: bool = False  # prune Namespaces, CRDs, PVCs without skerry.io/prune: allow
    metrics_listen: str = ""  # "": no metrics server
    # TUF: the trust root to bootstrap from, this cluster's environment, what to do on expiry.
    trust_root: pathlib.Path | None = None
    environment: str = ""
    freeze_policy: str = "keep"  # keep: re-apply the last good state while frozen; suspend: stop reconciling
    trust_poll: float = 60.0  # seconds between TUF refreshes without a hub notification (and at expiry)
    # A hub or sealer that stops answering (a network blackhole, not a refused port) is noticed within
    # about twice this: a ping every ``keepalive``, unanswered for min(keepalive, 20 s) (core.rpc).
    keepalive: float = KEEPALIVE_TIME_MS / 1000
    drift_policy: str = "correct"
    drift_ignore: tuple[str, ...] = ()
    resync_seconds: float = 600.0
    health_timeout: float = 300.0
    apply_workers: int = 8
    watch: bool = True

    @staticmethod
    def env_name(field: str) -> str:
        return config.env_name(ENV_PREFIX, field, _ENV_NAMES)

    @property
    def hub_addresses(self) -> tuple[str, ...]:
        """The hub addresses ``hub_address`` names (one, or a comma-separated list of replicas)."""
        return parse_addresses(self.hub_address, f"hub ({self.env_name('hub_address')} or --hub)")

    @property
    def tls_files(self) -> TlsFiles:
        missing = [n for n in ("tls_ca", "tls_cert", "tls_key") if getattr(self, n) is None]
        if missing:
            names = ", ".join(self.env_name(n) for n in missing)
            raise ConfigError(f"the agent only talks mutual TLS; set {names} (or the matching flags)")
        return TlsFiles(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)  # type: ignore[arg-type]

    def validate(self) -> AgentConfig:
        if not self.cluster:
            raise ConfigError(
                f"the agent needs its cluster name; set {self.env_name('cluster')} or --cluster"
            )
        if not _DNS_SUBDOMAIN.match(self.cluster):
            raise ConfigError(f"cluster name {self.cluster!r} must be a lowercase DNS name")
        if not self.hub_address:
            raise ConfigError(f"the agent needs the hub address; set {self.env_name('hub_address')} or --hub")
        self.hub_addresses  # noqa: B018 - raises if any address is malformed
        if self.sealer_address:
            _check_address("sealer", self.sealer_address)
        self.tls_files  # noqa: B018 - raises if incomplete
        if self.trust_root is None:
            raise ConfigError(
                f"the agent needs the TUF trust root (the hub's <trust-dir>/root.json); set "
                f"{self.env_name('trust_root')} or --trust-root"
            )
        if not _DNS_LABEL.match(self.environment):
            raise ConfigError(
                f"the agent needs its environment (a DNS label, e.g. prod); set "
                f"{self.env_name('environment')} or --environment"
            )
        if self.freeze_policy not in FREEZE_POLICIES:
            raise ConfigError(f"freeze policy {self.freeze_policy!r} must be one of {', '.join(FREEZE_POLICIES)}")
        if not self.trust_poll > 0:
            raise ConfigError("trust_poll must be positive")
        if not MIN_KEEPALIVE_SECONDS <= self.keepalive <= MAX_KEEPALIVE_SECONDS:
            raise ConfigError(
                f"keepalive must be between {MIN_KEEPALIVE_SECONDS:g}s (servers refuse faster pings) and "
                f"{MAX_KEEPALIVE_SECONDS:g}s"
            )
        if not _DNS_LABEL.match(self.namespace):
            raise ConfigError(f"namespace {self.namespace!r} must be a DNS label")
        if not self.field_manager or len(self.field_manager) > 128:
            raise ConfigError("the field manager must be 1 to 128 characters")
        if self.drift_policy not in DRIFT_POLICIES:
            raise ConfigError(f"drift policy {self.drift_policy!r} must be one of {', '.join(DRIFT_POLICIES)}")
        for rule in self.drift_ignore:
            if not re.match(r"^(\*|([a-z0-9.-]+/)?[A-Za-z0-9]+):\.[^\s]+$", rule):
                raise ConfigError(f"drift ignore rule {rule!r} must be KIND:.path, GROUP/KIND:.path or *:.path")
        if not 1 <= self.resync_seconds <= 86400:
            raise ConfigError("resync seconds must be between 1 and 86400")
        if not 1 <= self.health_timeout <= 86400:
            raise ConfigError("health timeout must be between 1 and 86400 seconds")
        if not 1 <= self.apply_workers <= MAX_APPLY_WORKERS:
            raise ConfigError(f"apply workers must be between 1 and {MAX_APPLY_WORKERS}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r} must be one of {', '.join(LOG_LEVELS)}")
        if self.metrics_listen:
            parse_listen(self.metrics_listen, self.env_name("metrics_listen"))
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> AgentConfig:
        """Defaults, then ``SKERRY_AGENT_*`` from ``environ`` (default ``os.environ``), then non-None overrides."""
        convert = {"log_level": _lower, "trust_poll": _duration, "resync_seconds": _duration,
                   "health_timeout": _duration, "keepalive": _duration}
        return config.load(cls, ENV_PREFIX, environ, overrides, convert=convert, env_names=_ENV_NAMES).validate()


def _check_address(what: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{what} address {address!r} must be HOST:PORT")


def _lower(name: str, value: object) -> str:
    return str(value).lower()


def _duration(name: str, value: object) -> float:
    return parse_duration(value, f"{ENV_PREFIX}{name.upper()}")  # 30s, 5m, 1h30m (or bare seconds)
