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
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping

from skerry.core.errors import ConfigError
from skerry.core.tls import TlsFiles

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
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> SealerConfig:
        """Defaults, then ``SKERRY_SEALER_*`` from ``environ`` (default ``os.environ``), then non-None overrides."""
        environ = os.environ if environ is None else environ
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - fields
        if unknown:
            raise TypeError(f"unknown sealer settings: {', '.join(sorted(unknown))}")
        raw: dict[str, object] = {}
        for name in fields:
            value = environ.get(ENV_PREFIX + name.upper())
            if value not in (None, ""):
                raw[name] = value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: _coerce(k, v) for k, v in raw.items()}).validate()


def _coerce(name: str, value: object) -> object:
    if name in ("tls_ca", "tls_cert", "tls_key", "keys_dir", "ready_file"):
        return pathlib.Path(value)  # type: ignore[arg-type]
    if name == "domains":
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[attr-defined]
        return tuple(d.strip() for d in items if d.strip())
    if name == "grace_seconds":
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{ENV_PREFIX}GRACE_SECONDS must be a number, not {value!r}") from None
    if name == "log_level":
        return str(value).lower()
    return str(value)
