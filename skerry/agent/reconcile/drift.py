"""Pure: which managed fields of a live object no longer hold what Git says, and who changed them.

The seed's war story is a manual fix that drifted from Git and was silently
overwritten weeks later. The agent therefore remembers, per object, a
*fingerprint* of what it applied (every leaf path -> value; Secret values
only as SHA-256 digests, never plaintext) and compares live objects seen on
its watches against it.

The fingerprint holds the values the API server *stored* for the applied
paths (taken from the apply response, ``observed_fingerprint``), so a value
the server normalises (``1000m`` -> ``1``) is never mistaken for drift. A
leaf is drift when its live value differs from that (or is gone). Who
changed it comes from ``metadata.managedFields``: the other manager that now
owns the field (``kubectl-edit``, ``kubectl-label``, a forced apply), else
— when the agent still owns it, as after ``kubectl scale`` on API servers
before 1.22, which record no manager for subresource writes — "unknown".

Paths are written like ``.spec.template.spec.containers[name=main].image``;
list elements are matched by their merge key (``name``, or the port keys),
as the API server's ``k:{...}`` field sets do.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.agent.reconcile.model import ObjectRef

# Values longer than this are shortened in reports (a drift report is not a dump of the object).
MAX_VALUE_CHARS = 120
# At most this many drifted fields are reported per object.
MAX_FIELDS_PER_OBJECT = 20

CORRECT, DETECT, IGNORE = "correct", "detect", "ignore"
POLICIES = (CORRECT, DETECT)

_SKIPPED_METADATA = {
    "resourceVersion",
    "uid",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "namespace",
    "name",
    "finalizers",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
}
_SECRET = ("", "Secret")
_SECRET_FIELDS = ("data", "stringData")

Segment = Any  # str (map key) | ("k", ((field, value), ...)) | ("i", index)
Path = tuple


@dataclasses.dataclass(frozen=True)
class Drift:
    """One drifted field of one object."""

    ref: ObjectRef
    field: str  # ".spec.replicas", or "" when the whole object was deleted
    desired: str
    live: str
    changed_by: str  # the field manager that owns the field now ("unknown" if none)

    def describe(self) -> str:
        if not self.field:
            return f"{self.ref}: deleted outside Git (by {self.changed_by})"
        return f"{self.ref} {self.field}: {self.live} (Git: {self.desired}) changed by {self.changed_by}"


@dataclasses.dataclass(frozen=True)
class IgnoreRule:
    """``apps/Deployment:.spec.replicas`` or ``*:.metadata.annotations`` — drift under it is ignored."""

    group: str | None  # None: any
    kind: str | None
    prefix: str

    @classmethod
    def parse(cls, text: str) -> IgnoreRule:
        target, sep, prefix = text.strip().rpartition(":")
        if not sep or not prefix.startswith("."):
            raise ValueError(f"ignore rule {text!r} must be KIND:.path, GROUP/KIND:.path or *:.path")
        if target in ("*", ""):
            return cls(None, None, prefix)
        group, _, kind = target.rpartition("/")
        return cls(group, kind, prefix)

    def matches(self, ref: ObjectRef, field: str) -> bool:
        if self.kind is not None and (ref.kind != self.kind or ref.group != (self.group or "")):
            return False
        return field == self.prefix or field.startswith(self.prefix + ".") or field.startswith(self.prefix + "[")


# --- fingerprints -------------------------------------------------------------------------------


def fingerprint(body: Mapping[str, Any]) -> dict[Path, Any]:
    """Leaf path -> value of what was applied (Secret values as digests)."""
    out: dict[Path, Any] = {}
    ref = ObjectRef.from_object(body)
    secret = ref.group_kind == _SECRET
    for key, value in body.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata":
            meta = {k: v for k, v in (value or {}).items() if k not in _SKIPPED_METADATA}
            _leaves(("metadata",), meta, out)
        elif secret and key in _SECRET_FIELDS and isinstance(value, Mapping):
            # stringData lands in data: fingerprint it there, as the bytes the API server stores.
            for k, v in value.items():
                raw = v.encode() if key == "stringData" else _b64(v)
                out[("data", k)] = _digest(raw)
        else:
            _leaves((key,), value, out)
    return out


def observed_fingerprint(body: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[Path, Any]:
    """The paths ``body`` sets, with the values the API server stored for them (``stored``)."""
    wanted = fingerprint(body)
    if not stored:
        return wanted
    secret = ObjectRef.from_object(body).group_kind == _SECRET
    out: dict[Path, Any] = {}
    for path, value in wanted.items():
        got = _live_leaf(stored, path, secret)
        out[path] = value if (got is _MISSING or value == {}) else got
    return out


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode()


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _leaves(prefix: Path, value: Any, out: dict[Path, Any]) -> None:
    if isinstance(value, Mapping):
        if not value:
            out[prefix] = {}
        for k, v in value.items():
            _leaves((*prefix, str(k)), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, item in enumerate(value):
            key = merge_key(item)
            _leaves((*prefix, ("k", key) if key else ("i", i)), item, out)
    else:
        out[prefix] = value  # scalars and lists of scalars are leaves (atomic or sets)


def merge_key(item: Mapping[str, Any]) -> tuple | None:
    """The fields a list element is identified by, as the API server's ``k:{...}`` keys do."""
    if "name" in item and isinstance(item["name"], str):
        return (("name", item["name"]),)
    for port in ("containerPort", "port"):
        if port in item:
            return ((port, item[port]), ("protocol", item.get("protocol", "TCP")))
    for single in ("mountPath", "devicePath", "ip", "type", "key", "topologyKey"):
        if single in item and isinstance(item[single], str):
            return ((single, item[single]),)
    return None


def render_path(path: Path) -> str:
    out = []
    for seg in path:
        if isinstance(seg, tuple) and seg[0] == "k":
            out.append("[" + ",".join(f"{k}={v}" for k, v in seg[1]) + "]")
        elif isinstance(seg, tuple):
            out.append(f"[{seg[1]}]")
        else:
            out.append("." + seg)
    return "".join(out)


# --- comparison ---------------------------------------------------------------------------------


_MISSING = object()


def _lookup(obj: Any, path: Path) -> Any:
    cur = obj
    for seg in path:
        if isinstance(seg, tuple):
            if not isinstance(cur, list):
                return _MISSING
            if seg[0] == "k":
                wanted = dict(seg[1])
                match = [
                    e
                    for e in cur
                    if isinstance(e, Mapping)
                    and all(e.get(k, "TCP" if k == "protocol" else None) == v for k, v in wanted.items())
                ]
                if not match:
                    return _MISSING
                cur = match[0]
            else:
                if seg[1] >= len(cur):
                    return _MISSING
                cur = cur[seg[1]]
        else:
            if not isinstance(cur, Mapping) or seg not in cur:
                return _MISSING
            cur = cur[seg]
    return cur


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if a == {} and isinstance(b, Mapping):
        return True  # an empty map applied: anything the server or others put in it is theirs
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(_canon, a)) == sorted(map(_canon, b))
    return False


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _show(value: Any, secret: bool) -> str:
    if value is _MISSING:
        return "<absent>"
    if secret:
        return "<secret value>"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _live_leaf(live: Mapping[str, Any], path: Path, secret: bool) -> Any:
    value = _lookup(live, path)
    if secret and path and path[0] == "data" and value is not _MISSING:
        return _digest(_b64(value))
    return value


def find_drift(
    ref: ObjectRef,
    applied: Mapping[Path, Any],
    live: Mapping[str, Any] | None,
    *,
    field_manager: str,
    ignore: Iterable[IgnoreRule] = (),
    yielded: list | None = None,
) -> list[Drift]:
    """Drifted fields of ``live`` against the ``applied`` fingerprint; ``live=None`` means deleted.

    ``yielded`` (if given) collects ``(path, live value)`` of ignored fields
    that differ: the engine applies the live value there from then on, so an
    HPA's ``.spec.replicas`` is not reset by the next correction or release
    (Argo CD's RespectIgnoreDifferences). Dropping the field instead would
    delete it where the agent is still its only manager.
    """
    if live is None:
        return [Drift(ref, "", "present", "<deleted>", "unknown")]
    ignore = list(ignore)
    secret = ref.group_kind == _SECRET
    managers = _managers(live)
    out: list[Drift] = []
    for path, want in applied.items():
        got = _live_leaf(live, path, secret)
        if got is not _MISSING and _same(want, got):
            continue
        owners = [(m, sub) for m, sub, tree in managers if _owns(tree, path)]
        others = [m + (f" (via /{sub})" if sub else "") for m, sub in owners if m != field_manager]
        field = render_path(path)
        if any(rule.matches(ref, field) for rule in ignore):
            if yielded is not None and not secret and got is not _MISSING:
                yielded.append((path, got))
            continue
        if others:
            changed_by = others[0]  # 1.22+: a /scale write is the writer's Update with subresource "scale"
        elif any(m == field_manager for m, _ in owners):
            # We still own the field, so the server recorded no other manager for the write. That is
            # what a subresource write looks like before 1.22 (managedFields had no "subresource"):
            # checked on v1.20.2 after `kubectl scale` (kubectl v1.32, PATCH .../scale), managedFields
            # hold only skerry's Apply (still owning f:spec.f:replicas) and kube-controller-manager's
            # Update of status and the revision annotation — the controller reacting, not the
            # writer. Naming that (or the latest other manager) would blame the wrong party.
            changed_by = "unknown (no manager recorded, e.g. a /scale write)"
        else:
            changed_by = _latest_other(live, field_manager)
        out.append(Drift(ref, field, _show(want, secret), _show(got, secret), changed_by))
        if len(out) >= MAX_FIELDS_PER_OBJECT:
            break
    return out


def _managers(live: Mapping[str, Any]) -> list[tuple[str, str, dict]]:
    """``(manager, subresource or "", fieldsV1)`` newest first."""
    entries = list((live.get("metadata") or {}).get("managedFields") or [])
    entries.sort(key=lambda e: str(e.get("time") or ""), reverse=True)
    return [
        (str(e.get("manager") or "unknown"), str(e.get("subresource") or ""), e.get("fieldsV1") or {})
        for e in entries
    ]


def _latest_other(live: Mapping[str, Any], field_manager: str) -> str:
    for manager, _, _ in _managers(live):
        if manager != field_manager:
            return manager
    return "unknown"


def _owns(tree: Mapping[str, Any], path: Path) -> bool:
    cur: Any = tree
    for seg in path:
        if not isinstance(cur, Mapping):
            return False
        if isinstance(seg, tuple) and seg[0] == "k":
            wanted = dict(seg[1])
            nxt = None
            for key, sub in cur.items():
                if not key.startswith("k:"):
                    continue
                try:
                    fields = json.loads(key[2:])
                except ValueError:
                    continue
                if isinstance(fields, dict) and all(fields.get(k) == v for k, v in wanted.items() if k in fields):
                    if set(fields) & set(wanted):
                        nxt = sub
                        break
            if nxt is None:
                return False
            cur = nxt
        elif isinstance(seg, tuple):
            return True  # an element of an atomic list: owned with the list
        else:
            key = "f:" + seg
            if key not in cur:
                return False
            cur = cur[key]
    return True


def applied_state_digest(
    body: Mapping[str, Any], live: Mapping[str, Any], *, field_manager: str, ignore_annotations: Iterable[str] = ()
) -> str:
    """SHA-256 of the live values at the paths ``body`` sets, plus the field set the manager owns.

    Two applies of the same body with the same digest wrote nothing the
    manager cares about; status, controller annotations and the ignored
    annotations (the digest stamp) do not count. Secret values enter only as digests.
    """
    ignored = {("metadata", "annotations", a) for a in ignore_annotations}
    ref = ObjectRef.from_object(body)
    secret = ref.group_kind == _SECRET
    values = []
    for path in sorted(fingerprint(body), key=repr):
        if path in ignored:
            continue
        got = _live_leaf(live, path, secret)
        values.append([repr(path), None if got is _MISSING else got])
    owned: Any = {}
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply":
            owned = json.loads(json.dumps(entry.get("fieldsV1") or {}))
    annotations = ((owned.get("f:metadata") or {}).get("f:annotations")) if isinstance(owned, dict) else None
    if isinstance(annotations, dict):
        for a in ignore_annotations:
            annotations.pop("f:" + a, None)
    raw = json.dumps([values, owned], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()
