"""HubStore: releases the director names and that never go down, errors beside bundles, watchers."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace as dataclass_replace

import pytest

from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_digest
from skerry.core.clock import FixedClock, SystemClock
from skerry.core.errors import NotFound
from skerry.hub.bundles.store import HubStore, RenderFailure, SignedBundle
from skerry.hub.state import Fenced, open_state
from skerry.hub.writer import Releases, Writer


def bundle(cluster: str = "oslo-prod", revision: str = "c1", replicas: int | None = None) -> Bundle:
    """A bundle whose content follows ``revision`` unless ``replicas`` fixes it."""
    return Bundle(
        cluster=cluster,
        revision=revision,
        source_url="/srv/fleet",
        paths=("overlays/prod",),
        engine="kustomize",
        engine_version="v5.5.0",
        objects=(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"n": revision if replicas is None else str(replicas)},
            },
        ),
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def store(director, clock) -> HubStore:
    s = HubStore(director, clock=clock, environment_of=lambda cluster: cluster.rsplit("-", 1)[-1])
    s.declare(["oslo-prod", "oslo-dev"])
    return s


def test_first_release_takes_the_stores_counter_and_the_director_names_the_bundle(store, clock, director):
    signed = store.publish("oslo-prod", bundle())
    assert signed.release == 1  # the store's counter (in memory here; the hub's is in its state)
    assert signed.digest == sha256_digest(bundle().encode())
    pointer = director.directed("oslo-prod")
    assert "sha256:" + pointer.hashes["sha256"] == signed.digest
    assert pointer.custom["release"] == signed.release
    assert pointer.path == trust.release_path("prod", "oslo-prod", pointer.hashes["sha256"])
    env, release = trust.director_says("oslo-prod", "prod", pointer.path, pointer)
    assert (env, release) == ("prod", signed.release)
    assert signed.expires == director.horizon(pointer.path)


def test_a_release_directs_only_its_own_cluster(store, director):
    store.publish("oslo-prod", bundle())
    assert director.directed("oslo-dev") is None
    with pytest.raises(Exception, match="WrongCluster|oslo-dev|oslo-prod"):
        trust.director_says("oslo-dev", "prod", director.directed("oslo-prod").path, director.directed("oslo-prod"))


def test_a_bundle_the_release_side_has_not_signed_waits_and_keeps_the_current_one(dev_trust, clock):
    held = HubStore(dev_trust.repository(), clock=clock, environment_of=lambda cluster: "prod")
    first = held.publish("oslo-prod", bundle(revision="c1"))
    # the same repository without the hub holding release-prod: a new bundle awaits offline signatures
    from skerry.hub.trust.repository import TrustRepository

    offline = HubStore(TrustRepository.open(dev_trust.dir), clock=clock, environment_of=lambda cluster: "prod")
    offline.declare(["oslo-prod"])
    assert offline.publish("oslo-prod", bundle(revision="c2")) is None
    assert offline.pending("oslo-prod")[0] == bundle(revision="c2")
    assert "awaits signatures of release-prod" in offline.error("oslo-prod").message
    assert held.current("oslo-prod") is first


def test_unchanged_digest_makes_no_new_release(store, clock):
    first = store.publish("oslo-prod", bundle())
    clock.advance(3600)
    assert store.publish("oslo-prod", bundle()) is None
    assert store.current("oslo-prod") is first


def test_same_content_at_a_new_revision_makes_no_new_release(store):
    first = store.publish("oslo-prod", bundle(revision="c1", replicas=2))
    store.set_error("oslo-prod", "broken at c2", "c2")
    assert store.publish("oslo-prod", bundle(revision="c3", replicas=2)) is None
    assert store.current("oslo-prod") is first and first.revision == "c1"
    assert store.error("oslo-prod") is None  # the cluster is fine again at c3
    assert first.content_digest != first.digest


def test_changed_bundle_gets_a_higher_release_even_within_the_same_millisecond(store):
    first = store.publish("oslo-prod", bundle(revision="c1"))
    second = store.publish("oslo-prod", bundle(revision="c2"))
    third = store.publish("oslo-prod", bundle(revision="c2", replicas=3))
    assert first.release < second.release < third.release
    assert third.release == first.release + 2


def test_restarted_hub_continues_its_release_counters_even_with_its_clock_stepped_back(dev_trust, tmp_path):
    clock = FixedClock(dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC))
    state = open_state("", state_dir=tmp_path)
    writer = Writer(state, "hub-a")
    assert writer.try_acquire()
    before = HubStore(dev_trust.repository(), clock=clock, releases=Releases(writer))
    for i in range(5):
        last = before.publish("oslo-prod", bundle(revision=f"c{i}"))
    state.close()
    # A restart on a host whose clock went back a day: the counter comes from the state, not the clock.
    clock.advance(-86400)
    state = open_state("", state_dir=tmp_path)
    writer = Writer(state, "hub-a")
    assert writer.try_acquire()
    after = HubStore(dev_trust.repository(), clock=clock, releases=Releases(writer))
    again = after.publish("oslo-prod", bundle(revision="c4"))
    assert again.digest == last.digest
    assert again.release == last.release  # the director already names it: the same release, never lower
    newer = after.publish("oslo-prod", bundle(revision="c5"))
    assert newer.release > last.release
    state.close()


def test_a_store_whose_writer_was_fenced_publishes_nothing(dev_trust, tmp_path):
    state = open_state("", state_dir=tmp_path)
    old, new = Writer(state, "hub-a"), Writer(open_state("", state_dir=tmp_path), "hub-b")
    assert old.try_acquire()
    store = HubStore(dev_trust.repository(), clock=SystemClock(), releases=Releases(old))
    first = store.publish("oslo-prod", bundle(revision="c1"))
    state.release_lease(old.lease)  # (as if it had expired) another process takes over
    assert new.try_acquire()
    with pytest.raises(Fenced):
        store.publish("oslo-prod", bundle(revision="c2"))
    assert store.current("oslo-prod") == first and not old.is_writer
    with pytest.raises(Fenced):  # stepped down: no further write even tried
        store.publish_shared(["oslo-prod"], dataclass_replace(bundle(revision="c3"), cluster=""))
    state.close()
    new.state.close()




def test_render_error_keeps_the_current_bundle_and_a_good_publish_clears_it(store):
    good = store.publish("oslo-prod", bundle(revision="c1"))
    failure = store.set_error("oslo-prod", "overlays/prod: kustomize build failed: boom", "c2")
    assert store.current("oslo-prod") is good
    assert store.error("oslo-prod") == failure
    assert failure.revision == "c2" and "overlays/prod" in failure.message
    store.publish("oslo-prod", bundle(revision="c3"))
    assert store.error("oslo-prod") is None


def test_removed_cluster_is_forgotten(store):
    store.publish("oslo-prod", bundle())
    assert store.declare(["oslo-dev"]) == ["oslo-prod"]
    assert "oslo-prod" not in store
    with pytest.raises(NotFound, match="oslo-prod"):
        store.current("oslo-prod")


# --- watchers -----------------------------------------------------------------------------------


async def next_event(it, timeout: float = 5.0):
    return await asyncio.wait_for(anext(it), timeout)


async def test_watch_yields_the_current_bundle_then_each_newer_one(store):
    first = store.publish("oslo-prod", bundle(revision="c1"))
    it = store.watch("oslo-prod")
    assert await next_event(it) is first
    pending = asyncio.ensure_future(next_event(it))
    await asyncio.sleep(0.05)
    assert not pending.done()  # nothing new: the watcher waits (no polling, no repeats)
    second = store.publish("oslo-prod", bundle(revision="c2"))
    assert await pending is second
    await it.aclose()


async def test_watch_skips_the_bundle_the_watcher_already_has(store):
    first = store.publish("oslo-prod", bundle(revision="c1"))
    it = store.watch("oslo-prod", last_digest=first.digest)
    pending = asyncio.ensure_future(next_event(it))
    await asyncio.sleep(0.05)
    assert not pending.done()
    second = store.publish("oslo-prod", bundle(revision="c2"))
    assert await pending is second
    await it.aclose()


async def test_watch_waits_for_a_first_bundle(store):
    it = store.watch("oslo-dev")
    pending = asyncio.ensure_future(next_event(it))
    await asyncio.sleep(0.05)
    assert not pending.done()
    signed = store.publish("oslo-dev", bundle("oslo-dev"))
    assert await pending is signed
    await it.aclose()


async def test_watch_reports_render_errors_once_each(store):
    good = store.publish("oslo-prod", bundle(revision="c1"))
    store.set_error("oslo-prod", "broken", "c2")
    it = store.watch("oslo-prod")
    assert await next_event(it) is good
    failure = await next_event(it)
    assert isinstance(failure, RenderFailure) and failure.message == "broken"
    store.set_error("oslo-prod", "broken", "c2")  # the same error again is not news
    pending = asyncio.ensure_future(next_event(it))
    await asyncio.sleep(0.05)
    assert not pending.done()
    store.set_error("oslo-prod", "broken", "c3")
    later = await pending
    assert isinstance(later, RenderFailure) and later.revision == "c3"
    await it.aclose()


async def test_slow_watcher_gets_the_newest_bundle_not_every_intermediate_one(store):
    store.publish("oslo-prod", bundle(revision="c1"))
    it = store.watch("oslo-prod")
    await next_event(it)
    store.publish("oslo-prod", bundle(revision="c2"))
    newest = store.publish("oslo-prod", bundle(revision="c3"))
    assert await next_event(it) is newest
    await it.aclose()


async def test_many_watchers_all_see_a_new_release(store):
    store.publish("oslo-prod", bundle(revision="c1"))
    watchers = [store.watch("oslo-prod") for _ in range(500)]
    for it in watchers:
        await next_event(it)
    pending = [asyncio.ensure_future(next_event(it)) for it in watchers]
    await asyncio.sleep(0)
    signed = store.publish("oslo-prod", bundle(revision="c2"))
    results = await asyncio.gather(*pending)
    assert all(r is signed for r in results)
    for it in watchers:
        await it.aclose()


async def test_watching_an_unknown_or_removed_cluster_is_not_found(store):
    with pytest.raises(NotFound, match="'ghost' is not in the fleet"):
        await next_event(store.watch("ghost"))
    it = store.watch("oslo-dev")
    pending = asyncio.ensure_future(next_event(it))
    await asyncio.sleep(0.01)
    store.declare(["oslo-prod"])
    with pytest.raises(NotFound, match="'oslo-dev' was removed"):
        await pending


def test_signed_bundle_is_immutable(store):
    signed = store.publish("oslo-prod", bundle())
    assert isinstance(signed, SignedBundle)
    with pytest.raises(AttributeError):
        signed.release = 1  # type: ignore[misc]
