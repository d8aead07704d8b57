"""The bundle cache: the last verified bytes, still sealed, re-verified on the way back."""

from __future__ import annotations

import datetime as _dt

import pytest

from skerry.agent.cache import BundleCache
from skerry.core.errors import VerificationError

from .helpers import Bundles, configmap


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def verify_new(bundles: Bundles, verifier, name: str):
    """Release a bundle of one ConfigMap ``name`` and let the agent's verifier fetch and verify it."""
    bundles.publish([configmap(name, "shop")])
    return verifier.update()


def test_saved_bundle_restores_and_verifies(bundles, state, clock):
    verified = verify_new(bundles, bundles.verifier(state, clock), "a")
    cache = BundleCache(state)
    cache.save(verified)
    restored = BundleCache(state).restore(bundles.verifier(state, clock))  # a restarted agent
    assert restored is not None and not restored.expired
    assert restored.verified.digest == verified.digest and restored.verified.release == verified.release
    assert restored.verified.raw == verified.raw


def test_only_the_last_bundle_is_kept(bundles, state, clock):
    verifier = bundles.verifier(state, clock)
    cache = BundleCache(state)
    for name in ("a", "b", "c"):
        last = verify_new(bundles, verifier, name)
        cache.save(last)
    files = sorted(p.name for p in cache.directory.iterdir())
    assert len(files) == 3 and "current" in files
    assert cache.restore(verifier).verified.release == last.release == 3


def test_no_cache_restores_nothing(bundles, state, clock):
    assert BundleCache(state).restore(bundles.verifier(state, clock)) is None


def test_a_tampered_cache_is_refused(bundles, state, clock):
    verifier = bundles.verifier(state, clock)
    cache = BundleCache(state)
    cache.save(verify_new(bundles, verifier, "a"))
    (bundle_file,) = cache.directory.glob("bundle-*.json")
    bundle_file.write_bytes(bundle_file.read_bytes().replace(b'"k":"v"', b'"k":"evil"'))
    with pytest.raises(VerificationError) as e:
        cache.restore(verifier)
    assert e.value.reason == "HashMismatch"


def test_a_cache_this_agent_never_verified_is_refused(bundles, state, clock, tmp_path):
    BundleCache(state).save(verify_new(bundles, bundles.verifier(state, clock), "a"))
    with pytest.raises(VerificationError) as e:  # copied into an agent whose trusted state knows nothing of it
        BundleCache(state).restore(bundles.verifier(tmp_path / "fresh", clock))
    assert e.value.reason == "HashMismatch"


def test_an_expired_cache_restores_flagged_expired(tmp_path, state, clock):
    bundles = Bundles(tmp_path, expiry={"timestamp": _dt.timedelta(minutes=5)})
    verifier = bundles.verifier(state, clock)
    BundleCache(state).save(verify_new(bundles, verifier, "a"))
    clock.advance(3600)
    restored = BundleCache(state).restore(verifier)
    assert restored.expired and restored.verified.release == 1


def test_a_cache_older_than_the_verified_state_is_refused(bundles, state, clock):
    verifier = bundles.verifier(state, clock)
    cache = BundleCache(state)
    cache.save(verify_new(bundles, verifier, "a"))
    verify_new(bundles, verifier, "b")  # newer, verified but never cached
    with pytest.raises(VerificationError) as e:
        cache.restore(verifier)
    assert e.value.reason == "HashMismatch"


def test_cache_files_are_private(bundles, state, clock):
    cache = BundleCache(state)
    cache.save(verify_new(bundles, bundles.verifier(state, clock), "a"))
    assert cache.directory.stat().st_mode & 0o077 == 0
    for path in cache.directory.iterdir():
        assert path.stat().st_mode & 0o077 == 0
