"""The bundle cache: the last verified bytes, still sealed, re-verified on the way back."""

from __future__ import annotations

import datetime as _dt

import pytest

from skerry.agent.cache import BundleCache
from skerry.agent.verify import Verifier
from skerry.core.bundle import generate_signing_key
from skerry.core.errors import VerificationError

from .conftest import CLUSTER, NOW, configmap


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def test_saved_bundle_restores_and_verifies(bundles, state, clock):
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    verified = verifier.verify(*bundles.make([configmap("a", "shop")]))
    cache = BundleCache(state)
    cache.save(verified)
    restored = BundleCache(state).restore(Verifier(CLUSTER, bundles.trusted, state, clock))
    assert restored is not None and not restored.expired
    assert restored.verified.digest == verified.digest
    assert restored.verified.raw == verified.raw


def test_only_the_last_bundle_is_kept(bundles, state, clock):
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    cache = BundleCache(state)
    for name in ("a", "b", "c"):
        cache.save(verifier.verify(*bundles.make([configmap(name, "shop")])))
    files = sorted(p.name for p in cache.directory.iterdir())
    assert len(files) == 3 and "current" in files
    assert cache.restore(verifier).verified.release == 3


def test_no_cache_restores_nothing(bundles, state, clock):
    assert BundleCache(state).restore(Verifier(CLUSTER, bundles.trusted, state, clock)) is None


def test_a_tampered_cache_is_refused(bundles, state, clock):
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    cache = BundleCache(state)
    cache.save(verifier.verify(*bundles.make([configmap("a", "shop")])))
    (bundle_file,) = cache.directory.glob("bundle-*.json")
    bundle_file.write_bytes(bundle_file.read_bytes().replace(b'"k":"v"', b'"k":"evil"'))
    with pytest.raises(VerificationError) as e:
        cache.restore(verifier)
    # The verifier has seen this release with the true digest, so the edit shows as mix-and-match.
    assert e.value.reason in ("MixAndMatch", "HashMismatch")


def test_a_cache_signed_by_an_untrusted_key_is_refused(bundles, state, clock, tmp_path):
    other = generate_signing_key(tmp_path / "other.key")
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    cache = BundleCache(state)
    cache.save(verifier.verify(*bundles.make([configmap("a", "shop")])))
    from skerry.core.bundle import load_public_key

    stranger = load_public_key(tmp_path / "other.key.pub")
    assert other is not None
    with pytest.raises(VerificationError) as e:
        cache.restore(Verifier(CLUSTER, {stranger.keyid: stranger}, tmp_path / "fresh", clock))
    assert e.value.reason == "BadSignature"


def test_an_expired_cache_restores_flagged_expired(bundles, state, clock):
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    BundleCache(state).save(
        verifier.verify(*bundles.make([configmap("a", "shop")], expires=NOW + _dt.timedelta(minutes=5)))
    )
    clock.advance(3600)
    restored = BundleCache(state).restore(verifier)
    assert restored.expired and restored.verified.release == 1


def test_a_cache_older_than_the_verified_state_is_a_rollback(bundles, state, clock):
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    cache = BundleCache(state)
    cache.save(verifier.verify(*bundles.make([configmap("a", "shop")])))
    verifier.verify(*bundles.make([configmap("b", "shop")]))  # newer, verified but never cached
    with pytest.raises(VerificationError) as e:
        cache.restore(verifier)
    assert e.value.reason == "Rollback"


def test_cache_files_are_private(bundles, state, clock):
    verifier = Verifier(CLUSTER, bundles.trusted, state, clock)
    cache = BundleCache(state)
    cache.save(verifier.verify(*bundles.make([configmap("a", "shop")])))
    assert cache.directory.stat().st_mode & 0o077 == 0
    for path in cache.directory.iterdir():
        assert path.stat().st_mode & 0o077 == 0
