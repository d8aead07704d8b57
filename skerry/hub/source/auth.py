"""How the hub reaches a Git remote: credentials, the environment git runs in, URLs safe to print.

Credentials (``GitAuth``): an SSH deploy key is used with ``IdentitiesOnly`` and strict host-key
checking against the given ``known_hosts`` (never trust-on-first-use); an HTTPS token is sent as an
``Authorization`` header through ``GIT_CONFIG_*`` environment variables, so it is never in a URL,
never on a command line (``ps``), never in the mirror's config on disk and never in a log line.
Git never prompts: ``GIT_ENV`` sets ``GIT_TERMINAL_PROMPT=0`` and clears the askpass helpers.
"""

from __future__ import annotations

import base64
import dataclasses
import pathlib
import re
import shlex
import urllib.parse

from skerry.core.errors import ConfigError

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


@dataclasses.dataclass(frozen=True)
class GitAuth:
    """How to authenticate to the remote. ``repr`` never shows the token."""

    ssh_key: pathlib.Path | None = None
    known_hosts: pathlib.Path | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    token_user: str = "x-access-token"  # GitHub's convention; GitLab accepts any user with a token

    def __post_init__(self) -> None:
        if self.ssh_key is not None and self.known_hosts is None:
            raise ConfigError(
                "git ssh key: a known_hosts file is required (host keys are checked, never trusted on first use)"
            )
        if self.token is not None and (not self.token.strip() or any(c in self.token for c in "\r\n")):
            raise ConfigError("git token: must be one non-empty line")

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.ssh_key is not None:
            ssh = [
                "ssh",
                "-F", "/dev/null",
                "-i", str(self.ssh_key),
                "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none",
                "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=30",
            ]  # fmt: skip
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)
            env["GIT_SSH_VARIANT"] = "ssh"
        if self.token is not None:
            basic = base64.b64encode(f"{self.token_user}:{self.token.strip()}".encode()).decode()
            env["GIT_CONFIG_COUNT"] = "1"
            env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
            env["GIT_CONFIG_VALUE_0"] = f"Authorization: Basic {basic}"
        return env


def redact_url(url: str) -> str:
    """``url`` without user info (``https://user:token@host/x`` -> ``https://host/x``)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def normalise_url(repo: str) -> str:
    """Local paths become absolute; URLs are kept as given.

    URLs are ``scheme://...`` and git's scp-like ``[user@]host:path`` (a colon before any slash),
    unless such a name exists as a local path.
    """
    repo = str(repo).strip()
    if "://" in repo:
        return repo
    if re.match(r"^[^/]+:", repo) and not pathlib.Path(repo).expanduser().exists():
        return repo
    return str(pathlib.Path(repo).expanduser().resolve())
