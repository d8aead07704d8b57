"""The inventory model and its ConfigMap form (pure)."""

from __future__ import annotations

import pytest

from skerry.agent.reconcile.inventory import (
    COMPRESS_ABOVE_BYTES,
    DATA_KEY,
    GZIP_KEY,
    Inventory,
    InventoryCorrupt,
    next_inventory,
)
from skerry.agent.reconcile.model import ObjectRef

REFS = [
    ObjectRef("apps/v1", "Deployment", "shop", "web"),
    ObjectRef("v1", "ConfigMap", "shop", "web"),
    ObjectRef("v1", "Namespace", "", "shop"),
]


def test_inventory_round_trips_through_bytes():
    inv = Inventory.of(REFS, cluster="oslo", release=7, digest="sha256:ab", revision="c0ffee")
    back = Inventory.decode(inv.encode())
    assert back == inv
    assert back.refs == sorted(REFS)


def test_encoding_is_canonical_and_stable():
    a = Inventory.of(REFS, cluster="oslo", release=1, digest="d")
    b = Inventory.of(list(reversed(REFS)), cluster="oslo", release=1, digest="d")
    assert a.encode() == b.encode()


def test_inventory_round_trips_through_a_configmap():
    inv = Inventory.of(REFS, cluster="oslo", release=3, digest="sha256:x")
    data, binary = inv.to_configmap()
    assert set(data) == {DATA_KEY} and not binary
    assert Inventory.from_configmap({"data": data}) == inv


def test_large_inventory_is_stored_compressed_and_round_trips():
    refs = [ObjectRef("v1", "ConfigMap", f"ns-{i % 50}", f"config-{i:06d}") for i in range(8000)]
    inv = Inventory.of(refs, cluster="oslo", release=9, digest="sha256:y")
    assert len(inv.encode()) > COMPRESS_ABOVE_BYTES
    data, binary = inv.to_configmap()
    assert not data and set(binary) == {GZIP_KEY}
    assert len(binary[GZIP_KEY]) < 1024 * 1024
    assert Inventory.from_configmap({"binaryData": binary}) == inv


def test_missing_configmap_is_the_empty_inventory():
    inv = Inventory.from_configmap(None)
    assert len(inv) == 0 and inv.release == 0


@pytest.mark.parametrize(
    "configmap",
    [
        {"data": {}},
        {"data": {DATA_KEY: "not json"}},
        {"data": {DATA_KEY: '{"apiVersion": "v1", "kind": "ConfigMap"}'}},
        {
            "data": {
                DATA_KEY: '{"apiVersion": "skerry.io/v1alpha1", "kind": "Inventory", "objects": [["v1"]]}'
            }
        },
        {"binaryData": {GZIP_KEY: "!!!"}},
    ],
)
def test_corrupt_inventory_is_an_error_not_an_empty_inventory(configmap):
    with pytest.raises(InventoryCorrupt):
        Inventory.from_configmap(configmap)


def test_identity_is_one_entry_per_object_regardless_of_version():
    inv = Inventory.of(
        [
            ObjectRef("apps/v1beta1", "Deployment", "shop", "web"),
            ObjectRef("apps/v1", "Deployment", "shop", "web"),
        ]
    )
    assert len(inv) == 1
    assert ObjectRef("apps/v1beta2", "Deployment", "shop", "web") in inv


def test_next_inventory_records_applied_and_kept_entries_only():
    web, cm, old = REFS[0], REFS[1], ObjectRef("v1", "Service", "shop", "old")
    inv = next_inventory(applied=[web], kept=[cm, old], cluster="oslo", release=2, digest="d2", revision="r2")
    assert inv.keys() == {web.key, cm.key, old.key}
    assert (inv.release, inv.digest, inv.revision) == (2, "d2", "r2")


def test_next_inventory_prefers_the_applied_version_of_an_entry():
    old_version = ObjectRef("apps/v1beta1", "Deployment", "shop", "web")
    inv = next_inventory(
        applied=[REFS[0]], kept=[old_version], cluster="c", release=1, digest="d", revision="r"
    )
    assert inv.refs == [REFS[0]]
