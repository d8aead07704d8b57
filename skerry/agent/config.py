"""The agent's settings, and the only place that reads its environment.

Every field is a ``skerry.core.config.setting`` with a safe default and its own help text: the one loader
reads field ``state_dir`` from ``SKERRY_AGENT_STATE_DIR`` and makes the flag ``--state-dir`` of ``skerry
agent run``, whose help names the variable (``skerry agent run --help`` lists them all). A flag beats its
variable, which beats the default. A few flags keep the shorter names they always had: ``--hub``
(``SKERRY_AGENT_HUB``), ``--sealer`` (``SKERRY_AGENT_SEALER``), ``--domain`` (the sealer key domain),
``--context`` (the kubeconfig context) and ``--resync-interval``. Durations are Go's: ``30s``, ``5m``,
``1h30m`` (a bare number is seconds).

There is no plaintext mode and no unsigned mode: an agent without mTLS files or without a TUF trust root
and its environment does not start.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping

from skerry.core import config
from skerry.core.config import setting
from skerry.core.errors import ConfigError
from skerry.core.peers import (
    KEEPALIVE_TIME_MS,
    MIN_KEEPALIVE_SECONDS,
    check_address,
    parse_addresses,
    parse_listen,
)
from skerry.core.tlsfiles import TlsFiles

ENV_PREFIX = "SKERRY_AGENT_"
DRIFT_POLICIES = ("correct", "detect")
# More parallel applies than this buy nothing and crowd the API server's in-flight limit.
MAX_APPLY_WORKERS = 64
# A dead hub noticed after more than this is noticed too late to matter (NAT tables forget in minutes).
MAX_KEEPALIVE_SECONDS = 600.0
# A failed drift or health watch is re-opened after this (monitor), so a broken API server is not hammered.
WATCH_RETRY_SECONDS = 5.0
# An apply is one request that answers in milliseconds on a healthy API server (tens under load);
# when the median of the recent ones reaches a second, reconciles stretch and operators should know
# (``APIServerSlow``, conditions).
SLOW_APPLY_SECONDS = 1.0
# A watch re-opened faster than this after an error hammers a broken API server (one thread per kind);
# one slower than this leaves drift uncorrected long after the API server came back.
WATCH_RETRY_BOUNDS = (0.5, 300.0)
# Applies answer in milliseconds on a healthy API server: a threshold below this would call every
# loaded one slow; one above this calls an API server slow only when reconciles take hours.
SLOW_APPLY_BOUNDS = (0.1, 60.0)

# Field -> environment variable suffix, where they differ.
ENV_NAMES = {"hub_address": "HUB", "sealer_address": "SEALER"}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


FREEZE_POLICIES = ("keep", "suspend")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    cluster: str = setting("", metavar="NAME", help="this cluster's name (as in the agent certificate; required)")
    # HOST:PORT, or HOST:PORT,HOST:PORT,... (hub replicas): see ``hub_addresses``
    hub_address: str = setting(
        "",
        flag="--hub",
        metavar="HOST:PORT[,...]",
        help="hub address, or several replicas comma-separated (a random one; another on each reconnect)",
    )
    sealer_address: str | None = setting(
        None, flag="--sealer", metavar="HOST:PORT", help="sealer address (without it SealedSecrets fail)"
    )
    sealer_domain: str = setting(
        "", flag="--domain", metavar="DOMAIN", help="sealer key domain (default: the sealer's default)"
    )
    tls_ca: pathlib.Path | None = setting(None, metavar="FILE", help="CA bundle that signs the hub and the sealer")
    tls_cert: pathlib.Path | None = setting(None, metavar="FILE", help="the agent's client certificate")
    tls_key: pathlib.Path | None = setting(None, metavar="FILE", help="the agent's private key")
    kubeconfig: pathlib.Path | None = setting(
        None, metavar="FILE", help="kubeconfig (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)"
    )
    kube_context: str | None = setting(
        None, flag="--context", metavar="NAME", help="kubeconfig context (default: current)"
    )
    state_dir: pathlib.Path = setting(
        pathlib.Path("/var/lib/skerry/agent"),
        metavar="DIR",
        help="verifier state and bundle cache (default /var/lib/skerry/agent)",
    )
    namespace: str = setting(
        "skerry-system", metavar="NS", help="the agent's namespace, holds the inventory (default skerry-system)"
    )
    field_manager: str = setting("skerry", metavar="NAME", help="server-side apply field manager (default skerry)")
    ready_file: pathlib.Path | None = setting(
        None, metavar="FILE", help="write a JSON status here after each reconcile"
    )
    log_level: str = config.log_level()
    allow_prune_all: bool = setting(
        False, help="let an empty bundle, or one that lost most objects, prune them (default: refuse)"
    )
    allow_prune_protected: bool = setting(
        False,
        help="prune Namespaces, CRDs and PersistentVolumeClaims that left the bundle without their "
        "skerry.io/prune: allow annotation (default: keep them and report it)",
    )
    metrics_listen: str = setting(
        "", metavar="HOST:PORT", help="serve plaintext /metrics, /healthz, /readyz here (default off)"
    )
    # TUF: the trust root to bootstrap from, this cluster's environment, what to do on expiry.
    trust_root: pathlib.Path | None = setting(
        None, metavar="FILE", help="TUF root.json to bootstrap from (the hub's <trust-dir>/root.json; required)"
    )
    environment: str = setting(
        "", metavar="ENV", help="this cluster's environment, a DNS label (its release-<env> role; required)"
    )
    freeze_policy: str = setting(
        "keep",
        metavar="keep|suspend",
        choices=FREEZE_POLICIES,
        help="on expired trusted metadata: keep re-applying the last good state (default) or suspend",
    )
    trust_poll: float = setting(
        60.0,
        metavar="DURATION",
        parse=config.duration,
        help="TUF refresh interval without a hub notification, and at expiry (default 1m)",
    )
    # A hub or sealer that stops answering (a network blackhole, not a refused port) is noticed within
    # about twice this: a ping every ``keepalive``, unanswered for min(keepalive, 20 s) (core.rpc).
    keepalive: float = setting(
        KEEPALIVE_TIME_MS / 1000,
        metavar="DURATION",
        parse=config.duration,
        help="ping the hub and sealer this often; a peer silent as long again is dropped (default 30s)",
    )
    drift_policy: str = setting(
        "correct",
        metavar="correct|detect",
        choices=DRIFT_POLICIES,
        help="correct drift (default) or only report it",
    )
    drift_ignore: tuple[str, ...] = setting(
        (),
        metavar="KIND:.PATH",
        help="never report drift under this field (e.g. apps/Deployment:.spec.replicas for an HPA); repeatable",
    )
    resync_seconds: float = setting(
        600.0,
        flag="--resync-interval",
        metavar="DURATION",
        parse=config.duration,
        help="full re-list of watched kinds, for lost watch events (default 10m)",
    )
    health_timeout: float = setting(
        300.0,
        metavar="DURATION",
        parse=config.duration,
        help="how long a bundle may stay Progressing (default 5m)",
    )
    apply_workers: int = setting(8, metavar="N", help=f"parallel applies per phase (1..{MAX_APPLY_WORKERS}, default 8)")
    watch_retry: float = setting(
        WATCH_RETRY_SECONDS,
        metavar="DURATION",
        parse=config.duration,
        help=f"re-open a failed drift or health watch after this (default {WATCH_RETRY_SECONDS:g}s)",
    )
    slow_apply: float = setting(
        SLOW_APPLY_SECONDS,
        metavar="DURATION",
        parse=config.duration,
        help=f"report the API server slow (APIServerSlow) when the median apply takes this long "
        f"(default {SLOW_APPLY_SECONDS:g}s)",
    )
    watch: bool = setting(
        True, help="drift and health watches (default on; --no-watch: drift goes unnoticed until the next bundle)"
    )

    @staticmethod
    def env_name(field: str) -> str:
        return config.env_name(ENV_PREFIX, field, ENV_NAMES)

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
            check_address(self.sealer_address, f"sealer ({self.env_name('sealer_address')} or --sealer)")
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
        config.check_choices(self)  # freeze_policy, drift_policy, log_level
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
        for rule in self.drift_ignore:
            if not re.match(r"^(\*|([a-z0-9.-]+/)?[A-Za-z0-9]+):\.[^\s]+$", rule):
                raise ConfigError(f"drift ignore rule {rule!r} must be KIND:.path, GROUP/KIND:.path or *:.path")
        if not 1 <= self.resync_seconds <= 86400:
            raise ConfigError("resync seconds must be between 1 and 86400")
        if not 1 <= self.health_timeout <= 86400:
            raise ConfigError("health timeout must be between 1 and 86400 seconds")
        for name, (low, high) in (("watch_retry", WATCH_RETRY_BOUNDS), ("slow_apply", SLOW_APPLY_BOUNDS)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(
                    f"--{name.replace('_', '-')} ({self.env_name(name)}) must be between {low:g}s and {high:g}s"
                )
        if not 1 <= self.apply_workers <= MAX_APPLY_WORKERS:
            raise ConfigError(f"apply workers must be between 1 and {MAX_APPLY_WORKERS}")
        if self.metrics_listen:
            parse_listen(self.metrics_listen, self.env_name("metrics_listen"))
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> AgentConfig:
        """Defaults, then ``SKERRY_AGENT_*`` from ``environ`` (default ``os.environ``), then non-None overrides."""
        return config.load(cls, ENV_PREFIX, environ, overrides, env_names=ENV_NAMES).validate()

