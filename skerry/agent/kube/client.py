"""The connection every verb shares: credentials, the connection pool, discovery, one request.

``KubeConnection`` owns the ``kubernetes`` ``ApiClient`` and a
``DynamicClient`` whose discovery lives in memory only (never in a shared
temp file: a stale file there can hide a kind). Kinds are looked up by
apiVersion + kind and cached; a miss invalidates the cache and retries
once, because a CRD applied in the same bundle adds kinds. The verbs
(``objects``, ``applying``, ``watching``, ``events``) build on it and are
put together as ``KubeClient`` in the package facade.

All calls block (the client is synchronous); the async agent runs them with
``asyncio.to_thread``. Request bodies are never logged: they may be Secrets.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from skerry.agent.kube.errors import ignoring_not_found, translated
from skerry.agent.kube.objects import describe
from skerry.agent.reasons import UNKNOWN_KIND
from skerry.core.errors import ConfigError, KubeError

T = TypeVar("T")

# Idle keep-alive connections the client keeps to the API server. urllib3 opens a new connection
# whenever none is idle and closes it on return when the pool is full, so this must exceed the apply
# workers plus one per open watch (the monitor holds one per watched kind); the client's default
# (5 x CPUs, i.e. 5 in a 1-CPU pod) would have every apply pay a fresh TLS handshake.
POOL_MAXSIZE = 64

_KUBECONFIG_ERRORS = (ConfigException, OSError, ValueError, TypeError, KeyError)


class _MemoryDiscoverer(LazyDiscoverer):
    """LazyDiscoverer that keeps its cache in memory only.

    The stock discoverer persists to a temp file shared by every process of
    the same user talking to the same host; a stale file there can hide a
    kind. Pointing it at a path that never exists and never writing makes
    each client start from live discovery.
    """

    def _write_cache(self):  # noqa: D401 - override
        return None


class KubeConnection:
    """One API server: the pool, discovery, error translation and the raw request."""

    def __init__(self, api_client: ApiClient, *, request_timeout: float = 30.0):
        self._api = api_client
        self._timeout = request_timeout
        self._lock = threading.RLock()
        self._dyn: DynamicClient | None = None
        self._resources: dict[tuple[str, str], Any] = {}

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike | None = None,
        context: str | None = None,
        *,
        in_cluster_first: bool = False,
        request_timeout: float = 30.0,
    ):
        """kubectl's order: ``path`` (the flag), else ``$KUBECONFIG`` (a ``:``-list), else ``~/.kube/config``.

        ``in_cluster_first`` (only ``skerry agent run``, a pod) tries the pod's service account
        before any kubeconfig; an operator's command never silently talks to the cluster it runs in.
        """
        configuration = Configuration()
        configuration.connection_pool_maxsize = POOL_MAXSIZE
        if path is None and in_cluster_first and _load_in_cluster(configuration):
            return cls(ApiClient(configuration=configuration), request_timeout=request_timeout)
        _load_kubeconfig(_kubeconfig_source(path, in_cluster_first), context, configuration)
        return cls(ApiClient(configuration=configuration), request_timeout=request_timeout)

    @property
    def api_client(self) -> ApiClient:
        """The underlying ``kubernetes.client.ApiClient`` (e.g. for impersonation headers in tests)."""
        return self._api

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    def close(self) -> None:
        try:
            self._api.close()
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass

    # --- discovery ----------------------------------------------------------------------------

    def _dynamic(self) -> DynamicClient:
        with self._lock:
            if self._dyn is None:
                never_written = (
                    pathlib.Path(tempfile.gettempdir()) / f"skerry-discovery-{uuid.uuid4().hex}.json"
                )
                self._dyn = self._call(
                    f"API server {self.host}",
                    lambda: DynamicClient(
                        self._api, cache_file=str(never_written), discoverer=_MemoryDiscoverer
                    ),
                )
            return self._dyn

    def invalidate_discovery(self) -> None:
        """Forget every discovered kind (e.g. after CRDs were applied)."""
        with self._lock:
            self._resources.clear()
            if self._dyn is not None:
                dyn = self._dyn
                self._call(f"API server {self.host}", dyn.resources.invalidate_cache)

    def _resource(self, api_version: str, kind: str, *, what: str | None = None):
        key = (api_version, kind)
        with self._lock:
            cached = self._resources.get(key)
            if cached is not None:
                return cached
            dyn = self._dynamic()
            group, _, version = api_version.rpartition("/")
            if group:
                search = {"prefix": "apis", "group": group, "api_version": version, "kind": kind}
            else:
                search = {"prefix": "api", "api_version": version, "kind": kind}
            label = what or describe(api_version, kind, "").rstrip()
            try:
                # LazyDiscoverer.search invalidates its cache and retries once on a miss.
                resource = self._call(label, lambda: dyn.resources.get(**search))
            except (ResourceNotFoundError, ResourceNotUniqueError) as e:
                raise KubeError(
                    f"{label}: the API server does not serve kind {kind} in {api_version}",
                    reason=UNKNOWN_KIND,
                ) from e
            self._resources[key] = resource
            return resource

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self._resource(api_version, kind).namespaced)

    def _locate(self, api_version: str, kind: str, name: str, namespace: str | None):
        """``(what, resource, namespace)``: the label for messages, the discovered kind, and the
        namespace to address (None for a cluster-scoped kind, whatever the caller passed)."""
        what = describe(api_version, kind, name, namespace)
        resource = self._resource(api_version, kind, what=what)
        return what, resource, (namespace if resource.namespaced else None)

    # --- requests -----------------------------------------------------------------------------

    def _get_raw(self, resource, name: str, namespace: str | None, what: str) -> dict | None:
        """The object as a dict, ``None`` if it does not exist (shared by reads and applies)."""
        resp = ignoring_not_found(lambda: self._request(what, "get", resource, name=name, namespace=namespace))
        return None if resp is None else json.loads(resp.data)

    def _request(self, what: str, verb: str, resource, **kw):
        """One call of the dynamic client's ``verb`` (get, delete, patch, server_side_apply) on ``resource``:
        the answer left unparsed, bounded by the client's timeout, an error translated naming ``what``."""
        return self._call(
            what, lambda: getattr(self._dynamic(), verb)(resource, serialize=False, _request_timeout=self._timeout, **kw)
        )

    def _send(
        self, method: str, path: str, query: list, body: bytes | None, content_type: str
    ) -> tuple[int, bytes]:
        """One request with a pre-encoded body; ``(status, body bytes)``; ``ApiException`` on non-2xx.

        The hot path of a reconcile (one apply per object): it skips the
        dynamic client's per-request model serialisation and response
        wrapping, so the agent spends its CPU (2 cores shared with the API
        server on small nodes) on little more than TLS and ``json``.
        """
        request = self._api.param_serialize(
            method,
            path,
            query_params=query,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self._api.call_api(*request, _request_timeout=self._timeout)
        data = resp.read()
        if not 200 <= resp.status <= 299:
            self._api.response_deserialize(resp, {})  # raises the ApiException for this status
        return resp.status, data

    def server_version(self) -> dict:
        """The API server's ``/version`` (``{"major": "1", "minor": "29", "gitVersion": ...}``)."""
        _status, data = self._call(f"API server {self.host} /version",
                                   lambda: self._send("GET", "/version", [], None, "application/json"))
        return json.loads(data)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return translated(what, self.host, fn)


def _load_in_cluster(configuration: Configuration) -> bool:
    try:
        kube_config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        return False
    return True


def _kubeconfig_source(path: str | os.PathLike | None, in_cluster_first: bool) -> str:
    """The kubeconfig kubectl would read: the flag, else ``$KUBECONFIG``, else ``~/.kube/config``."""
    if path is not None:
        if not pathlib.Path(path).is_file():
            raise ConfigError(f"kubeconfig {path} does not exist")
        return str(path)
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    source = str(pathlib.Path("~/.kube/config").expanduser())
    if not pathlib.Path(source).is_file():
        raise ConfigError(f"no kubeconfig: give --kubeconfig, set $KUBECONFIG, or create {source}"
                          + (" (not in a cluster either)" if in_cluster_first else ""))
    return source


def _load_kubeconfig(source: str, context: str | None, configuration: Configuration) -> None:
    try:
        kube_config.load_kube_config(
            config_file=source, context=context, client_configuration=configuration, persist_config=False
        )
    except _KUBECONFIG_ERRORS as e:
        raise ConfigError(f"cannot load kubeconfig {source}: {' '.join(str(e).split())}") from e
