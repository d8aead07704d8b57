"""``skerry explain KIND/NAME -n NS``: why an object in the cluster looks the way it does.

The chain, each link checked rather than assumed: the live object's
``skerry.io/bundle-digest`` annotation (written on every applied object) →
the provenance record the agent wrote when that bundle passed TUF
verification (``<state-dir>/provenance/<sha256>.json``: director role and
the key ids that signed it, release role with its threshold and signers) →
the object inside that bundle → the source commit, paths, render engine
and version. Run it where the agent's state directory is (or a copy).
"""

from __future__ import annotations

import json
import pathlib

from skerry.agent.cache import BundleCache
from skerry.agent.reconcile.desired import DIGEST_ANNOTATION
from skerry.core.bundle import Bundle


def _matches(obj: dict, kind: str, name: str, namespace: str) -> bool:
    meta = obj.get("metadata") or {}
    k, _, group = kind.partition(".")
    api = str(obj.get("apiVersion", ""))
    obj_group = api.rpartition("/")[0] if "/" in api else ""
    return (str(obj.get("kind", "")).lower() in (k.lower(), k.lower().rstrip("s"))
            and (not group or group == obj_group)
            and meta.get("name") == name and (meta.get("namespace") or "") == namespace)


def explain(ref: str, namespace: str, state_dir: pathlib.Path, kube) -> dict:
    kind, sep, name = ref.partition("/")
    if not sep or not kind or not name:
        raise ValueError(f"{ref!r} is not KIND/NAME")
    loaded = BundleCache(state_dir).load()
    if loaded is None:
        raise ValueError(f"no applied bundle in {state_dir}")
    bundle = Bundle.decode(loaded[1])
    found = [o for o in bundle.objects if _matches(o, kind, name, namespace)]
    if not found:
        raise ValueError(f"{ref} in namespace {namespace or '(cluster)'} is not in the applied bundle: "
                         "Skerry does not manage it")
    obj = found[0]
    live = kube.get(obj["apiVersion"], obj["kind"], name, namespace or None)
    if live is None:
        raise ValueError(f"{ref} is in the bundle but not in the cluster (not applied yet, or deleted)")
    digest = ((live.get("metadata") or {}).get("annotations") or {}).get(DIGEST_ANNOTATION, "")
    if not digest:
        raise ValueError(f"{ref} has no {DIGEST_ANNOTATION} annotation: not applied by Skerry")
    try:
        provenance = json.loads((state_dir / "provenance" / f"{digest.split(':')[-1]}.json").read_text())
    except (OSError, ValueError):
        provenance = None
    return {"object": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "namespace": namespace, "name": name},
            "bundle_digest": digest, "provenance": provenance,
            "source": {"url": bundle.source_url, "revision": bundle.revision, "paths": list(bundle.paths)},
            "render": (provenance or {}).get("render") or {"engine": bundle.engine, "version": bundle.engine_version}}
