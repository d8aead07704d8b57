"""Reading, deleting and annotating objects, and how an object is named and compared.

The plain verbs (``get``, ``list_objects``, ``delete``, ``annotate``) and
the agent's own objects (its namespace, the inventory ConfigMap, a CRD's
``Established`` check) as ``ObjectVerbs``, mixed into ``KubeClient`` over
``client.KubeConnection``. The pure helpers name an object the way every
message does (``apps/Deployment web -n shop``) and strip what the API
server owns, for the apply body and for "did it change" comparisons.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.agent.kube.errors import ignoring_not_found
from skerry.agent.reasons import NOT_FOUND
from skerry.core.errors import KubeError

# Fields the API server owns; sending them with an apply would be a precondition or an error.
SERVER_METADATA = ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation", "selfLink")


def describe(api_version: str, kind: str, name: str, namespace: str | None = None) -> str:
    """``apps/Deployment web -n shop`` (core kinds without a group: ``ConfigMap x -n y``)."""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    gk = f"{group}/{kind}" if group else kind
    return f"{gk} {name}" + (f" -n {namespace}" if namespace else "")


def describe_object(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return describe(
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("name", "")),
        meta.get("namespace"),
    )


def apply_body(obj: Mapping[str, Any], namespace: str | None) -> dict:
    """``obj`` without server-owned metadata, in ``namespace`` (none for a cluster-scoped kind)."""
    # Only the top level and metadata are changed: a shallow copy of those leaves ``obj`` intact.
    body = dict(obj)
    meta = dict(body.get("metadata") or {})
    for field in SERVER_METADATA:
        meta.pop(field, None)
    if namespace:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    body["metadata"] = meta
    return body


def comparable(obj: Mapping[str, Any], ignore_annotations: Iterable[str]) -> dict:
    """What must be equal for two stored versions of an object to count as unchanged."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_METADATA}
    ignored = set(ignore_annotations)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in ignored}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


class ObjectVerbs:
    """get / list / delete / annotate, and the agent's own objects (a ``KubeConnection`` mixin)."""

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The live object as a dict, or ``None`` if it does not exist."""
        what, resource, ns = self._locate(api_version, kind, name, namespace)
        return self._get_raw(resource, name, ns, what)

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> bool:
        """Delete one object; ``False`` if it was already gone."""
        what, resource, ns = self._locate(api_version, kind, name, namespace)
        gone = ignoring_not_found(
            lambda: self._request(what, "delete", resource, name=name, namespace=ns, propagation_policy=propagation)
        )
        return gone is not None

    def list_objects(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict], str]:
        """``(items, resourceVersion)`` of one kind (cluster-wide when ``namespace`` is None)."""
        what, resource, ns = self._locate(api_version, kind, "*", namespace)
        resp = self._request(
            what, "get", resource, namespace=ns, label_selector=label_selector, field_selector=field_selector
        )
        doc = json.loads(resp.data)
        items = doc.get("items") or []
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items, str((doc.get("metadata") or {}).get("resourceVersion", ""))

    def annotate(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        annotations: Mapping[str, str | None],
        *,
        field_manager: str = "skerry-cli",
    ) -> dict:
        """Merge-patch annotations (``None`` removes one); returns the patched object."""
        what, resource, ns = self._locate(api_version, kind, name, namespace)
        resp = self._request(
            what,
            "patch",
            resource,
            body={"metadata": {"annotations": dict(annotations)}},
            name=name,
            namespace=ns,
            content_type="application/merge-patch+json",
            field_manager=field_manager,
        )
        return json.loads(resp.data)

    # --- the agent's own objects --------------------------------------------------------------

    def ensure_namespace(self, name: str, *, field_manager: str = "skerry") -> None:
        if self.get("v1", "Namespace", name) is None:
            self.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                field_manager=field_manager,
            )

    def get_configmap(self, namespace: str, name: str) -> dict | None:
        return self.get("v1", "ConfigMap", name, namespace)

    def put_configmap(
        self,
        namespace: str,
        name: str,
        *,
        data: Mapping[str, str] | None = None,
        binary_data: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        field_manager: str = "skerry",
    ) -> None:
        """Create or replace (by server-side apply) a ConfigMap, creating its namespace if missing."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
        }
        if labels:
            body["metadata"]["labels"] = dict(labels)
        if annotations:
            body["metadata"]["annotations"] = dict(annotations)
        if data:
            body["data"] = dict(data)
        if binary_data:
            body["binaryData"] = dict(binary_data)
        try:
            self.apply(body, field_manager=field_manager)
        except KubeError as e:
            if e.reason != NOT_FOUND:
                raise
            self.ensure_namespace(namespace, field_manager=field_manager)
            self.apply(body, field_manager=field_manager)

    def crd_established(self, name: str) -> bool:
        crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        if not crd:
            return False
        for cond in (crd.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Established" and cond.get("status") == "True":
                return True
        return False
