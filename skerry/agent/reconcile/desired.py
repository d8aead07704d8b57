"""What the engine sends for one bundle object: where it lands and the body it applies.

A bundle object lands at a ref the engine decides once (a SealedSecret
lands as a ``v1`` Secret; a namespaced kind without a namespace lands in
``default``; a cluster-scoped kind loses any namespace), and is applied as
a body prepared here: unsealed if sealed, native defaults set, the
``managed-by`` label and the bundle-digest stamp added, and the live values
of drift-ignored fields the agent yields to put back in. ``skerry diff``
reads the same names from here.
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
    if namespaced is True and not ref.namespace:
        ref = ref.with_namespace(DEFAULT_NAMESPACE)
    elif namespaced is False and ref.namespace:
        ref = ref.with_namespace("")
    return Item(ref=ref, source=obj, sealed=sealed)


def body(item: Item, digest: str, secrets: Unsealer, yielded: Iterable[tuple[tuple, Any]]) -> dict:
    """The body to apply; may hold unsealed plaintext: keep it in the caller's frame only."""
    if item.sealed:
        out = secret_from_sealed(item.source, secrets, namespace=item.ref.namespace)
    else:
        out = copy.deepcopy(dict(item.source))
        set_native_defaults(out)
    meta = out.setdefault("metadata", {})
    if item.ref.namespace:
        meta["namespace"] = item.ref.namespace
    else:
        meta.pop("namespace", None)
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST_ANNOTATION: digest}
    for path, value in yielded:
        _put(out, path, value)
    return out


def _put(body: dict, path: tuple, value: Any) -> None:
    cur: Any = body
    for seg in path[:-1]:
        if not isinstance(cur, dict):
            return
        cur = cur.setdefault(seg, {})
    if isinstance(cur, dict):
        cur[path[-1]] = copy.deepcopy(value)
