"""Every failure of a Kubernetes call becomes one ``KubeError`` with a named reason: translated here, once.

An ``ApiException``, a discovery miss and a connection failure all surface
as ``KubeError`` whose ``reason`` is one of ``NotFound``, ``Forbidden``,
``Conflict``, ``Invalid``, ``UnknownKind``, ``Unavailable`` and whose
message names the object (``apps/Deployment web -n shop``) and carries the
API server's own message, so the engine and the CLI can branch on the
reason without knowing the client library. Apply conflicts are parsed into
the field managers they name (``conflicting_managers``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from skerry.agent.reasons import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, UNAVAILABLE
from skerry.core.errors import KubeError

T = TypeVar("T")

REASON_BY_STATUS = {
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

# How much of an unparseable error body is quoted (a proxy's HTML page is not a message).
MAX_BODY_QUOTED = 500
# How much of a connection error is quoted (urllib3 nests the cause in long reprs).
MAX_CAUSE_QUOTED = 300
# Field paths named per conflicting manager (a forced apply over a big object names hundreds).
MAX_CONFLICT_PATHS = 10

_CONFLICT_WITH = re.compile(
    r'conflicts? with "([^"]+)"(?: using [^:\n]+)?:(.*?)(?=conflicts? with "|$)', re.S
)
_FIELD_PATH = re.compile(r"(?:^|\s)(\.[^\s,]+)")


def translated(what: str, host: str, fn: Callable[[], T]) -> T:
    """``fn()``, with client and connection errors raised as ``KubeError`` naming ``what``."""
    try:
        return fn()
    except ApiException as e:
        raise kube_error(what, e) from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise KubeError(
            f"{what}: cannot reach the API server {host}: {_short(e)}", reason=UNAVAILABLE
        ) from None


def conflicting_managers(message: str) -> tuple[str, ...]:
    """``('kubectl: .spec.replicas', ...)`` from an API server apply-conflict message."""
    found = []
    for m in _CONFLICT_WITH.finditer(message):
        paths = list(dict.fromkeys(_FIELD_PATH.findall(m.group(2))))[:MAX_CONFLICT_PATHS]
        found.append(f"{m.group(1)}: {', '.join(paths)}".rstrip(": "))
    return tuple(dict.fromkeys(found)) or ("another field manager: " + message[:200],)


def kube_error(what: str, e: ApiException) -> KubeError:
    status = int(e.status or 0)
    reason = REASON_BY_STATUS.get(status, UNAVAILABLE if status >= 500 or status == 0 else INVALID)
    message = _server_message(e)
    return KubeError(f"{what}: {message}", reason=reason, http_status=status or None)


def ignoring_not_found(fn: Callable[[], T]) -> T | None:
    """``fn()``, or ``None`` when it raised a ``KubeError`` with reason ``NotFound``."""
    try:
        return fn()
    except KubeError as e:
        if e.reason == NOT_FOUND:
            return None
        raise


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
            return text[:MAX_BODY_QUOTED]
    return f"HTTP {e.status} {e.reason or ''}".strip()


def _short(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    return str(reason or e).splitlines()[0][:MAX_CAUSE_QUOTED]
