"""Checking rendered objects before they are published (pure, but for the schema files it reads).

Every object of a rendered path must have ``apiVersion``, ``kind`` and
``metadata.name``; names must be DNS-1123 subdomains (at most 253
characters of ``a-z0-9-.``, starting and ending alphanumeric; kinds whose
names are paths or contain ``:``, such as RBAC roles, are exempt), a
namespace a DNS-1123 label; a cluster-scoped kind (the built-in ones below,
and any kind a CustomResourceDefinition in the same render declares
``Cluster``-scoped) must not carry ``metadata.namespace``.

With a ``schemas.SchemaValidator`` each object is also checked against its
Kubernetes schema (the hub, ``skerry render --repo``); ``skerry render DIR``
checks structure only and so never loads the schema libraries.

Failures are ``RenderError``: ``<path>: <Kind> <namespace>/<name>: <problem> at <field>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from skerry.core.documents import clip_repr
from skerry.core.errors import RenderError
from skerry.core.logging import get_logger

if TYPE_CHECKING:
    from skerry.hub.render.schemas import SchemaValidator

log = get_logger("skerry.hub.render")  # structlog only when it logs (skerry render)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kinds whose names Kubernetes validates as path segments, not DNS subdomains.
PATH_SEGMENT_NAMES = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
CLUSTER_SCOPED = frozenset(
    {
        ("", "Namespace"), ("", "Node"), ("", "PersistentVolume"), ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"), ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"), ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "VolumeAttachment"),
        ("scheduling.k8s.io", "PriorityClass"), ("node.k8s.io", "RuntimeClass"),
        ("networking.k8s.io", "IngressClass"), ("apiregistration.k8s.io", "APIService"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("certificates.k8s.io", "CertificateSigningRequest"), ("policy", "PodSecurityPolicy"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    }
)  # fmt: skip


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def describe(obj: Mapping) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    ns, name = meta.get("namespace"), meta.get("name")
    return f"{obj.get('kind') or '<no kind>'} {f'{ns}/' if ns else ''}{name or '<no name>'}"


def check_objects(objects: Sequence[dict], path: str, schemas: SchemaValidator | None = None) -> None:
    """Raise ``RenderError`` for the first invalid object rendered from ``path``.

    Drops (in place, with a warning) ``metadata.namespace`` from cluster-scoped objects."""
    cluster_scoped = set(CLUSTER_SCOPED)
    for obj in objects:
        if obj.get("kind") == "CustomResourceDefinition" and isinstance(obj.get("spec"), Mapping):
            spec = obj["spec"]
            names = spec.get("names") if isinstance(spec.get("names"), Mapping) else {}
            if spec.get("scope") == "Cluster" and isinstance(names.get("kind"), str):
                cluster_scoped.add((str(spec.get("group", "")), names["kind"]))
    for i, obj in enumerate(objects):
        what = f"{path}: object #{i} ({describe(obj)})"
        for field in ("apiVersion", "kind"):
            if not isinstance(obj.get(field), str) or not obj.get(field):
                raise RenderError(f"{what}: lacks {field}")
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta.get("name"):
            raise RenderError(f"{what}: lacks metadata.name")
        name, ns, kind = meta["name"], meta.get("namespace"), obj["kind"]
        if kind in PATH_SEGMENT_NAMES:
            if name in (".", "..") or "/" in name or "%" in name:
                raise RenderError(
                    f"{what}: metadata.name {name!r} may not be '.', '..' or contain '/' or '%'"
                )
        elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise RenderError(
                f"{what}: metadata.name {name!r} is not a DNS-1123 subdomain "
                "(at most 253 lower-case a-z, 0-9, '-' or '.', starting and ending alphanumeric)"
            )
        if ns is not None and (_group(obj["apiVersion"]), kind) in cluster_scoped:
            log.warning(
                "metadata.namespace dropped from a cluster-scoped object",
                object=what,
                namespace=clip_repr(ns),
            )
            obj["metadata"] = {k: v for k, v in meta.items() if k != "namespace"}
        elif ns is not None and (not isinstance(ns, str) or len(ns) > 63 or not _DNS_LABEL.match(ns)):
            raise RenderError(f"{what}: metadata.namespace {ns!r} is not a DNS-1123 label")
        if schemas is not None:
            problem = schemas.problem(obj)
            if problem:
                raise RenderError(f"{what}: {problem}")
