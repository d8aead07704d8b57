"""The hub's settings: one frozen dataclass, safe defaults, read from ``SKERRY_HUB_*`` and ``skerry hub serve``.

This is the only hub module that reads the environment. Every field is a ``skerry.core.config.setting``
that carries its own help text: the one loader (``skerry.core.config``) reads field ``trust_dir`` from
``SKERRY_HUB_TRUST_DIR`` and makes the flag ``--trust-dir``, whose help names the variable, so the list of
settings lives here once (``skerry hub serve --help`` prints it). A flag beats its variable, which beats the
default. Durations are ``60``, ``60s``, ``5m``, ``1h``. ``state_dsn`` is read from the environment only: a
DSN holds a password, and a command line is visible to every user of the host.

Serving requires all three TLS files (``tls_ca``, ``tls_cert``, ``tls_key``, together ``tls``): every
hub connection is mutual TLS.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import pathlib
import re
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from skerry.core import config
from skerry.core.config import setting
from skerry.core.duration import parse_duration  # noqa: F401 - re-exported for the hub's callers
from skerry.core.errors import ConfigError
from skerry.core.tlsfiles import TlsFiles
from skerry.hub.admission import ADMISSION_BURST, ADMISSION_RATE
from skerry.hub.state import check_spec

ENV_PREFIX = "SKERRY_HUB_"
DEFAULT_LISTEN = "127.0.0.1:7440"
DEFAULT_INTERVAL = 60.0
DEFAULT_RENDER_TIMEOUT = 120.0
# One git fetch: a first clone of a large repository over a slow link fits; a remote that accepts the
# connection and then says nothing (a hung server, a network blackhole) holds the sync no longer.
DEFAULT_GIT_TIMEOUT = 300.0
ENGINES = ("auto", "inprocess", "binary")
ROLES = ("writer", "serve", "both")


# The random part of a default hub id: two processes that share a host name and a process id (a restarted
# container is often process 1 again) still differ.
HUB_ID_SUFFIX_BYTES = 4
MAX_HUB_ID = 253  # a DNS name's length: room for a pod name or host name, and what the lease row shows


def default_hub_id() -> str:
    """``<host>-<pid>-<random>``: unique to this process, as Kubernetes leader election names a candidate.

    The host name alone made two hub processes on one host (or a hub restarted in place next to its
    old, still-running self) one holder: each took the other's live lease as its own. A process that
    stops cleanly gives its lease up, so its successor need not wait for the lease to run out."""
    suffix = f"-{os.getpid()}-{secrets.token_hex(HUB_ID_SUFFIX_BYTES)}"
    return socket.gethostname()[: MAX_HUB_ID - len(suffix)] + suffix


def _default_state_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".local" / "state" / "skerry" / "hub"


def state_dir_from_env(override: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The hub state directory for commands run next to the hub (``skerry cluster ...``)."""
    env = os.environ if environ is None else environ
    value = override or env.get(ENV_PREFIX + "STATE_DIR") or None
    return pathlib.Path(value).expanduser() if value else _default_state_dir()


def state_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The hub-state settings (``state``, ``state_dsn_file``, ``state_dsn``) for commands run beside the hub."""
    env = os.environ if environ is None else environ
    dsn_file = env.get(ENV_PREFIX + "STATE_DSN_FILE") or None
    return {
        "spec": check_spec(env.get(ENV_PREFIX + "STATE", "")),
        "dsn_file": pathlib.Path(dsn_file).expanduser() if dsn_file else None,
        "dsn": env.get(ENV_PREFIX + "STATE_DSN") or None,
    }


def check_branch(branch: str, what: str = "branch") -> str:
    """A branch name git accepts, that cannot be mistaken for an option or a revision expression."""
    bad = (
        not branch
        or branch.startswith(("-", "/"))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "//" in branch
        or "@{" in branch
        or branch == "@"
        or any(c in branch for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in branch)
    )
    if bad:
        raise ConfigError(f"{what}: {branch!r} is not a valid branch name")
    return branch


def check_listen(listen: str, what: str = "listen") -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what}: {listen!r} is not host:port (e.g. 127.0.0.1:7440 or [::]:7440)")
    return listen


def parse_release_keys(value: Any) -> tuple[tuple[str, pathlib.Path], ...]:
    """``"dev=/keys/a.key,dev=/keys/b.key"`` (or a sequence of such) -> ``(("dev", Path), ...)``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if isinstance(item, tuple):
            out.append((str(item[0]), pathlib.Path(item[1])))
            continue
        env, sep, path = str(item).strip().partition("=")
        if not sep or not env or not path:
            raise ConfigError(f"release_keys: {item!r} is not ENV=KEYFILE")
        out.append((env, pathlib.Path(path).expanduser()))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class HubConfig:
    repo: str = setting("", metavar="PATH|URL", help="Git repository to follow (required)")
    branch: str = setting("main", metavar="NAME", help="branch to follow (default main)")
    interval: float = setting(
        DEFAULT_INTERVAL, metavar="DURATION", parse=config.duration, help="poll interval, e.g. 60s, 5m (default 60s)"
    )
    listen: str = setting(DEFAULT_LISTEN, metavar="HOST:PORT", help="gRPC listen address (default 127.0.0.1:7440)")
    # None: the server's default (skerry.core.rpc.DEFAULT_MAX_CONNECTION_AGE_SECONDS, named there with its reason)
    max_connection_age: float | None = setting(
        None,
        metavar="DURATION",
        parse=config.duration,
        help="retire each agent connection after this long (+-10 %%), so agents spread onto replicas that "
        "joined or came back; 0: never (default 30m)",
    )
    # defaults and their reasons (and the derived cap on streams): skerry.hub.admission
    stream_admission_rate: float = setting(
        ADMISSION_RATE, metavar="N",
        help="new agent streams admitted a second; past the burst an agent is told when to come back (default 100)",
    )
    stream_admission_burst: float = setting(
        ADMISSION_BURST, metavar="N",
        help="new agent streams admitted at once before the rate applies (default 200)",
    )
    max_streams: int = setting(
        0, metavar="N",
        help="agent streams this replica holds at most; past it an agent is refused (ReplicaFull) and goes to "
        "another replica; 0 (default): the open-file limit less a reserve for everything else the hub opens",
    )
    tls_ca: pathlib.Path | None = setting(
        None, metavar="FILE", help="CA bundle that agents' and operators' certificates chain to"
    )
    tls_cert: pathlib.Path | None = setting(None, metavar="FILE", help="the hub's server certificate")
    tls_key: pathlib.Path | None = setting(None, metavar="FILE", help="the hub's private key")
    state_dir: pathlib.Path = setting(
        metavar="DIR",
        default_factory=_default_state_dir,
        help="clone cache and scratch space (default ~/.local/state/skerry/hub)",
    )
    state: str = setting(
        "",
        metavar="sqlite:///PATH|postgresql",
        help="hub state database (default: SQLite <state-dir>/hub.db); postgresql reads the DSN from "
        "--state-dsn-file or SKERRY_HUB_STATE_DSN",
    )
    state_dsn_file: pathlib.Path | None = setting(
        None, metavar="FILE", help="file holding the PostgreSQL DSN (it holds a password)"
    )
    state_dsn: str | None = setting(None, flag=False, repr=False, help="the PostgreSQL DSN itself")
    hub_id: str = setting(
        metavar="NAME",
        default_factory=default_hub_id,
        help="this process's name as the writer-lease holder (default: host name, process id and a random "
        "suffix, unique to the process); a name kept across restarts (a StatefulSet pod's) re-takes its own "
        "lease at once after a crash",
    )
    lease_ttl: float = setting(
        15.0, metavar="DURATION", parse=config.duration, help="writer lease lifetime, renewed at a third (default 15s)"
    )
    drain: float = config.drain()
    role: str = setting(
        "both",
        metavar="writer|serve|both",
        help="writer: sync, render and sign while holding the writer lease; serve: serve agents from the hub "
        "state only (no keys, no Git); both (default): serve, and write while holding the lease",
    )
    render_timeout: float = setting(
        DEFAULT_RENDER_TIMEOUT,
        metavar="DURATION",
        parse=config.duration,
        help="limit for one render tool run (default 120s)",
    )
    ready_file: pathlib.Path | None = setting(
        None, metavar="FILE", help='write {"port": N, "trust_root": PATH, ...} here once serving'
    )
    log_level: str = config.log_level()
    trust_dir: pathlib.Path | None = setting(
        None,
        metavar="DIR",
        help="TUF trust repository made by `skerry keys init` (director + release roles; required)",
    )
    release_keys: tuple[tuple[str, pathlib.Path], ...] = setting(
        (),
        metavar="ENV=KEY,...",
        parse=lambda value, _where: parse_release_keys(value),
        help="release keys the hub signs with itself (dev environments only: the hub alone can then ship them)",
    )
    trust_refresh: float = setting(
        30.0,
        metavar="DURATION",
        parse=config.duration,
        help="how often online TUF metadata is checked for re-signing",
    )
    enroll_listen: str | None = setting(
        None,
        metavar="HOST:PORT",
        help="listener for `skerry agent enroll` (server TLS, bootstrap tokens); default: none",
    )
    agent_cert_lifetime: _dt.timedelta = setting(
        _dt.timedelta(hours=24),
        metavar="DURATION",
        parse=config.timedelta,
        help="lifetime of enrolled agents' certificates, renewed at 2/3 (default 24h)",
    )
    metrics_listen: str = setting(
        "", metavar="HOST:PORT", help="serve /metrics, /healthz, /readyz here (default off)"
    )
    dashboard_listen: str = setting(
        "", metavar="HOST:PORT", help="serve the read-only dashboard here (default off)"
    )
    dashboard_token_file: pathlib.Path | None = setting(
        None, metavar="FILE", help="bearer token that also opens the dashboard"
    )
    engine: str = setting(
        "auto", metavar="auto|inprocess|binary", help="render engine (default auto: in-process kustomize if installed)"
    )
    tag: str | None = setting(None, metavar="TAG", help="follow a tag instead of the branch")
    commit: str | None = setting(None, metavar="SHA", help="pin one commit instead of following the branch")
    depth: int | None = setting(None, metavar="N", help="shallow fetches of N commits")
    git_ssh_key: pathlib.Path | None = setting(None, metavar="FILE", help="SSH deploy key for ssh:// URLs")
    git_known_hosts: pathlib.Path | None = setting(
        None, metavar="FILE", help="known_hosts the Git server's host key must be in"
    )
    git_token_file: pathlib.Path | None = setting(None, metavar="FILE", help="file holding an HTTPS access token")
    git_timeout: float = setting(
        DEFAULT_GIT_TIMEOUT,
        metavar="DURATION",
        parse=config.duration,
        help="give up one git fetch after this long: a remote that hangs holds the sync no longer (default 5m)",
    )
    webhook_listen: str | None = setting(
        None, metavar="HOST:PORT", help="serve the GitHub/GitLab push webhook (POST /hooks/git)"
    )
    webhook_secret_file: pathlib.Path | None = setting(
        None, metavar="FILE", help="file holding the webhook's shared secret"
    )
    push_url: str | None = setting(
        None, metavar="PATH|URL", help="where promotion commits are pushed (default: --repo)"
    )
    push_branch: str | None = setting(None, metavar="NAME", help="push promotions to this branch for review instead")
    push_ssh_key: pathlib.Path | None = setting(None, metavar="FILE", help="deploy key for pushing promotions over ssh")
    # Built from tls_ca/tls_cert/tls_key (or given whole); never read from the environment itself.
    tls: TlsFiles | None = dataclasses.field(default=None, metadata={"setting": False})

    def __post_init__(self) -> None:
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, pathlib.Path):
                object.__setattr__(self, name, pathlib.Path(value))
        self._join_tls()
        self._check_source()
        self._check_serving()
        self._check_state()

    def _join_tls(self) -> None:
        parts = {"tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key}
        if self.tls is not None:
            object.__setattr__(self, "tls_ca", self.tls.ca)
            object.__setattr__(self, "tls_cert", self.tls.cert)
            object.__setattr__(self, "tls_key", self.tls.key)
            return
        given = {k for k, v in parts.items() if v is not None}
        if given and given != set(parts):
            missing = ", ".join(f"{ENV_PREFIX}{k.upper()}" for k in sorted(set(parts) - given))
            raise ConfigError(f"tls: CA, certificate and key go together; missing {missing}")
        if given:
            object.__setattr__(self, "tls", TlsFiles(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key))

    def _check_source(self) -> None:
        if not self.repo or not str(self.repo).strip():
            raise ConfigError(f"repo: a repository path or URL is required ({ENV_PREFIX}REPO or --repo)")
        check_branch(self.branch)
        if not self.interval > 0:
            raise ConfigError(f"interval: must be positive, got {self.interval}")
        if not self.render_timeout > 0:
            raise ConfigError(f"render_timeout: must be positive, got {self.render_timeout}")
        if not self.git_timeout > 0:
            raise ConfigError(f"git_timeout: must be positive, got {self.git_timeout}")
        config.check_choice("engine", self.engine, ENGINES)
        if self.tag is not None and self.commit is not None:
            raise ConfigError("tag and commit: follow one of them, not both")
        if self.commit is not None and not re.match(r"^[0-9a-f]{40}$", self.commit):
            raise ConfigError(f"commit: {self.commit!r} must be a full 40-character commit id")
        if self.depth is not None and not 0 < self.depth <= 1_000_000:
            raise ConfigError(f"depth: must be a positive number of commits, got {self.depth}")
        if self.git_ssh_key is not None and self.git_known_hosts is None:
            raise ConfigError(
                f"git_known_hosts: required with git_ssh_key ({ENV_PREFIX}GIT_KNOWN_HOSTS); host keys are checked"
            )
        if self.push_branch is not None:
            check_branch(self.push_branch, "push_branch")
        if self.push_ssh_key is not None and self.git_known_hosts is None:
            raise ConfigError(
                f"push_ssh_key: needs git_known_hosts ({ENV_PREFIX}GIT_KNOWN_HOSTS); the push checks the "
                "server's host key like the fetch, never trust-on-first-use"
            )

    def _check_serving(self) -> None:
        check_listen(self.listen)
        for name in ("enroll_listen", "webhook_listen", "metrics_listen", "dashboard_listen"):
            if getattr(self, name):
                check_listen(getattr(self, name), name)
        if self.webhook_listen is not None and self.webhook_secret_file is None:
            raise ConfigError(
                f"webhook_secret_file: required with webhook_listen ({ENV_PREFIX}WEBHOOK_SECRET_FILE)"
            )
        config.check_choices(self)  # log_level
        if self.max_streams < 0:
            raise ConfigError(f"max_streams: must be 0 (derived from the open-file limit) or a positive number of "
                              f"streams, got {self.max_streams}")

    def _check_state(self) -> None:
        object.__setattr__(self, "state", check_spec(self.state))
        if self.state == "postgresql" and not (self.state_dsn_file or self.state_dsn):
            raise ConfigError(
                f"state: postgresql needs a DSN ({ENV_PREFIX}STATE_DSN_FILE / --state-dsn-file, or {ENV_PREFIX}STATE_DSN)"
            )
        if not self.hub_id or len(self.hub_id) > MAX_HUB_ID:
            raise ConfigError(f"hub_id: must be 1..{MAX_HUB_ID} characters, got {self.hub_id!r}")
        config.check_choice("role", self.role, ROLES)
        config.check_drain(self.drain)
        if not 1.0 <= self.lease_ttl <= 600.0:
            raise ConfigError(f"lease_ttl: must be between 1s and 10m, got {self.lease_ttl}")

    def require_trust(self) -> pathlib.Path:
        if self.trust_dir is None:
            raise ConfigError(
                f"trust_dir: the hub releases bundles only through a TUF trust repository; make one with "
                f"`skerry keys init --trust-dir DIR` and pass --trust-dir DIR ({ENV_PREFIX}TRUST_DIR)"
            )
        return self.trust_dir

    def require_tls(self) -> TlsFiles:
        if self.tls is None:
            raise ConfigError(
                "tls: the hub serves only mutual TLS; set --tls-ca, --tls-cert and --tls-key "
                f"({ENV_PREFIX}TLS_CA, {ENV_PREFIX}TLS_CERT, {ENV_PREFIX}TLS_KEY)"
            )
        return self.tls

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> HubConfig:
        """Defaults, then ``SKERRY_HUB_*`` from ``environ`` (default ``os.environ``), then non-None ``overrides``
        (field names; ``tls`` takes a whole ``TlsFiles``)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown hub setting(s): {', '.join(unknown)}")
        return config.load(cls, ENV_PREFIX, environ, overrides)


# Fields a caller may give as text when building HubConfig directly (the loader gives paths already).
_PATHS = tuple(f.name for f in dataclasses.fields(HubConfig) if f.type.startswith("pathlib.Path"))
