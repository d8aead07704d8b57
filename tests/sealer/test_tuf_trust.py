"""The sealer's own TUF check of what an agent shows it (``skerry.sealer.bundle_trust``), attack by attack.

A real trust repository (``tests/e2e/trust_world.py``: the hub's TrustRepository
with every key, so a test can play a compromised hub) publishes bundles; the
"agent" hands the sealer the latest metadata files as evidence. The sealer
must accept exactly what director and release agreed on for the caller's own
cluster, and only ever move forward.
"""

from __future__ import annotations

import json

import pytest

from skerry.core import sealedsecret, trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_hex
from skerry.core.errors import VerificationError
from skerry.sealer.bundle_trust import TufBundleTrust
from tests.e2e.trust_world import TrustWorld, bundle_bytes

CLUSTER, OTHER = "oslo-dev", "bergen-dev"


def with_sealed_secret(cluster: str, value: str) -> bytes:
    sealed = {"apiVersion": sealedsecret.API_VERSION, "kind": "SealedSecret",
              "metadata": {"name": "db", "namespace": "shop"}, "spec": {"encryptedData": {"password": "AgB="}}}
    plain = Bundle.decode(bundle_bytes(cluster, "shop", value))
    return Bundle(plain.cluster, plain.revision, plain.source_url, plain.paths, plain.engine, plain.engine_version,
                  (*plain.objects, sealed)).encode()


def shown(files: dict[str, bytes], cluster: str, data: bytes, env: str = "dev") -> bytes:
    """What an agent would show for bundle ``data``: the newest file of each role, byte for byte as the
    hub served it (the two bins are those of its path)."""
    out = {"timestamp.json": files["metadata/timestamp.json"]}
    path = trust.release_path(env, cluster, sha256_hex(data))
    roles = ["root", "snapshot", "targets", "director", trust.director_bin(path), trust.release_role(env),
             trust.release_bin(env, path)]
    for role in roles:
        versions = [int(p.split("/")[1].split(".")[0]) for p in files
                    if p.startswith("metadata/") and p.endswith(f".{role}.json") and p.split("/")[1][0].isdigit()]
        out[f"{role}.json"] = files[f"metadata/{max(versions)}.{role}.json"]
    return trust.encode_evidence(out)


def evidence(world: TrustWorld, cluster: str, env: str = "dev") -> bytes:
    """What the agent of ``cluster`` shows for the bundle the director names for it."""
    files = world.files()
    return shown(files, cluster, files[f"targets/{world.repo.directed(cluster).path}"], env)


@pytest.fixture
def world(tmp_path) -> TrustWorld:
    return TrustWorld(tmp_path / "trust")


@pytest.fixture
def sealer(world, tmp_path) -> TufBundleTrust:
    return TufBundleTrust(world.root, tmp_path / "sealer-state")


def test_a_released_and_directed_bundle_yields_its_sealed_secrets(world, sealer, tmp_path):
    data = with_sealed_secret(CLUSTER, "one")
    world.publish(CLUSTER, "dev", data, release=101)
    got = sealer.verify(evidence(world, CLUSTER), data, cluster=CLUSTER)
    assert got.release == 101 and [(s.namespace, s.name) for s in got.secrets] == [("shop", "db")]
    state = json.loads((tmp_path / "sealer-state" / CLUSTER / "release.json").read_text())
    assert state["release"] == 101


def test_a_director_compromise_alone_cannot_get_a_bundle_unsealed(world, sealer):
    world.publish(CLUSTER, "dev", with_sealed_secret(CLUSTER, "one"), release=101)
    files = world.files()
    evil = with_sealed_secret(CLUSTER, "evil")
    world.evil_direct(files, CLUSTER, evil, release=500)  # hub keys only: no release key signed it
    with pytest.raises(VerificationError) as e:
        sealer.verify(shown(files, CLUSTER, evil), evil, cluster=CLUSTER)
    # an image no release key signed: not in its release bin, or in a bin the snapshot never listed
    assert e.value.reason in {"NotReleased", "RepositoryError"}, e.value


def test_an_older_bundle_replayed_after_a_newer_one_is_refused(world, sealer):
    old = with_sealed_secret(CLUSTER, "old")
    world.publish(CLUSTER, "dev", old, release=101)
    old_evidence = evidence(world, CLUSTER)
    sealer.verify(old_evidence, old, cluster=CLUSTER)
    new = with_sealed_secret(CLUSTER, "new")
    world.publish(CLUSTER, "dev", new, release=102)
    sealer.verify(evidence(world, CLUSTER), new, cluster=CLUSTER)
    with pytest.raises(VerificationError) as e:
        sealer.verify(old_evidence, old, cluster=CLUSTER)
    assert e.value.reason in {"BadVersionNumberError", "ReleaseRollback"}, e.value.reason


def test_evidence_of_another_cluster_or_other_bytes_is_refused(world, sealer):
    mine, theirs = with_sealed_secret(CLUSTER, "mine"), with_sealed_secret(OTHER, "theirs")
    world.publish(CLUSTER, "dev", mine, release=101)
    world.publish(OTHER, "dev", theirs, release=102)
    with pytest.raises(VerificationError):  # the caller is CLUSTER (its mTLS name), showing OTHER's bundle
        sealer.verify(evidence(world, OTHER), theirs, cluster=CLUSTER)
    with pytest.raises(VerificationError) as e:  # other bytes are another path: its bins are not in the evidence
        sealer.verify(evidence(world, CLUSTER), with_sealed_secret(CLUSTER, "tampered"), cluster=CLUSTER)
    assert e.value.reason in {"NotDirected", "DownloadHTTPError"}, e.value.reason


def test_malformed_evidence_or_a_bare_envelope_is_named(world, sealer):
    world.publish(CLUSTER, "dev", with_sealed_secret(CLUSTER, "one"), release=101)
    with pytest.raises(VerificationError) as e:
        sealer.verify(b'{"skerry-tuf-evidence": 1, "files": {"../x.json": ""}}', b"", cluster=CLUSTER)
    assert e.value.reason == "MalformedMetadata" and "not a Skerry TUF role file" in str(e.value)
    with pytest.raises(VerificationError) as e:  # signed metadata of some other kind is no evidence
        sealer.verify(b'{"signed": {}, "signatures": []}', b"", cluster=CLUSTER)
    assert e.value.reason == "MalformedMetadata"
