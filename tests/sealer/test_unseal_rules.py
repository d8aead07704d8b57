"""Who gets plaintext: bundle-scoped unseal, key domains per region, rate limits, key-id hints."""

from __future__ import annotations

import pytest

from skerry.core import sealedsecret
from skerry.core.clock import FixedClock
from skerry.core.errors import ConfigError, PermissionDenied, ResourceExhausted, SealError, VerificationError
from skerry.core.tls import ROLE_AGENT, ROLE_OPERATOR, Identity
from skerry.sealer import crypto
from skerry.sealer.authz import ClusterDomains, RateLimiter, UnsealAttempt, UnsealGate

from .helpers import SECRET_VALUE, Released, sealed_secret

OSLO = Identity("oslo-prod", frozenset({ROLE_AGENT}), "ab" * 32)
PARIS = Identity("paris-prod", frozenset({ROLE_AGENT}), "cd" * 32)
OPERATOR = Identity("alice", frozenset({ROLE_OPERATOR}), "ef" * 32)


@pytest.fixture
def signed(tmp_path) -> Released:
    return Released(tmp_path)


@pytest.fixture
def gate(shared_registry, signed):
    return UnsealGate(shared_registry, bundle_trust=signed.trust())


def by_name(results):
    return {(r.namespace, r.name): r for r in results}


def test_an_agent_gets_exactly_the_secrets_of_its_own_signed_bundle(gate, signed, sealing_key, logs):
    objs = [
        sealed_secret(sealing_key, name="db", password=SECRET_VALUE, user="shop"),
        sealed_secret(sealing_key, name="api", scope="namespace-wide", token="t0k"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}},
    ]
    release, results, _ = gate.unseal_bundle(OSLO, *signed("oslo-prod", objs))
    got = by_name(results)
    assert release == 1 and set(got) == {("shop", "db"), ("shop", "api")}
    assert got["shop", "db"].data == {"password": SECRET_VALUE.encode(), "user": b"shop"}
    assert got["shop", "api"].data == {"token": b"t0k"}
    assert all(r.error is None and r.key_ids == (sealing_key.key_id,) for r in results)
    records = logs.events("unseal")
    assert {(r["namespace"], r["name"], r["outcome"]) for r in records} == {
        ("shop", "db", "allowed"),
        ("shop", "api", "allowed"),
    }
    assert all(r["via"] == "bundle release 1" for r in records)
    assert SECRET_VALUE not in logs.text


def test_another_clusters_bundle_is_refused_whole(gate, signed, sealing_key, logs):
    meta, raw = signed("oslo-prod", [sealed_secret(sealing_key)])
    with pytest.raises(VerificationError, match="paris-prod"):
        gate.unseal_bundle(PARIS, meta, raw)
    assert logs.events("unseal bundle")[0]["outcome"] == "denied"


def test_a_bundle_of_a_repository_the_sealer_does_not_trust_is_refused(gate, sealing_key, tmp_path):
    stranger = Released(tmp_path / "stranger")  # its own root, director and release keys
    with pytest.raises(VerificationError) as e:
        gate.unseal_bundle(OSLO, *stranger("oslo-prod", [sealed_secret(sealing_key)]))
    assert e.value.reason in {"UnsignedMetadataError", "BadVersionNumberError", "RepositoryError"}, e.value.reason


def test_an_older_bundle_cannot_be_replayed_once_a_newer_one_was_seen(gate, signed, sealing_key):
    old = signed("oslo-prod", [sealed_secret(sealing_key, name="gone")], release=1)
    gate.unseal_bundle(OSLO, *signed("oslo-prod", [], release=2))
    with pytest.raises(VerificationError) as e:
        gate.unseal_bundle(OSLO, *old)
    assert e.value.reason in {"BadVersionNumberError", "ReleaseRollback"}, e.value.reason


def test_relocated_or_renamed_strict_secret_fails_alone_with_a_clear_error(gate, signed, sealing_key):
    moved = sealed_secret(sealing_key, name="db")
    moved["metadata"]["namespace"] = "other"  # copied into another namespace in Git
    renamed = sealed_secret(sealing_key, name="db")
    renamed["metadata"]["name"] = "db-copy"
    fine = sealed_secret(sealing_key, name="ok")
    results = by_name(gate.unseal_bundle(OSLO, *signed("oslo-prod", [moved, renamed, fine]))[1])
    for key in (("other", "db"), ("shop", "db-copy")):
        assert isinstance(results[key].error, SealError)
        assert "wrong scope, namespace or name" in str(results[key].error)
        assert results[key].data == {}
    assert results["shop", "ok"].data == {"password": SECRET_VALUE.encode()}


def test_the_scope_is_the_bundles_not_a_callers_claim(gate, signed, sealing_key):
    # A strict value relabelled cluster-wide in the bundle does not open: the label differs.
    widened = sealed_secret(sealing_key)
    widened["metadata"]["annotations"][sealedsecret.ANNOTATION_CLUSTER_WIDE] = "true"
    (result,) = gate.unseal_bundle(OSLO, *signed("oslo-prod", [widened]))[1]
    assert isinstance(result.error, SealError)
    # The annotation counts only when it is exactly "true".
    loose = sealed_secret(sealing_key, scope="strict")
    loose["metadata"]["annotations"][sealedsecret.ANNOTATION_NAMESPACE_WIDE] = "True"
    (result,) = gate.unseal_bundle(OSLO, *signed("oslo-prod", [loose], release=2))[1]
    assert result.error is None


def test_direct_unseal_is_refused_when_the_sealer_trusts_a_hub(gate, sealing_key):
    obj = sealed_secret(sealing_key)
    req = UnsealAttempt("shop", "db", "strict", "", obj["spec"]["encryptedData"])
    with pytest.raises(PermissionDenied, match="only SealedSecrets of a hub-signed bundle"):
        gate.unseal(OSLO, req)


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """A registry with two regional domains, 2048-bit keys to stay quick."""
    from skerry.sealer.keys import KeyRegistry

    reg = KeyRegistry.from_directory(tmp_path_factory.mktemp("regions"), key_bits=2048)
    reg.open("no-oslo")
    reg.open("fr-paris")
    return reg


def test_an_agent_cannot_obtain_another_regions_plaintext(regions, signed):
    domains = ClusterDomains.from_mapping({"clusters": {"oslo-prod": ["no-oslo"], "paris-prod": ["fr-paris"]}})
    gate = UnsealGate(regions, domains=domains, bundle_trust=signed.trust())
    paris_secret = sealed_secret(regions.sealing_key("fr-paris"), domain="fr-paris")
    oslo_secret = sealed_secret(regions.sealing_key("no-oslo"), name="local", domain="no-oslo")
    # Even a hub that puts Paris's secret into Oslo's signed bundle gets nothing for Oslo.
    results = by_name(gate.unseal_bundle(OSLO, *signed("oslo-prod", [paris_secret, oslo_secret]))[1])
    err = results["shop", "db"].error
    assert isinstance(err, PermissionDenied) and err.reason == "DomainDenied"
    assert "cluster 'oslo-prod' may not use key domain 'fr-paris'" in str(err)
    assert results["shop", "local"].data == {"password": SECRET_VALUE.encode()}
    # And the cryptography agrees: Oslo's keys cannot open it even if the domain check were bypassed.
    item = crypto.decode_item(paris_secret["spec"]["encryptedData"]["password"])
    with pytest.raises(SealError):
        regions.unseal("no-oslo", item, b"shop/db")


def test_without_a_map_clusters_get_the_default_domain_only(regions):
    with pytest.raises(PermissionDenied, match="gives it default"):
        ClusterDomains().check("oslo-prod", "no-oslo")
    ClusterDomains().check("oslo-prod", "default")
    wildcard = ClusterDomains.from_mapping({"clusters": {"*": "no-oslo"}})
    assert wildcard.allowed("anyone") == ("no-oslo",)


def test_cluster_domain_map_file_errors_are_clear(tmp_path):
    f = tmp_path / "map.yaml"
    f.write_text("clusters:\n  oslo-prod: [no-oslo, eu-west]\n")
    assert ClusterDomains.from_file(f).allowed("oslo-prod") == ("no-oslo", "eu-west")
    f.write_text("clusters: [a]\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        ClusterDomains.from_file(f)
    f.write_text("clusters:\n  x: [Not_A_Domain]\n")
    with pytest.raises(ConfigError, match="invalid key domain"):
        ClusterDomains.from_file(f)


def test_rate_limit_per_identity_refuses_then_refills():
    clock = FixedClock()
    limiter = RateLimiter(rate=10, burst=20, clock=clock.monotonic)
    limiter.take("agent:a", 20)
    with pytest.raises(ResourceExhausted, match="retry in 0.1s"):
        limiter.take("agent:a", 1)
    limiter.take("agent:b", 5)  # another identity has its own bucket
    clock.advance(1.0)
    limiter.take("agent:a", 10)
    with pytest.raises(ResourceExhausted):
        limiter.take("agent:a", 1)


def test_rate_limited_unseal_is_refused_and_audited(shared_registry, sealing_key, logs):
    gate = UnsealGate(shared_registry, limiter=RateLimiter(rate=0.001, burst=2))
    obj = sealed_secret(sealing_key, a="1", b="2")
    req = UnsealAttempt("shop", "db", "strict", "", obj["spec"]["encryptedData"])
    assert gate.unseal(OSLO, req) == {"a": b"1", "b": b"2"}
    with pytest.raises(ResourceExhausted, match="rate limit"):
        gate.unseal(OSLO, req)
    assert [r["outcome"] for r in logs.events("unseal")] == ["allowed", "denied"]


def test_the_key_id_hint_opens_with_one_decryption_among_many_keys(registry, monkeypatch):
    oldest = registry.sealing_key()
    for _ in range(3):
        registry.add_key()
    calls = []
    real = crypto.hybrid_decrypt
    monkeypatch.setattr(crypto, "hybrid_decrypt", lambda k, d, lbl: calls.append(k) or real(k, d, lbl))
    gate = UnsealGate(registry)
    obj = sealed_secret(oldest, a="1", b="2", c="3")
    req = UnsealAttempt("shop", "db", "strict", "", obj["spec"]["encryptedData"], key_hint=oldest.key_id)
    assert gate.unseal(OSLO, req) == {"a": b"1", "b": b"2", "c": b"3"}
    assert len(calls) == 3  # one per item, none wasted on the three newer keys
    calls.clear()
    gate.unseal(OSLO, UnsealAttempt("shop", "db", "strict", "", obj["spec"]["encryptedData"]))
    assert len(calls) == 4 + 1 + 1  # unhinted: the first item tries every key, the rest follow its key


def test_operators_re_encrypt_to_the_newest_key_without_seeing_plaintext(registry):
    old = registry.sealing_key()
    obj = sealed_secret(old, password=SECRET_VALUE)
    new = registry.add_key()
    gate = UnsealGate(registry)
    req = UnsealAttempt("shop", "db", "strict", "", obj["spec"]["encryptedData"])
    items, key_id, domain = gate.re_encrypt(OPERATOR, req)
    assert (key_id, domain) == (new.key_id, "default")
    assert SECRET_VALUE not in str(items)
    assert registry.unseal("default", crypto.decode_item(items["password"]), b"shop/db") == (
        SECRET_VALUE.encode(),
        new.key_id,
    )
