"""``skerry diff``: what applying a bundle would change in a live cluster, asked of the cluster itself.

Each object is prepared by the engine's own ``reconcile.desired`` (where it
lands, managed-by label, the native defaults) and sent as a server-side
apply with ``dryRun=All`` and the agent's field manager: the API server runs
defaulting, admission and the merge, and stores nothing. The answer is
compared with the live object field by field (status, server metadata and
the bundle-digest stamp left out), so the diff shows what the agent would
really change — including fields another manager owns — not a textual diff
of manifests. Objects recorded in the cluster's inventory that left the
bundle are listed as ``would prune`` (the same plan, safety rules included).

Secret values are never printed: a changed Secret key is shown as
``<secret value changed>``. SealedSecrets are not unsealed by a diff (only
the agent may ask the sealer); they are listed as not compared.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.agent.kube.objects import comparable as stored_fields
from skerry.agent.reconcile import desired, plan
from skerry.agent.reconcile.desired import DIGEST_ANNOTATION
from skerry.agent.reconcile.inventory import CONFIGMAP_NAME, Inventory
from skerry.agent.reconcile.model import ObjectRef
from skerry.agent.secrets import is_sealed_secret
from skerry.core import documents
from skerry.core.errors import KubeError

CREATE, CHANGE, SAME, PRUNE, ERROR, NOT_COMPARED = "create", "change", "unchanged", "prune", "error", "not compared"

# What `skerry diff` reads: a rendered bundle, so the bundle cap (core.bundle.MAX_BUNDLE_BYTES) and room.
MAX_INPUT_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ObjectDiff:
    ref: ObjectRef
    outcome: str
    lines: tuple[str, ...] = ()  # unified diff lines (live -> would be)
    message: str = ""


def prepare(obj: Mapping[str, Any], namespaced: bool | None) -> dict:
    """The body the engine would apply (without the digest stamp, which always differs)."""
    return desired.prepare(obj, desired.landing(ObjectRef.from_object(obj), namespaced))


def comparable(obj: Mapping[str, Any] | None) -> dict:
    """What a diff shows of a stored object: no status, no server metadata, no digest stamp, Secret values masked."""
    if not obj:
        return {}
    out = stored_fields(obj, (DIGEST_ANNOTATION,))
    if obj.get("kind") == "Secret" and "/" not in str(obj.get("apiVersion", "v1")):
        out["data"] = {k: _mask(v) for k, v in (obj.get("data") or {}).items()}
    return out


def _mask(value: Any) -> str:
    return "<secret value " + hashlib.sha256(str(value).encode()).hexdigest()[:12] + ">"


def _lines(doc: Mapping[str, Any]) -> list[str]:
    return documents.dump_yaml(doc, sort_keys=True, allow_unicode=False, width=1 << 20).splitlines()


def unified(ref: ObjectRef, live: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> list[str]:
    before = _lines(comparable(live)) if live else []
    after = _lines(comparable(wanted))
    return list(
        difflib.unified_diff(before, after, fromfile=f"live/{ref}", tofile=f"git/{ref}", lineterm="", n=2)
    )


def diff_bundle(
    kube, objects: Iterable[Mapping[str, Any]], *, namespace: str, field_manager: str = "skerry"
) -> list[ObjectDiff]:
    """One ``ObjectDiff`` per bundle object, plus ``prune`` entries from the cluster's inventory."""
    objects = list(objects)
    scopes = plan.crd_scopes(objects)
    out: list[ObjectDiff] = []
    desired_refs: list[ObjectRef] = []
    for obj in sorted(objects, key=lambda o: plan.apply_sort_key(ObjectRef.from_object(o))):
        ref = ObjectRef.from_object(obj)
        if is_sealed_secret(obj):
            ref = ObjectRef("v1", "Secret", ref.namespace, ref.name)
            desired_refs.append(ref)
            out.append(ObjectDiff(ref, NOT_COMPARED, message="SealedSecret: only the agent unseals; not compared"))
            continue
        namespaced = scopes.get(ref.group_kind)
        if namespaced is None:
            try:
                namespaced = kube.is_namespaced(ref.api_version, ref.kind)
            except KubeError as e:
                out.append(ObjectDiff(ref, ERROR, message=str(e)))
                desired_refs.append(ref)
                continue
        body = prepare(obj, namespaced)
        ref = ObjectRef.from_object(body)
        desired_refs.append(ref)
        try:
            live = kube.get(ref.api_version, ref.kind, ref.name, ref.namespace or None)
            result = kube.apply(body, field_manager=field_manager, force=True, dry_run=True, keep_live=True)
        except KubeError as e:
            if e.reason == "UnknownKind" and ref.group_kind in scopes:
                lines = unified(ref, None, body)
                out.append(ObjectDiff(ref, CREATE, tuple(lines), "its CRD is in this bundle: not dry-run"))
            else:
                out.append(ObjectDiff(ref, ERROR, message=str(e)))
            continue
        lines = unified(ref, live, result.live or {})
        conflicts = "; ".join(result.conflicts)
        note = f"would take over fields from: {conflicts}" if conflicts else ""
        if live is None:
            out.append(ObjectDiff(ref, CREATE, tuple(lines), note))
        elif lines:
            out.append(ObjectDiff(ref, CHANGE, tuple(lines), note))
        else:
            out.append(ObjectDiff(ref, SAME, (), note))
    try:
        inventory = Inventory.from_configmap(kube.get_configmap(namespace, CONFIGMAP_NAME))
    except (KubeError, ValueError) as e:
        out.append(ObjectDiff(ObjectRef("v1", "ConfigMap", namespace, CONFIGMAP_NAME), ERROR, message=f"inventory: {e}"))
        return out
    prune = plan.plan_prune(inventory.objects, desired_refs)
    candidates = plan.order_for_delete(r for r in inventory.objects if r.key not in {d.key for d in desired_refs})
    for ref in candidates:
        message = "" if prune.allowed else f"refused: {prune.refused}"
        out.append(ObjectDiff(ref, PRUNE, (), message))
    return out


def inventory_cluster(kube, namespace: str) -> str:
    """The cluster name recorded in the inventory ('' if none yet)."""
    return Inventory.from_configmap(kube.get_configmap(namespace, CONFIGMAP_NAME)).cluster


def render_text(diffs: Iterable[ObjectDiff]) -> str:
    diffs = list(diffs)
    out: list[str] = []
    for d in diffs:
        if d.outcome == SAME:
            continue
        head = {CREATE: "+ create", CHANGE: "~ change", PRUNE: "- prune", ERROR: "! error", NOT_COMPARED: "? skip"}
        out.append(f"{head.get(d.outcome, d.outcome)} {d.ref}" + (f"  ({d.message})" if d.message else ""))
        out.extend(d.lines)
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.outcome] = counts.get(d.outcome, 0) + 1
    out.append("summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(out) + "\n"


def load_objects(data: bytes) -> list[dict]:
    """Objects from a rendered bundle (``skerry render --repo``: JSON), a JSON List, or YAML documents."""
    try:
        doc = documents.load_json(data, max_bytes=MAX_INPUT_BYTES)
        docs = doc if isinstance(doc, list) else [doc]
    except documents.BadDocument as e:
        if e.reason != "InvalidJSON":
            raise
        docs = [d for d in documents.load_yaml_all(data, max_bytes=MAX_INPUT_BYTES) if d]
    out: list[dict] = []
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("objects"), list):
            out.extend(doc["objects"])
        elif isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend(doc.get("items") or [])
        elif isinstance(doc, dict):
            out.append(doc)
    return out
