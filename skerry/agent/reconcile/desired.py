"""What the engine sends for one bundle object: where it lands and the body it applies.

A bundle object lands at a ref decided once (``landing``: a namespaced kind
without a namespace lands in ``default``, a cluster-scoped kind loses any
namespace; a SealedSecret lands as a ``v1`` Secret) and is applied as a body
prepared here: unsealed if sealed, native defaults set, the ``managed-by``
label and the bundle-digest stamp added, and the live values of
drift-ignored fields the agent yields to put back in. ``skerry diff``
prepares its dry-run bodies with the same ``landing`` and ``prepare``, so
what it shows is what the agent would apply (less the stamp, which always
differs).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skerry.agent.reconcile.defaults import set_native_defaults
from skerry.agent.reconcile.model import ObjectRef
from skerry.agent.secrets import Unsealer, is_sealed_secret, secret_from_sealed
from skerry.core.errors import KubeError

DIGEST_ANNOTATION = "skerry.io/bundle-digest"
RELEASE_ANNOTATION = "skerry.io/release"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "skerry"
DEFAULT_NAMESPACE = "default"


@dataclasses.dataclass
class Item:
    """One bundle object and where it lands."""

    ref: ObjectRef  # where it lands (a SealedSecret lands as a v1 Secret)
    source: Mapping[str, Any]  # the bundle object, untouched
    sealed: bool


def landing(ref: ObjectRef, namespaced: bool | None) -> ObjectRef:
    """Where an object of this scope lands (``None``: scope unknown, as written)."""
    if namespaced is True and not ref.namespace:
        return ref.with_namespace(DEFAULT_NAMESPACE)
    if namespaced is False and ref.namespace:
        return ref.with_namespace("")
    return ref


def item(
    obj: Mapping[str, Any],
    crd_scopes: Mapping[tuple[str, str], bool],
    is_namespaced: Callable[[str, str], bool],
) -> Item:
    """Where ``obj`` lands: scope from the bundle's own CRDs, else from discovery (unknown: as written)."""
    sealed = is_sealed_secret(obj)
    ref = ObjectRef.from_object(obj)
    if sealed:
        ref = ObjectRef("v1", "Secret", ref.namespace, ref.name)
    namespaced = crd_scopes.get(ref.group_kind)
    if namespaced is None:
        try:
            namespaced = is_namespaced(ref.api_version, ref.kind)
        except KubeError:
            namespaced = None  # unknown kind: the apply reports it
    return Item(ref=landing(ref, namespaced), source=obj, sealed=sealed)


def prepare(source: Mapping[str, Any], ref: ObjectRef) -> dict:
    """A plain (unsealed) object as applied at ``ref``, without the digest stamp: native defaults set,
    the namespace it lands in, the ``managed-by`` label."""
    out = copy.deepcopy(dict(source))
    set_native_defaults(out)
    _land(out, ref)
    return out


def body(item: Item, digest: str, secrets: Unsealer, yielded: Iterable[tuple[tuple, Any]]) -> dict:
    """The body to apply; may hold unsealed plaintext: keep it in the caller's frame only."""
    if item.sealed:
        out = secret_from_sealed(item.source, secrets, namespace=item.ref.namespace)
        _land(out, item.ref)
    else:
        out = prepare(item.source, item.ref)
    meta = out["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST_ANNOTATION: digest}
    for path, value in yielded:
        _put(out, path, value)
    return out


def _land(out: dict, ref: ObjectRef) -> None:
    meta = out.setdefault("metadata", {})
    if ref.namespace:
        meta["namespace"] = ref.namespace
    else:
        meta.pop("namespace", None)
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def _put(body: dict, path: tuple, value: Any) -> None:
    cur: Any = body
    for seg in path[:-1]:
        if not isinstance(cur, dict):
            return
        cur = cur.setdefault(seg, {})
    if isinstance(cur, dict):
        cur[path[-1]] = copy.deepcopy(value)
