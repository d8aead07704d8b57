"""Verification: every attack class is a VerificationError with its reason; state survives restarts."""

from __future__ import annotations

import datetime as _dt
import json

import pytest

from skerry.agent.verify import STATE_FILE, Verifier
from skerry.core.bundle import generate_signing_key
from skerry.core.errors import ConfigError, VerificationError

from .conftest import CLUSTER, NOW, configmap


@pytest.fixture
def verifier(bundles, tmp_path, clock) -> Verifier:
    return Verifier(CLUSTER, bundles.trusted, tmp_path / "state", clock)


def test_a_good_bundle_verifies_and_its_release_is_recorded(verifier, bundles):
    metadata, raw = bundles.make([configmap("a", "shop")])
    verified = verifier.verify(metadata, raw)
    assert verified.release == 1
    assert verified.bundle.objects[0]["metadata"]["name"] == "a"
    assert (verifier.last_release, verifier.last_digest) == (1, verified.digest)


def test_bundle_signed_by_another_key_is_rejected(verifier, bundles, tmp_path):
    other = generate_signing_key(tmp_path / "attacker.key")
    metadata, raw = bundles.make([configmap("a", "shop")], signer=other)
    with pytest.raises(VerificationError) as e:
        verifier.verify(metadata, raw)
    assert e.value.reason == "BadSignature"
    assert verifier.last_release == 0


def test_older_release_is_rejected_as_rollback(verifier, bundles):
    verifier.verify(*bundles.make([configmap("a", "shop")], release=5))
    with pytest.raises(VerificationError) as e:
        verifier.verify(*bundles.make([configmap("a", "shop")], release=4))
    assert e.value.reason == "Rollback"
    assert verifier.last_release == 5


def test_another_clusters_bundle_is_rejected(verifier, bundles):
    with pytest.raises(VerificationError) as e:
        verifier.verify(*bundles.make([configmap("a", "shop")], cluster="bergen"))
    assert e.value.reason == "WrongCluster"


def test_expired_bundle_is_rejected(verifier, bundles):
    with pytest.raises(VerificationError) as e:
        verifier.verify(*bundles.make([], expires=NOW - _dt.timedelta(seconds=1)))
    assert e.value.reason == "Expired"


def test_tampered_bundle_bytes_are_rejected(verifier, bundles):
    metadata, raw = bundles.make([configmap("a", "shop")])
    with pytest.raises(VerificationError) as e:
        verifier.verify(metadata, raw.replace(b'"k":"v"', b'"k":"x"'))
    assert e.value.reason == "HashMismatch"


def test_same_release_with_another_digest_is_rejected(verifier, bundles):
    verifier.verify(*bundles.make([configmap("a", "shop")], release=3))
    with pytest.raises(VerificationError) as e:
        verifier.verify(*bundles.make([configmap("b", "shop")], release=3))
    assert e.value.reason == "MixAndMatch"


def test_the_same_bundle_again_is_accepted(verifier, bundles):
    metadata, raw = bundles.make([configmap("a", "shop")])
    first = verifier.verify(metadata, raw)
    assert verifier.verify(metadata, raw).digest == first.digest


def test_rollback_state_survives_a_restart(bundles, tmp_path, clock):
    state = tmp_path / "state"
    Verifier(CLUSTER, bundles.trusted, state, clock).verify(*bundles.make([], release=9))
    restarted = Verifier(CLUSTER, bundles.trusted, state, clock)
    assert restarted.last_release == 9
    with pytest.raises(VerificationError) as e:
        restarted.verify(*bundles.make([], release=8))
    assert e.value.reason == "Rollback"


def test_state_file_is_written_atomically_as_json(verifier, bundles):
    verified = verifier.verify(*bundles.make([]))
    doc = json.loads(verifier.state_file.read_text())
    assert doc["release"] == 1 and doc["digest"] == verified.digest and doc["cluster"] == CLUSTER
    assert sorted(p.name for p in verifier.state_file.parent.iterdir()) == [STATE_FILE]
    assert verifier.state_file.stat().st_mode & 0o077 == 0


def test_a_corrupt_state_file_refuses_to_start_instead_of_forgetting(bundles, tmp_path, clock):
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        Verifier(CLUSTER, bundles.trusted, state, clock)


def test_a_state_file_of_another_cluster_is_refused(bundles, tmp_path, clock):
    state = tmp_path / "state"
    Verifier("bergen", bundles.trusted, state, clock)._save(3, "sha256:x")
    with pytest.raises(ConfigError, match="bergen"):
        Verifier(CLUSTER, bundles.trusted, state, clock)


def test_message_hints_must_equal_the_verified_values(verifier, bundles):
    msg = bundles.signed_message([configmap("a", "shop")])
    msg.version = 99
    with pytest.raises(VerificationError) as e:
        verifier.verify_message(msg)
    assert e.value.reason == "HintMismatch"
    assert verifier.last_release == 0  # a rejected bundle never advances the state


def test_reverify_tolerates_only_expiry(verifier, bundles, clock):
    metadata, raw = bundles.make([configmap("a", "shop")], expires=NOW + _dt.timedelta(hours=1))
    verifier.verify(metadata, raw)
    clock.advance(7200)
    verified, expired = verifier.reverify(metadata, raw)
    assert expired and verified.release == 1
    with pytest.raises(VerificationError) as e:
        verifier.reverify(metadata, raw.replace(b'"k":"v"', b'"k":"x"'))
    assert e.value.reason in ("MixAndMatch", "HashMismatch")


def test_no_trusted_keys_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        Verifier(CLUSTER, {}, tmp_path)
