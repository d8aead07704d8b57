"""The management cluster's installation as a list of objects: material, Git access, the overlay.

``plan`` is the whole decision and applies nothing: it recovers the material of an earlier
install from the live objects (or makes new material), adds the Git credentials and the
rendered ``deploy/overlays/management``, and checks that every Secret, ConfigMap and volume claim
a workload references is among the objects. ``skerry install`` then applies or prints the list.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from skerry.core.errors import ConfigError
from skerry.core.files import read_bounded
from skerry.install import material as m
from skerry.install.manifests import HUB_SETTINGS, MANAGEMENT, Overlay, references

GIT_SECRET = "skerry-hub-git"
# Where agents of other clusters reach the hub and the sealer (read by `skerry cluster add --install`).
ADDRESSES = "skerry-install"
GIT_MOUNT = "/git"  # the skerry-hub-git Secret's mount path in deploy/base/hub/deployment.yaml
# An SSH key, a known_hosts file or a token: a few KiB.
MAX_CREDENTIAL_BYTES = 64 * 1024
HUB_PORT, ENROLL_PORT, SEALER_PORT = 7440, 7441, 7443


@dataclasses.dataclass(frozen=True)
class Settings:
    repo: str
    branch: str = "main"
    git_ssh_key: pathlib.Path | None = None
    git_known_hosts: pathlib.Path | None = None
    git_token_file: pathlib.Path | None = None
    environments: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=lambda: {"default": (1, 1)})
    # Names other clusters reach the hub and the sealer by (both certificates carry them); the first
    # is what `skerry cluster add --install` tells agents to dial.
    names: tuple[str, ...] = ()
    engine: str = "auto"

    def __post_init__(self) -> None:
        if not self.repo.strip():
            raise ConfigError("--repo: the Git repository the hub follows is required")
        if self.git_ssh_key is not None and self.git_token_file is not None:
            raise ConfigError("--git-ssh-key and --git-token-file: give one way to reach the repository")
        if (self.git_ssh_key is None) != (self.git_known_hosts is None):
            raise ConfigError("--git-ssh-key and --git-known-hosts go together (the server's host key is checked)")

    def addresses(self) -> dict[str, str]:
        """Where agents dial: the first external hub/sealer name, else the in-cluster Service names."""
        hub = self.names[0] if self.names else f"skerry-hub.{m.NAMESPACE}.svc"
        sealer = self.names[0] if self.names else f"skerry-sealer.{m.NAMESPACE}.svc"
        return {"hub": f"{hub}:{HUB_PORT}", "enroll": f"{hub}:{ENROLL_PORT}", "sealer": f"{sealer}:{SEALER_PORT}"}

    def git(self) -> tuple[dict[str, bytes], dict[str, str]]:
        """The skerry-hub-git Secret's files and the hub settings that point at them."""
        def read(path: pathlib.Path) -> bytes:
            return read_bounded(path, MAX_CREDENTIAL_BYTES, str(path))

        if self.git_ssh_key is not None and self.git_known_hosts is not None:
            key = f"{GIT_MOUNT}/ssh-privatekey"
            return ({"ssh-privatekey": read(self.git_ssh_key), "known_hosts": read(self.git_known_hosts)},
                    {"SKERRY_HUB_GIT_SSH_KEY": key, "SKERRY_HUB_GIT_KNOWN_HOSTS": f"{GIT_MOUNT}/known_hosts",
                     "SKERRY_HUB_PUSH_SSH_KEY": key})
        if self.git_token_file is not None:
            return {"token": read(self.git_token_file).strip()}, {"SKERRY_HUB_GIT_TOKEN_FILE": f"{GIT_MOUNT}/token"}
        return {}, {}


@dataclasses.dataclass(frozen=True)
class Plan:
    objects: list[dict]
    material: m.Material
    new: bool  # no earlier install: new keys were made


def plan(settings: Settings, offline: m.OfflineDir, live: Mapping[str, dict], deploy_dir: pathlib.Path) -> Plan:
    material = m.recover(live, offline, hub_names=settings.names, sealer_names=settings.names)
    new = material is None
    if material is None:
        material = m.create(offline, settings.environments, hub_names=settings.names,
                            sealer_names=settings.names)
    git_files, git_settings = settings.git()
    hub_settings = {"SKERRY_HUB_REPO": settings.repo, "SKERRY_HUB_BRANCH": settings.branch, **git_settings}
    objects = [m.configmap(ADDRESSES, m.NAMESPACE, settings.addresses()), *material.objects()]
    if git_files:
        objects.append(m.secret(GIT_SECRET, m.NAMESPACE, git_files))
    objects += Overlay(deploy_dir, MANAGEMENT, {HUB_SETTINGS: hub_settings}).render(settings.engine)
    check_references(objects)
    return Plan(objects, material, new)


def check_references(objects: list[dict]) -> None:
    """Refuse a list whose workloads need a Secret, ConfigMap or claim it does not hold (a manifest bug)."""
    have = {(o["kind"], o["metadata"]["name"]) for o in objects}
    missing = sorted(references(objects) - have)
    if missing:
        raise ConfigError("the manifests reference objects the installation does not make: "
                          + ", ".join(f"{kind} {name}" for kind, name in missing))
