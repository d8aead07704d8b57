"""The Kubernetes API, through the official client: the only module that imports ``kubernetes``.

``KubeClient`` wraps ``kubernetes.dynamic.DynamicClient``:

* resources are looked up by apiVersion + kind through discovery, cached in
  memory (never in a shared temp file); a miss invalidates the cache and
  retries once, because a CRD applied in the same bundle adds kinds;
* ``apply`` is server-side apply (``application/apply-patch+yaml``, field
  manager ``skerry``, conflicts forced) and says whether the object was
  created, configured or left unchanged;
* every ``ApiException``, discovery miss and connection failure becomes a
  ``KubeError`` whose ``reason`` is one of ``NotFound``, ``Forbidden``,
  ``Conflict``, ``Invalid``, ``UnknownKind``, ``Unavailable`` and whose
  message names the object (``apps/Deployment web -n shop``) and carries
  the API server's own message.

All calls block (the client is synchronous); the async agent runs them with
``asyncio.to_thread``. Request bodies are never logged: they may be Secrets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from skerry.agent.reasons import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, UNAVAILABLE, UNKNOWN_KIND
from skerry.agent.reconcile.drift import applied_state_digest
from skerry.core.errors import ConfigError, KubeError

T = TypeVar("T")

CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"


_REASON_BY_STATUS = {
    400: INVALID,
    401: FORBIDDEN,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: INVALID,
    409: CONFLICT,
    410: CONFLICT,
    415: INVALID,
    422: INVALID,
    429: UNAVAILABLE,
}

# Idle keep-alive connections the client keeps to the API server. urllib3 opens a new connection
# whenever none is idle and closes it on return when the pool is full, so this must exceed the apply
# workers plus one per open watch (the monitor holds one per watched kind); the client's default
# (5 x CPUs, i.e. 5 in a 1-CPU pod) would have every apply pay a fresh TLS handshake.
POOL_MAXSIZE = 64

# Fields the API server owns; sending them with an apply would be a precondition or an error.
_SERVER_METADATA = ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation", "selfLink")


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


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    """What a server-side apply did; the object body is deliberately not kept (it may be a Secret).

    ``conflicts`` names the other field managers whose fields this apply took
    over (``kubectl: .spec.replicas``): the first apply is sent without
    ``force``; only when the API server answers with a conflict is it repeated
    with ``force`` and the conflict reported.
    """

    action: str  # created | configured | unchanged
    resource_version: str
    conflicts: tuple[str, ...] = ()
    live: dict | None = None  # the object as stored (dry-run: as it would be); never logged
    digest: str = ""  # ``drift.applied_state_digest``: pass it back as ``previous_digest``


_CONFLICT_WITH = re.compile(r'conflicts? with "([^"]+)"(?: using [^:\n]+)?:(.*?)(?=conflicts? with "|$)', re.S)
_FIELD_PATH = re.compile(r"(?:^|\s)(\.[^\s,]+)")


class _MemoryDiscoverer(LazyDiscoverer):
    """LazyDiscoverer that keeps its cache in memory only.

    The stock discoverer persists to a temp file shared by every process of
    the same user talking to the same host; a stale file there can hide a
    kind. Pointing it at a path that never exists and never writing makes
    each ``KubeClient`` start from live discovery.
    """

    def _write_cache(self):  # noqa: D401 - override
        return None


class KubeClient:
    """A synchronous client for the few operations the agent needs."""

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
    ) -> KubeClient:
        """kubectl's order: ``path`` (the flag), else ``$KUBECONFIG`` (a ``:``-list), else ``~/.kube/config``.

        ``in_cluster_first`` (only ``skerry agent run``, a pod) tries the pod's service account
        before any kubeconfig; an operator's command never silently talks to the cluster it runs in.
        """
        configuration = Configuration()
        configuration.connection_pool_maxsize = POOL_MAXSIZE
        if path is None and in_cluster_first:
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
                return cls(ApiClient(configuration=configuration), request_timeout=request_timeout)
            except ConfigException:
                pass
        if path is not None:
            source = str(path)
            if not pathlib.Path(path).is_file():
                raise ConfigError(f"kubeconfig {path} does not exist")
        elif os.environ.get("KUBECONFIG"):
            source = os.environ["KUBECONFIG"]
        else:
            source = str(pathlib.Path("~/.kube/config").expanduser())
            if not pathlib.Path(source).is_file():
                raise ConfigError(f"no kubeconfig: give --kubeconfig, set $KUBECONFIG, or create {source}"
                                  + (" (not in a cluster either)" if in_cluster_first else ""))
        try:
            kube_config.load_kube_config(
                config_file=source, context=context, client_configuration=configuration, persist_config=False
            )
        except (ConfigException, OSError, ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"cannot load kubeconfig {source}: {' '.join(str(e).split())}") from e
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

    # --- objects ------------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The live object as a dict, or ``None`` if it does not exist."""
        what = describe(api_version, kind, name, namespace)
        resource = self._resource(api_version, kind, what=what)
        return self._get_raw(resource, name, namespace if resource.namespaced else None, what)

    def _get_raw(self, resource, name: str, namespace: str | None, what: str) -> dict | None:
        try:
            resp = self._call(
                what,
                lambda: self._dynamic().get(
                    resource, name=name, namespace=namespace, serialize=False, _request_timeout=self._timeout
                ),
            )
        except KubeError as e:
            if e.reason == NOT_FOUND:
                return None
            raise
        return json.loads(resp.data)

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str = "skerry",
        force: bool = True,
        ignore_annotations: Iterable[str] = (),
        previous_digest: str | None = None,
        dry_run: bool = False,
        keep_live: bool = False,
        assume_new: bool = False,
    ) -> ApplyResult:
        """Server-side apply ``obj``.

        ``unchanged`` means the live object did not change, or changed only
        in ``ignore_annotations`` (e.g. the bundle digest stamp) and
        server-owned metadata. When the caller passes the ``digest`` of its
        last apply of this object as ``previous_digest`` no GET is made (the
        resourceVersion cannot tell: status writes by controllers bump it).
        Without one, the apply costs one GET first, unless ``assume_new``
        (the caller never applied it): then 201 is ``created`` and 200 (an
        object that existed, now adopted) ``configured``.

        ``force=True`` is the conflict policy "force, but say whom from": the
        apply goes without force first; a 409 conflict is retried with force
        and the other managers are returned in ``conflicts``.
        """
        what = describe_object(obj)
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            raise KubeError(f"{what}: metadata.name is required", reason=INVALID)
        resource = self._resource(api_version, kind, what=what)
        namespace = meta.get("namespace") or None
        if resource.namespaced and not namespace:
            raise KubeError(f"{what}: a namespaced {kind} needs metadata.namespace", reason=INVALID)
        if not resource.namespaced:
            namespace = None
        body = _apply_body(obj, namespace)
        before = None
        if previous_digest is None and not dry_run and not assume_new:
            before = self._get_raw(resource, name, namespace, what)

        # Encoded once (JSON is YAML): retries and the forced re-send reuse the bytes.
        payload = json.dumps(body, separators=(",", ":")).encode()
        path = resource.path(name=name, namespace=namespace)

        def send(forced: bool):
            query = [("fieldManager", field_manager), ("force", forced)]
            if dry_run:
                query.append(("dryRun", "All"))
            return self._send("PATCH", path, query, payload, "application/apply-patch+yaml")

        conflicts: tuple[str, ...] = ()
        try:
            resp = self._call(what, lambda: send(False))
        except KubeError as e:
            if e.reason != CONFLICT or not force:
                raise
            conflicts = conflicting_managers(str(e))
            resp = self._call(what, lambda: send(True))
        status, data = resp
        after = json.loads(data)
        rv = str((after.get("metadata") or {}).get("resourceVersion", ""))
        ignore = tuple(ignore_annotations)
        digest = applied_state_digest(body, after, field_manager=field_manager, ignore_annotations=ignore)
        if status == 201 or (previous_digest is None and before is None and not dry_run and not assume_new):
            action = CREATED
        elif assume_new and previous_digest is None and before is None:
            action = CONFIGURED
        elif before is not None:
            action = UNCHANGED if _comparable(before, ignore) == _comparable(after, ignore) else CONFIGURED
        elif conflicts:
            action = CONFIGURED  # it took fields back from another manager
        else:
            action = UNCHANGED if digest == previous_digest else CONFIGURED
        return ApplyResult(
            action=action,
            resource_version=rv,
            conflicts=conflicts,
            live=after if keep_live else None,
            digest=digest,
        )

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
        what = describe(api_version, kind, name, namespace)
        resource = self._resource(api_version, kind, what=what)
        ns = namespace if resource.namespaced else None
        try:
            self._call(
                what,
                lambda: self._dynamic().delete(
                    resource,
                    name=name,
                    namespace=ns,
                    propagation_policy=propagation,
                    serialize=False,
                    _request_timeout=self._timeout,
                ),
            )
        except KubeError as e:
            if e.reason == NOT_FOUND:
                return False
            raise
        return True

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
        what = describe(api_version, kind, "*", namespace)
        resource = self._resource(api_version, kind, what=what)
        ns = namespace if resource.namespaced else None
        resp = self._call(
            what,
            lambda: self._dynamic().get(
                resource,
                namespace=ns,
                label_selector=label_selector,
                field_selector=field_selector,
                serialize=False,
                _request_timeout=self._timeout,
            ),
        )
        doc = json.loads(resp.data)
        items = doc.get("items") or []
        item_version = api_version
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", item_version)
            item.setdefault("kind", kind)
        return items, str((doc.get("metadata") or {}).get("resourceVersion", ""))

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
        from kubernetes import watch as kube_watch

        what = describe(api_version, kind, "*", namespace)
        resource = self._resource(api_version, kind, what=what)
        ns = namespace if resource.namespaced else None
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
                        reason=CONFLICT if code == 410 else UNAVAILABLE,
                        http_status=code or None,
                    )
                yield etype, raw
        finally:
            watcher.stop()

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
        what = describe(api_version, kind, name, namespace)
        resource = self._resource(api_version, kind, what=what)
        ns = namespace if resource.namespaced else None
        resp = self._call(
            what,
            lambda: self._dynamic().patch(
                resource,
                body={"metadata": {"annotations": dict(annotations)}},
                name=name,
                namespace=ns,
                content_type="application/merge-patch+json",
                field_manager=field_manager,
                serialize=False,
                _request_timeout=self._timeout,
            ),
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

    # --- status and events (skerry/agent/events.py) -------------------------------------------

    def apply_status(self, obj: Mapping[str, Any], *, field_manager: str = "skerry") -> None:
        """Server-side apply ``obj``'s ``status`` through the status subresource (the object must exist)."""
        what = describe_object(obj) + " status"
        meta = obj.get("metadata") or {}
        resource = self._resource(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), what=what)
        namespace = (meta.get("namespace") or None) if resource.namespaced else None
        body = _apply_body(obj, namespace)
        self._call(
            what,
            lambda: self._dynamic().server_side_apply(
                resource.subresources["status"],
                body=body,
                name=str(meta.get("name") or ""),
                namespace=namespace,
                field_manager=field_manager,
                force_conflicts=True,
                serialize=False,
                _request_timeout=self._timeout,
            ),
        )

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        """Record a ``v1`` Event in ``namespace``."""
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(self._api)
        self._call(
            f"Event in {namespace}",
            lambda: api.create_namespaced_event(namespace, dict(body), _request_timeout=self._timeout),
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

    # --- error translation --------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiException as e:
            raise _kube_error(what, e) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeError(
                f"{what}: cannot reach the API server {self.host}: {_short(e)}", reason=UNAVAILABLE
            ) from None


def conflicting_managers(message: str) -> tuple[str, ...]:
    """``('kubectl: .spec.replicas', ...)`` from an API server apply-conflict message."""
    found = []
    for m in _CONFLICT_WITH.finditer(message):
        paths = list(dict.fromkeys(_FIELD_PATH.findall(m.group(2))))[:10]
        found.append(f"{m.group(1)}: {', '.join(paths)}".rstrip(": "))
    return tuple(dict.fromkeys(found)) or ("another field manager: " + message[:200],)


def _kube_error(what: str, e: ApiException) -> KubeError:
    status = int(e.status or 0)
    reason = _REASON_BY_STATUS.get(status, UNAVAILABLE if status >= 500 or status == 0 else INVALID)
    message = _server_message(e)
    return KubeError(f"{what}: {message}", reason=reason, http_status=status or None)


def _server_message(e: ApiException) -> str:
    body = e.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
        text = str(body).strip()
        if text:
            return text[:500]
    return f"HTTP {e.status} {e.reason or ''}".strip()


def _short(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    return str(reason or e).splitlines()[0][:300]


def _apply_body(obj: Mapping[str, Any], namespace: str | None) -> dict:
    # Only the top level and metadata are changed: a shallow copy of those leaves ``obj`` intact.
    body = dict(obj)
    meta = dict(body.get("metadata") or {})
    for field in _SERVER_METADATA:
        meta.pop(field, None)
    if namespace:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    body["metadata"] = meta
    return body


def _comparable(obj: Mapping[str, Any], ignore_annotations: Iterable[str]) -> dict:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_METADATA}
    ignored = set(ignore_annotations)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in ignored}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out
