"""The inventory: exactly the objects this agent applied, kept in a ConfigMap in the cluster.

Pruning deletes only what is recorded here and left the bundle — never by
label selector — so an object someone else created with the same labels is
never touched. The ConfigMap ``skerry-inventory`` in the agent's namespace
holds one canonical JSON document::

    {"apiVersion": "skerry.io/v1alpha1", "kind": "Inventory",
     "cluster": "oslo-prod", "release": 7, "digest": "sha256:...", "revision": "<sha>",
     "objects": [["apps/v1", "Deployment", "shop", "web"], ...]}

under ``data["inventory.json"]``, or gzip-compressed under
``binaryData["inventory.json.gz"]`` when large (a ConfigMap holds at most
1 MiB). This module is pure: (de)serialisation only; ``engine`` reads and
writes the ConfigMap through ``KubeClient``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gzip
from collections.abc import Iterable, Mapping

from skerry.agent.reasons import UNAVAILABLE
from skerry.agent.reconcile.model import ObjectRef
from skerry.core import documents
from skerry.core.canonical import canonical_json
from skerry.core.errors import InvalidInput

CONFIGMAP_NAME = "skerry-inventory"
# The operator's controls, annotations on the inventory ConfigMap (set by `skerry suspend|resume|reconcile`).
SUSPEND_ANNOTATION = "skerry.io/suspend"
RECONCILE_ANNOTATION = "skerry.io/reconcile-requested-at"
API_VERSION = "skerry.io/v1alpha1"
KIND = "Inventory"
DATA_KEY = "inventory.json"
GZIP_KEY = "inventory.json.gz"
# Above this the document is stored compressed; well below the 1 MiB ConfigMap limit.
COMPRESS_ABOVE_BYTES = 256 * 1024


class InventoryCorrupt(InvalidInput):
    reason = "InventoryCorrupt"


@dataclasses.dataclass(frozen=True)
class Inventory:
    cluster: str = ""
    release: int = 0
    digest: str = ""
    revision: str = ""
    objects: frozenset[ObjectRef] = frozenset()

    @classmethod
    def of(cls, objects: Iterable[ObjectRef], **fields) -> Inventory:
        return cls(objects=_dedupe(objects), **fields)

    @property
    def refs(self) -> list[ObjectRef]:
        return sorted(self.objects)

    def keys(self) -> set[tuple[str, str, str, str]]:
        return {r.key for r in self.objects}

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, ObjectRef) and ref.key in self.keys()

    def __len__(self) -> int:
        return len(self.objects)

    # --- (de)serialisation ------------------------------------------------------------------

    def document(self) -> dict:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "cluster": self.cluster,
            "release": self.release,
            "digest": self.digest,
            "revision": self.revision,
            "objects": [[r.api_version, r.kind, r.namespace, r.name] for r in self.refs],
        }

    def encode(self) -> bytes:
        return canonical_json(self.document())

    @classmethod
    def decode(cls, data: bytes) -> Inventory:
        try:
            doc = documents.load_json(data, max_bytes=documents.DEFAULT_MAX_BYTES)
        except ValueError as e:
            raise InventoryCorrupt(f"inventory is not valid JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
            raise InventoryCorrupt(f"inventory is not a {API_VERSION} {KIND} document")
        raw = doc.get("objects")
        if not isinstance(raw, list):
            raise InventoryCorrupt("inventory objects must be a list")
        refs = []
        for i, item in enumerate(raw):
            if (
                not isinstance(item, list)
                or len(item) != 4
                or not all(isinstance(x, str) for x in item)
                or not item[0]
                or not item[1]
                or not item[3]
            ):
                raise InventoryCorrupt(f"inventory entry #{i} is not [apiVersion, kind, namespace, name]")
            refs.append(ObjectRef(*item))
        release = doc.get("release", 0)
        if not isinstance(release, int) or release < 0:
            raise InventoryCorrupt("inventory release must be a non-negative integer")
        return cls.of(
            refs,
            cluster=str(doc.get("cluster", "")),
            release=release,
            digest=str(doc.get("digest", "")),
            revision=str(doc.get("revision", "")),
        )

    def to_configmap(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(data, binaryData)`` for the ConfigMap; exactly one of them is non-empty."""
        encoded = self.encode()
        if len(encoded) <= COMPRESS_ABOVE_BYTES:
            return {DATA_KEY: encoded.decode()}, {}
        packed = gzip.compress(encoded, mtime=0)
        return {}, {GZIP_KEY: base64.b64encode(packed).decode()}

    @classmethod
    def from_configmap(cls, configmap: Mapping | None) -> Inventory:
        """Parse a ConfigMap as returned by the API server; ``None`` (absent) is the empty inventory."""
        if configmap is None:
            return cls()
        data = configmap.get("data") or {}
        binary = configmap.get("binaryData") or {}
        if GZIP_KEY in binary:
            try:
                raw = gzip.decompress(base64.b64decode(binary[GZIP_KEY], validate=True))
            except (binascii.Error, OSError, EOFError, ValueError) as e:
                raise InventoryCorrupt(f"inventory {GZIP_KEY} does not decompress: {e}") from e
            return cls.decode(raw)
        if DATA_KEY in data:
            return cls.decode(str(data[DATA_KEY]).encode())
        raise InventoryCorrupt(f"inventory ConfigMap has neither data[{DATA_KEY}] nor binaryData[{GZIP_KEY}]")


def _dedupe(refs: Iterable[ObjectRef]) -> frozenset[ObjectRef]:
    """One entry per identity (the last version seen wins)."""
    by_key: dict[tuple[str, str, str, str], ObjectRef] = {}
    for r in refs:
        by_key[r.key] = r
    return frozenset(by_key.values())


def next_inventory(
    *,
    applied: Iterable[ObjectRef],
    kept: Iterable[ObjectRef],
    cluster: str,
    release: int,
    digest: str,
    revision: str,
) -> Inventory:
    """The inventory after a reconcile.

    ``applied``: objects applied in this round (recorded with their current
    apiVersion). ``kept``: entries that must stay recorded although not
    applied — failed applies of objects that may exist (so they are retried
    and still pruned later) and prune candidates that were not deleted.
    """
    applied = list(applied)
    applied_keys = {r.key for r in applied}
    carry = [r for r in kept if r.key not in applied_keys]
    return Inventory.of(
        [*carry, *applied], cluster=cluster, release=release, digest=digest, revision=revision
    )


def kept_after_failures(
    refs: Iterable[ObjectRef], failures: Mapping[tuple[str, str, str, str], str], previous: Inventory
) -> list[ObjectRef]:
    """Failed objects that stay recorded: those recorded before, and those the API server may have seen."""
    previous_by_key = {r.key: r for r in previous.objects}
    kept: list[ObjectRef] = []
    for ref in refs:
        reason = failures.get(ref.key)
        if reason is None:
            continue
        if ref.key in previous_by_key:
            kept.append(previous_by_key[ref.key])
        elif reason == UNAVAILABLE:
            kept.append(ref)  # the request may have reached the API server
    return kept
