"""The Kubernetes API, through the official client: the only package that imports ``kubernetes``.

Split by verb (the shape of fluxcd/pkg ``ssa`` and kopf's clients), put
together again as one facade, ``KubeClient``, so callers see one object:

* ``client``    ``KubeConnection``: kubeconfig, the connection pool, in-memory discovery, one raw request
* ``errors``    every failure -> ``KubeError`` with a named reason; apply-conflict parsing
* ``objects``   get / list / delete / annotate, the agent's own objects; naming and comparing objects
* ``applying``  server-side apply of objects and status subresources (``ApplyResult``)
* ``watching``  watch one kind from a resourceVersion
* ``events``    create a ``v1`` Event

All calls block (the client is synchronous); the async agent runs them with
``asyncio.to_thread``. Request bodies are never logged: they may be Secrets.
"""

from __future__ import annotations

from skerry.agent.kube.applying import CONFIGURED, CREATED, UNCHANGED, ApplyResult, ApplyVerbs
from skerry.agent.kube.client import POOL_MAXSIZE, KubeConnection
from skerry.agent.kube.errors import conflicting_managers
from skerry.agent.kube.events import EventVerbs
from skerry.agent.kube.objects import ObjectVerbs, describe, describe_object
from skerry.agent.kube.watching import WatchVerbs

__all__ = [
    "CONFIGURED",
    "CREATED",
    "POOL_MAXSIZE",
    "UNCHANGED",
    "ApplyResult",
    "KubeClient",
    "conflicting_managers",
    "describe",
    "describe_object",
]


class KubeClient(ObjectVerbs, ApplyVerbs, WatchVerbs, EventVerbs, KubeConnection):
    """A synchronous client for the few operations the agent needs (every verb over one connection)."""
