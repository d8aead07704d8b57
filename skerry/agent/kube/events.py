"""Recording a ``v1`` Event: the one typed (non-dynamic) API the agent calls.

``EventVerbs.create_event`` (mixed into ``KubeClient`` over
``client.KubeConnection``) is what ``skerry/agent/events.py`` uses to
leave Events beside the in-cluster ``BundleStatus``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client import CoreV1Api


class EventVerbs:
    """Create Events (a ``KubeConnection`` mixin)."""

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        """Record a ``v1`` Event in ``namespace``."""
        api = CoreV1Api(self._api)
        self._call(
            f"Event in {namespace}",
            lambda: api.create_namespaced_event(namespace, dict(body), _request_timeout=self._timeout),
        )
