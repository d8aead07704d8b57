"""The hub's settings: one frozen dataclass, safe defaults, read from ``SKERRY_HUB_*``.

This is the only hub module that reads the environment. ``skerry hub serve``
flags are passed as overrides, so a flag beats its variable, which beats the
default::

    SKERRY_HUB_REPO              repository path or URL (required)
    SKERRY_HUB_BRANCH            branch to follow                      main
    SKERRY_HUB_INTERVAL          poll interval (60, 60s, 5m, 1h)       60s
    SKERRY_HUB_LISTEN            gRPC address host:port                127.0.0.1:7440
    SKERRY_HUB_TLS_CA            CA bundle agents' certificates chain to
    SKERRY_HUB_TLS_CERT          the hub's server certificate
    SKERRY_HUB_TLS_KEY           its private key
    SKERRY_HUB_TRUST_DIR         TUF trust repository (``skerry keys init``; required to serve)
    SKERRY_HUB_RELEASE_KEYS      ENV=KEYFILE,... release keys the hub signs with itself (dev only)
    SKERRY_HUB_TRUST_REFRESH     how often online TUF metadata is checked for re-signing   30s
    SKERRY_HUB_STATE_DIR         clone cache and scratch space   ~/.local/state/skerry/hub
    SKERRY_HUB_STATE             where the hub keeps what must outlive it: sqlite:///PATH or
                                 postgresql (DSN from the next two)   sqlite <state dir>/hub.db
    SKERRY_HUB_STATE_DSN_FILE    file holding the PostgreSQL DSN (never on the command line)
    SKERRY_HUB_STATE_DSN         the PostgreSQL DSN itself (environment only)
    SKERRY_HUB_HUB_ID            this process's name as the writer-lease holder   the host name
    SKERRY_HUB_LEASE_TTL         writer lease lifetime (renewed at a third)   15s
    SKERRY_HUB_ROLE              writer (sync, render, sign under the lease), serve (agents only,
                                 from the state; no keys) or both   both
    SKERRY_HUB_RENDER_TIMEOUT    limit for one render tool run         120s
    SKERRY_HUB_READY_FILE        JSON {"port", "trust_root", ...} written when serving
    SKERRY_HUB_LOG_LEVEL         debug, info, warning, error           info
    SKERRY_HUB_ENROLL_LISTEN     enrollment listener host:port (server TLS only,
                                 bootstrap tokens; unset: no enrollment listener)
    SKERRY_HUB_AGENT_CERT_LIFETIME  lifetime of enrolled agents' certificates   24h
    SKERRY_HUB_METRICS_LISTEN    plaintext /metrics, /healthz, /readyz host:port   off
    SKERRY_HUB_DASHBOARD_LISTEN  read-only fleet dashboard (HTTPS, the hub's TLS files) host:port   off
    SKERRY_HUB_DASHBOARD_TOKEN_FILE  a file holding a bearer token that also opens the dashboard
                                 (besides operator client certificates)               none
    SKERRY_HUB_ENGINE            auto (in-process kustomize if present, else the binary),
                                 inprocess or binary                   auto
    SKERRY_HUB_TAG               follow this tag instead of the branch
    SKERRY_HUB_COMMIT            pin this commit (40 hex) instead of the branch
    SKERRY_HUB_DEPTH             shallow fetches of this many commits   (full)
    SKERRY_HUB_GIT_SSH_KEY       SSH deploy key for ssh:// or user@host:path URLs
    SKERRY_HUB_GIT_KNOWN_HOSTS   known_hosts the server's key must be in (required with a key)
    SKERRY_HUB_GIT_TOKEN_FILE    file holding an HTTPS token (sent as a header, never in the URL)
    SKERRY_HUB_WEBHOOK_LISTEN    host:port of the push webhook (POST /hooks/git)   off
    SKERRY_HUB_WEBHOOK_SECRET_FILE  file holding the webhook secret (required with the webhook)
    SKERRY_HUB_PUSH_URL          where promotion commits are pushed    the repo
    SKERRY_HUB_PUSH_BRANCH       push promotions to this branch for review instead
    SKERRY_HUB_PUSH_SSH_KEY      deploy key for pushing over ssh

Serving requires all three TLS files: every hub connection is mutual TLS.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import pathlib
import re
import socket
from collections.abc import Mapping
from typing import Any

from skerry.core.duration import parse_duration
from skerry.core.errors import ConfigError
from skerry.core.tls import TlsFiles
from skerry.hub.state import check_spec

ENV_PREFIX = "SKERRY_HUB_"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LISTEN = "127.0.0.1:7440"
DEFAULT_INTERVAL = 60.0
DEFAULT_RENDER_TIMEOUT = 120.0
ROLES = ("writer", "serve", "both")



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
    repo: str
    branch: str = "main"
    interval: float = DEFAULT_INTERVAL
    listen: str = DEFAULT_LISTEN
    tls: TlsFiles | None = None
    state_dir: pathlib.Path = dataclasses.field(default_factory=_default_state_dir)
    render_timeout: float = DEFAULT_RENDER_TIMEOUT
    ready_file: pathlib.Path | None = None
    log_level: str = "info"
    # TUF trust repository (``skerry keys init``): the only way the hub releases bundles.
    trust_dir: pathlib.Path | None = None
    # "env=KEYFILE" release keys the hub may sign with itself (dev only: collapses the release/director split).
    release_keys: tuple[tuple[str, pathlib.Path], ...] = ()
    trust_refresh: float = 30.0  # seconds between checks for expiring online metadata / offline changes
    enroll_listen: str | None = None
    agent_cert_lifetime: _dt.timedelta = _dt.timedelta(hours=24)
    metrics_listen: str = ""  # "": no metrics server
    dashboard_listen: str = ""  # "": no dashboard
    dashboard_token_file: pathlib.Path | None = None
    engine: str = "auto"
    tag: str | None = None
    commit: str | None = None
    depth: int | None = None
    git_ssh_key: pathlib.Path | None = None
    git_known_hosts: pathlib.Path | None = None
    git_token_file: pathlib.Path | None = None
    webhook_listen: str | None = None
    webhook_secret_file: pathlib.Path | None = None
    # promotion (issue 8): where the hub pushes its commits
    push_url: str | None = None  # None: the repo it follows
    push_branch: str | None = None  # None: the followed branch; else a branch for review
    push_ssh_key: pathlib.Path | None = None
    # hub state (issue 14): "" = SQLite at <state_dir>/hub.db; "sqlite:///PATH"; "postgresql"
    state: str = ""
    state_dsn_file: pathlib.Path | None = None
    state_dsn: str | None = dataclasses.field(default=None, repr=False)  # environment only: a secret
    hub_id: str = dataclasses.field(default_factory=socket.gethostname)
    lease_ttl: float = 15.0
    # writer: takes the writer lease (sync, render, sign); serve: serves agents from the state only (no keys);
    # both: serves, and writes while it holds the lease
    role: str = "both"

    def __post_init__(self) -> None:
        if not self.repo or not str(self.repo).strip():
            raise ConfigError(f"repo: a repository path or URL is required ({ENV_PREFIX}REPO or --repo)")
        check_branch(self.branch)
        check_listen(self.listen)
        if self.enroll_listen is not None:
            check_listen(self.enroll_listen, "enroll_listen")
        if not self.interval > 0:
            raise ConfigError(f"interval: must be positive, got {self.interval}")
        if not self.render_timeout > 0:
            raise ConfigError(f"render_timeout: must be positive, got {self.render_timeout}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.engine not in ("auto", "inprocess", "binary"):
            raise ConfigError(f"engine: {self.engine!r} is not one of auto, inprocess, binary")
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
        if self.webhook_listen is not None:
            check_listen(self.webhook_listen, "webhook_listen")
            if self.webhook_secret_file is None:
                raise ConfigError(
                    f"webhook_secret_file: required with webhook_listen ({ENV_PREFIX}WEBHOOK_SECRET_FILE)"
                )
        object.__setattr__(self, "state_dir", pathlib.Path(self.state_dir))
        if self.ready_file is not None:
            object.__setattr__(self, "ready_file", pathlib.Path(self.ready_file))
        for name in ("metrics_listen", "dashboard_listen"):
            if getattr(self, name):
                check_listen(getattr(self, name), name)
        if self.dashboard_token_file is not None:
            object.__setattr__(self, "dashboard_token_file", pathlib.Path(self.dashboard_token_file))
        object.__setattr__(self, "state", check_spec(self.state))
        if self.state == "postgresql" and not (self.state_dsn_file or self.state_dsn):
            raise ConfigError(
                f"state: postgresql needs a DSN ({ENV_PREFIX}STATE_DSN_FILE / --state-dsn-file, or {ENV_PREFIX}STATE_DSN)"
            )
        if self.state_dsn_file is not None:
            object.__setattr__(self, "state_dsn_file", pathlib.Path(self.state_dsn_file))
        if not self.hub_id or len(self.hub_id) > 253:
            raise ConfigError(f"hub_id: must be 1..253 characters, got {self.hub_id!r}")
        if self.role not in ROLES:
            raise ConfigError(f"role: {self.role!r} is not one of {', '.join(ROLES)}")
        if not 1.0 <= self.lease_ttl <= 600.0:
            raise ConfigError(f"lease_ttl: must be between 1s and 10m, got {self.lease_ttl}")
        if self.push_branch is not None:
            check_branch(self.push_branch, "push_branch")
        if self.push_ssh_key is not None:
            object.__setattr__(self, "push_ssh_key", pathlib.Path(self.push_ssh_key))
            if self.git_known_hosts is None:
                raise ConfigError(
                    f"push_ssh_key: needs git_known_hosts ({ENV_PREFIX}GIT_KNOWN_HOSTS); the push checks the "
                    "server's host key like the fetch, never trust-on-first-use"
                )

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
        """Build from ``SKERRY_HUB_*`` (default ``os.environ``); non-None ``overrides`` win.

        Overrides are field names, plus ``tls_ca``/``tls_cert``/``tls_key`` for the three TLS paths.
        """
        env = os.environ if environ is None else environ

        def pick(field: str) -> Any:
            value = overrides.get(field)
            if value is not None:
                return value
            raw = env.get(ENV_PREFIX + field.upper())
            return raw if raw not in (None, "") else None

        known = {f.name for f in dataclasses.fields(cls)} | {"tls_ca", "tls_cert", "tls_key"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown hub setting(s): {', '.join(unknown)}")

        kwargs: dict[str, Any] = {"repo": pick("repo") or ""}
        if (branch := pick("branch")) is not None:
            kwargs["branch"] = str(branch)
        if (listen := pick("listen")) is not None:
            kwargs["listen"] = str(listen)
        if (enroll := pick("enroll_listen")) is not None:
            kwargs["enroll_listen"] = str(enroll)
        if (lifetime := pick("agent_cert_lifetime")) is not None:
            seconds = parse_duration(lifetime, f"agent_cert_lifetime ({ENV_PREFIX}AGENT_CERT_LIFETIME)")
            kwargs["agent_cert_lifetime"] = _dt.timedelta(seconds=seconds)
        if (interval := pick("interval")) is not None:
            kwargs["interval"] = parse_duration(interval, f"interval ({ENV_PREFIX}INTERVAL)")
        if (timeout := pick("render_timeout")) is not None:
            kwargs["render_timeout"] = parse_duration(timeout, f"render_timeout ({ENV_PREFIX}RENDER_TIMEOUT)")
        for field in ("metrics_listen", "dashboard_listen"):
            if (value := pick(field)) is not None:
                kwargs[field] = str(value)
        for field in ("engine", "tag", "commit", "webhook_listen"):
            if (value := pick(field)) is not None:
                kwargs[field] = str(value)
        if (depth := pick("depth")) is not None:
            try:
                kwargs["depth"] = int(depth)
            except ValueError as e:
                raise ConfigError(f"depth ({ENV_PREFIX}DEPTH): {depth!r} is not a number") from e
        for field in ("git_ssh_key", "git_known_hosts", "git_token_file", "webhook_secret_file"):
            if (value := pick(field)) is not None:
                kwargs[field] = pathlib.Path(value).expanduser()
        if (trust_dir := pick("trust_dir")) is not None:
            kwargs["trust_dir"] = pathlib.Path(trust_dir).expanduser()
        if (release_keys := pick("release_keys")) is not None:
            kwargs["release_keys"] = parse_release_keys(release_keys)
        if (refresh := pick("trust_refresh")) is not None:
            kwargs["trust_refresh"] = parse_duration(refresh, f"trust_refresh ({ENV_PREFIX}TRUST_REFRESH)")
        for field in ("state_dir", "ready_file", "dashboard_token_file"):
            if (value := pick(field)) is not None:
                kwargs[field] = pathlib.Path(value).expanduser()
        for field in ("push_url", "push_branch"):
            if (value := pick(field)) is not None:
                kwargs[field] = str(value)
        for field in ("state", "state_dsn", "hub_id", "role"):
            if (value := pick(field)) is not None:
                kwargs[field] = str(value)
        if (value := pick("state_dsn_file")) is not None:
            kwargs["state_dsn_file"] = pathlib.Path(value).expanduser()
        if (ttl := pick("lease_ttl")) is not None:
            kwargs["lease_ttl"] = parse_duration(ttl, f"lease_ttl ({ENV_PREFIX}LEASE_TTL)")
        if (value := pick("push_ssh_key")) is not None:
            kwargs["push_ssh_key"] = pathlib.Path(value).expanduser()
        if (level := pick("log_level")) is not None:
            kwargs["log_level"] = str(level).lower()

        tls = overrides.get("tls")
        if tls is None:
            parts = {name: pick(name) for name in ("tls_ca", "tls_cert", "tls_key")}
            given = {k for k, v in parts.items() if v is not None}
            if given and given != set(parts):
                missing = ", ".join(f"{ENV_PREFIX}{k.upper()}" for k in sorted(set(parts) - given))
                raise ConfigError(f"tls: CA, certificate and key go together; missing {missing}")
            if given:
                tls = TlsFiles(
                    ca=pathlib.Path(parts["tls_ca"]).expanduser(),
                    cert=pathlib.Path(parts["tls_cert"]).expanduser(),
                    key=pathlib.Path(parts["tls_key"]).expanduser(),
                )
        kwargs["tls"] = tls
        return cls(**kwargs)
