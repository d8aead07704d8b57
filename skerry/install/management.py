"""The management cluster's installation as a list of objects: material, Git access, the overlay.

``plan`` is the whole decision and applies nothing: it recovers the material of an earlier
install from the live objects (or makes new material), adds the Git credentials and the
rendered ``deploy/overlays/management`` (or ``deploy/overlays/ha``: hub replicas on a PostgreSQL
whose DSN Secret the user made, with the Secrets the replicas share), and checks that every Secret,
ConfigMap and volume claim a workload references is among the objects. ``skerry install`` then applies or prints the list.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from skerry.core.errors import ConfigError
from skerry.core.files import read_bounded
from skerry.install import material as m
from skerry.install.manifests import HA, HUB_SETTINGS, MANAGEMENT, Overlay, references

GIT_SECRET = "skerry-hub-git"
# Where agents of other clusters reach the hub and the sealer (read by `skerry cluster add --install`).
ADDRESSES = "skerry-install"
GIT_MOUNT = "/git"  # the skerry-hub-git Secret's mount path in deploy/base/hub/deployment.yaml
# An SSH key, a known_hosts file or a token: a few KiB.
MAX_CREDENTIAL_BYTES = 64 * 1024
HUB_PORT, ENROLL_PORT, SEALER_PORT = 7440, 7441, 7443
# The DSN Secret deploy/overlays/ha's hub reads (CloudNativePG's name for it) and the key holding the DSN.
HA_DATABASE_SECRET, DATABASE_KEY = "skerry-hub-db-app", "uri"


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
    # Hub replicas (deploy/overlays/ha) on the PostgreSQL whose DSN is this Secret's ``uri``; None: one hub.
    database_secret: str | None = None

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
    database = settings.database_secret
    overlay = Overlay(deploy_dir, MANAGEMENT if database is None else HA, {HUB_SETTINGS: hub_settings})
    rendered = overlay.render(settings.engine)
    if database is None:
        objects += rendered
        check_references(objects)
    else:
        objects += material.replica_objects() + [_with_database(o, database) for o in rendered]
        check_references(objects, given={("Secret", database)})
    return Plan(objects, material, new)


def _with_database(obj: dict, name: str) -> dict:
    """``obj`` with the overlay's DSN Secret volume pointing at the user's Secret ``name``."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    if name == HA_DATABASE_SECRET or not any(
            (v.get("secret") or {}).get("secretName") == HA_DATABASE_SECRET for v in pod.get("volumes") or []):
        return obj
    volumes = [{**v, "secret": {**v["secret"], "secretName": name}}
               if (v.get("secret") or {}).get("secretName") == HA_DATABASE_SECRET else v for v in pod["volumes"]]
    template = obj["spec"]["template"]
    return {**obj, "spec": {**obj["spec"], "template": {**template, "spec": {**pod, "volumes": volumes}}}}


def check_references(objects: list[dict], given: set[tuple[str, str]] = frozenset()) -> None:
    """Refuse a list whose workloads need a Secret, ConfigMap or claim it does not hold (a manifest bug).

    ``given``: objects the user makes (the database Secret), checked in the cluster instead.
    """
    have = {(o["kind"], o["metadata"]["name"]) for o in objects} | set(given)
    missing = sorted(references(objects) - have)
    if missing:
        raise ConfigError("the manifests reference objects the installation does not make: "
                          + ", ".join(f"{kind} {name}" for kind, name in missing))
