"""Talking to the cluster being installed into: what an earlier install left, and applying objects.

Uses the agent's Kubernetes client (``skerry.agent.kube``, the one home of the kubernetes library)
with kubectl's kubeconfig order and never the in-cluster service account. Objects go in with
server-side apply under the field manager ``skerry-install``: Namespaces and CRDs first, so the
objects in them are accepted, and an unchanged object is not written at all.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable

from skerry.agent.kube import KubeClient
from skerry.core.errors import ConfigError

FIELD_MANAGER = "skerry-install"
# Kinds that others live in or are typed by: applied first.
FIRST = ("Namespace", "CustomResourceDefinition")
CURRENT_MINOR = 99  # an API server that does not say: assume it takes today's spellings


@dataclasses.dataclass(frozen=True)
class Applied:
    kind: str
    namespace: str
    name: str
    action: str  # created, configured, unchanged

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.lower()}/{where}{self.name} {self.action}"


def connect(kubeconfig: pathlib.Path | None, context: str | None) -> KubeClient:
    return KubeClient.from_kubeconfig(kubeconfig, context)


def existing(kube: KubeClient, namespace: str, names: Iterable[tuple[str, str]]) -> dict[str, dict]:
    """The live objects among ``(kind, name)`` (Secrets and ConfigMaps of ``namespace``), by name."""
    found = {}
    for kind, name in names:
        obj = kube.get("v1", kind, name, namespace)
        if obj is not None:
            found[name] = obj
    return found


def read_secret(kube: KubeClient, namespace: str, name: str, context: str | None) -> dict:
    obj = kube.get("v1", "Secret", name, namespace)
    if obj is None:
        where = f"context {context}" if context else "the current kubeconfig context"
        raise ConfigError(f"no Secret {namespace}/{name} in {where}: is this the management cluster "
                          "(skerry install)? give --context")
    return obj


def check_secret_key(kube: KubeClient, namespace: str, name: str, key: str, flag: str) -> None:
    """Refuse in one line unless Secret ``namespace/name`` exists and has ``key`` (a Secret the user makes)."""
    obj = kube.get("v1", "Secret", name, namespace)
    if obj is None:
        raise ConfigError(f"{flag} {name}: no Secret {namespace}/{name} in the cluster; create it first "
                          f"(its key {key!r} holds the value)")
    if key not in (obj.get("data") or {}):
        raise ConfigError(f"{flag} {name}: Secret {namespace}/{name} has no key {key!r}")


def server_minor(kube: KubeClient) -> int:
    """The API server's minor version (``/version``), e.g. 29; an unparsable answer counts as current."""
    digits = "".join(ch for ch in str(kube.server_version().get("minor", "")) if ch.isdigit())
    return int(digits) if digits else CURRENT_MINOR


def ordered(objects: list[dict]) -> list[dict]:
    return sorted(objects, key=lambda o: 0 if o.get("kind") in FIRST else 1)


def apply(kube: KubeClient, objects: list[dict]) -> list[Applied]:
    done = []
    for obj in ordered(objects):
        result = kube.apply(obj, field_manager=FIELD_MANAGER)
        meta = obj["metadata"]
        done.append(Applied(obj["kind"], meta.get("namespace", ""), meta["name"], result.action))
        if obj.get("kind") == "CustomResourceDefinition":
            kube.invalidate_discovery()
    return done
