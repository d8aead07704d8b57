"""Watching one kind: a long request yielding events, and the 410 that means "list again".

``WatchVerbs.watch`` (mixed into ``KubeClient`` over
``client.KubeConnection``) is what the drift monitor runs in its watch
threads; the list that precedes it is ``objects.ObjectVerbs.list_objects``.
"""

from __future__ import annotations

import threading

from kubernetes import watch as kube_watch

from skerry.agent.reasons import CONFLICT, UNAVAILABLE
from skerry.core.errors import KubeError

# The HTTP status of a watch whose resourceVersion is too old ("Expired"): the caller must re-list.
GONE = 410


class WatchVerbs:
    """Watch one kind from a resourceVersion (a ``KubeConnection`` mixin)."""

    def watch(
        self,
        api_version: str,
        kind: str,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        stop: threading.Event | None = None,
    ):
        """Yield ``(event_type, object_dict)`` from a watch until the server ends it (or ``stop``).

        One long request per call: the server closes it after
        ``timeout_seconds``; the caller re-watches from the last
        resourceVersion. ``Expired`` (HTTP 410) is raised as a ``KubeError``
        with reason ``Conflict``: the caller must list again.
        """
        what, resource, ns = self._locate(api_version, kind, "*", namespace)
        watcher = kube_watch.Watch()
        try:
            stream = self._call(
                what,
                lambda: self._dynamic().watch(
                    resource,
                    namespace=ns,
                    label_selector=label_selector,
                    field_selector=field_selector,
                    resource_version=resource_version,
                    timeout=timeout_seconds,
                    watcher=watcher,
                ),
            )
            while True:
                if stop is not None and stop.is_set():
                    return
                try:
                    event = self._call(what, lambda: next(stream))
                except StopIteration:
                    return
                etype = event.get("type")
                raw = event.get("raw_object") or {}
                if etype == "ERROR":
                    code = int(raw.get("code") or 0)
                    raise KubeError(
                        f"{what}: watch ended: {raw.get('message', '')}",
                        reason=CONFLICT if code == GONE else UNAVAILABLE,
                        http_status=code or None,
                    )
                yield etype, raw
        finally:
            watcher.stop()
