"""Pure: fill in the API server's own defaults where server-side apply needs them up front.

Before Kubernetes 1.21 (kubernetes/kubernetes#98576) a server-side apply
of a port list whose entries omit ``protocol`` fails with "associative list
with keys has an element that omits key field protocol": ``protocol`` is
part of the list's merge key but was not defaulted before the merge.
``kubectl apply`` (client side) hides this; an SSA client must set the
default itself. The value set is exactly the server default (``TCP``), so
the stored object is the same either way.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

_POD_TEMPLATE_PATHS = {
    # kind -> path from the object to its PodSpec
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_NATIVE_GROUPS = {"", "apps", "batch", "extensions"}
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def set_native_defaults(obj: MutableMapping[str, Any]) -> None:
    """Default ``protocol: TCP`` on Service ports and container ports, in place."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    if group not in _NATIVE_GROUPS:
        return
    kind = obj.get("kind")
    if kind == "Service" and group == "":
        _default_protocol((obj.get("spec") or {}).get("ports"))
        return
    path = _POD_TEMPLATE_PATHS.get(str(kind))
    if path is None:
        return
    spec: Any = obj
    for key in path:
        spec = spec.get(key) if isinstance(spec, MutableMapping) else None
        if spec is None:
            return
    if not isinstance(spec, MutableMapping):
        return
    for list_name in _CONTAINER_LISTS:
        for container in spec.get(list_name) or ():
            if isinstance(container, MutableMapping):
                _default_protocol(container.get("ports"))


def _default_protocol(ports: Any) -> None:
    if not isinstance(ports, list):
        return
    for port in ports:
        if isinstance(port, MutableMapping) and not port.get("protocol"):
            port["protocol"] = "TCP"
