"""Shared blobs and release statements: one bundle for many clusters, hashed once and sent by reference,
each cluster bound to it by its own signed statement; agents verify both, older agents get TUF envelopes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from skerry.agent.stream import HubClient
from skerry.agent.verify import Verifier
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.bundle import (
    SHARED_CLUSTER,
    generate_signing_key,
    load_public_key,
    sign_statement,
    verify_signed_bundle,
)
from skerry.core.canonical import canonical_json, sha256_digest
from skerry.core.errors import VerificationError
from skerry.hub.bundles.store import HubStore

from .hubs import CHUNK, READ, bare_hub, bundle, channel

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def shared(size: int = 4096, tag: str = ""):
    return bundle(SHARED_CLUSTER, size, tag)


@pytest.fixture
def signer(tmp_path):
    return generate_signing_key(tmp_path / "hub.key")


def statement(signer, blob: bytes, *, cluster="oslo", release=5, expires=NOW + dt.timedelta(days=1), **kw):
    fields = dict(cluster=cluster, release=release, blob_digest=sha256_digest(blob), length=len(blob),
                  revision="a" * 40, expires=expires, signers=[signer])
    fields.update(kw)
    return sign_statement(**fields)


def verify(signer, md, blob, *, cluster="oslo", **kw):
    kw.setdefault("now", NOW)
    return verify_signed_bundle(md, blob, cluster=cluster, trusted_keys={signer.public_key.keyid: signer.public_key}, **kw)


# --- the statement (skerry.core.bundle) ------------------------------------------------------


def test_a_statement_binds_its_cluster_to_a_shared_blob_and_verifies(signer):
    blob = shared().encode()
    v = verify(signer, statement(signer, blob), blob)
    assert v.bundle.cluster == "oslo" and v.release == 5 and v.digest == sha256_digest(blob) and v.raw == blob


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other cluster", "WrongCluster"),
        ("tampered", "BadSignature"),
        ("untrusted key", "BadSignature"),
        ("other blob", "HashMismatch"),
        ("expired", "Expired"),
        ("rollback", "Rollback"),
        ("same release other blob", "MixAndMatch"),
        ("blob names another cluster", "WrongCluster"),
    ],
)
def test_a_statement_is_refused_naming_the_attack(signer, tmp_path, case, reason):
    blob = shared().encode()
    md, kw, cluster = statement(signer, blob), {}, "oslo"
    if case == "other cluster":
        cluster = "bergen"
    elif case == "tampered":
        doc = json.loads(md)
        doc["signed"]["release"] = 6
        md = canonical_json(doc)
    elif case == "untrusted key":
        md = statement(generate_signing_key(tmp_path / "other.key"), blob)
    elif case == "other blob":
        blob = shared(tag="x").encode()
    elif case == "expired":
        kw["now"] = NOW + dt.timedelta(days=2)
    elif case == "rollback":
        kw["last_release"] = 6
    elif case == "same release other blob":
        kw.update(last_release=5, last_digest="sha256:" + "0" * 64)
    elif case == "blob names another cluster":
        blob = bundle("bergen", 4096).encode()
        md = statement(signer, blob)
    with pytest.raises(VerificationError) as e:
        verify(signer, md, blob, cluster=cluster, **kw)
    assert e.value.reason == reason


def test_the_agent_verifier_records_a_statement_and_reverifies_it_from_cache_after_expiry(signer, tmp_path):
    class Clock:
        t = NOW

        def now(self):
            return self.t

    blob, clock = shared().encode(), Clock()
    verifier = Verifier("oslo", [signer.public_key], tmp_path, clock)
    md = statement(signer, blob)
    assert verifier.verify(md, blob).release == 5 and verifier.last_release == 5
    clock.t = NOW + dt.timedelta(days=3)
    again, expired = verifier.reverify(md, blob)
    assert expired and again.release == 5


# --- the store ---------------------------------------------------------------------------------


def test_publish_shared_hashes_once_and_every_cluster_references_the_same_bytes(signer):
    store = HubStore(signer)
    names = [f"c{i}" for i in range(50)]
    assert store.publish_shared(names, shared(64 * 1024)) == names
    currents = [store.current(n) for n in names]
    assert all(c.bundle is currents[0].bundle and c.shared is currents[0].shared for c in currents)
    assert len({c.metadata for c in currents}) == 50 and all(len(c.metadata) < 1024 for c in currents)
    for c in currents:
        assert verify(signer, c.metadata, c.bundle, cluster=c.cluster).bundle.cluster == c.cluster


def test_unchanged_shared_content_gives_no_new_release(signer):
    store = HubStore(signer)
    b = shared()
    store.publish_shared(["oslo", "bergen"], b)
    assert store.publish_shared(["oslo", "bergen"], b) == []
    assert store.publish_shared(["oslo", "bergen", "tromso"], b) == ["tromso"]


def test_an_agent_without_statements_gets_its_own_tuf_envelope_of_the_same_release(signer):
    store = HubStore(signer)
    store.publish_shared(["oslo"], shared())
    cur = store.current("oslo")
    legacy = store.legacy_envelope(cur)
    assert legacy.release == cur.release and legacy.shared is None and store.legacy_envelope(cur) is legacy
    v = verify(signer, legacy.metadata, legacy.bundle)  # the TUF path: the document names the cluster
    assert v.bundle.cluster == "oslo" and v.release == cur.release
    assert v.bundle.objects == cur.shared.bundle.objects


def test_a_shared_bundle_must_not_name_a_cluster(signer):
    with pytest.raises(ValueError, match="names no cluster"):
        HubStore(signer).publish_shared(["oslo"], bundle("oslo", 100))


# --- over the wire -------------------------------------------------------------------------------


async def test_agents_of_two_clusters_receive_and_verify_one_shared_blob(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, servicer, _, address):
        store.publish_shared(["oslo", "bergen"], shared(3 * CHUNK + 7))
        trusted = load_public_key(tmp_path / "signing.key.pub")
        for name in ("oslo", "bergen"):
            client = HubClient(address, pki.agent(name), name)
            watch = client.watch()
            try:
                got = await asyncio.wait_for(anext(watch), READ)
                v = Verifier(name, [trusted], tmp_path / name).verify_message(got.bundle)
                assert v.bundle.cluster == name and v.digest == store.current(name).shared.digest
            finally:
                await watch.aclose()
                await client.close()
        # the chunk messages were serialised once, for both streams
        assert list(store.current("oslo").shared.wire) == [CHUNK]
        assert len(store.current("oslo").shared.wire[CHUNK]) == 4


async def test_a_small_shared_blob_is_one_chunk_serialised_once_for_every_stream(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        store.publish_shared(["oslo", "bergen"], shared(CHUNK // 2))
        trusted = load_public_key(tmp_path / "signing.key.pub")
        for name in ("oslo", "bergen"):
            async with channel(address, pki.agent(name)) as ch:
                call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(
                    hub_pb2.WatchBundlesRequest(cluster=name, accepts_chunks=True, accepts_statements=True)
                )
                head = await asyncio.wait_for(call.read(), READ)
                chunk = await asyncio.wait_for(call.read(), READ)
                call.cancel()
            assert head.bundle.cluster == name and head.transfer.chunks == 1 and not head.bundle.bundle
            assert bytes(chunk.chunk.data) == store.current(name).shared.data
            head.bundle.bundle = chunk.chunk.data
            v = Verifier(name, [trusted], tmp_path / name).verify_message(head.bundle)
            assert v.release == store.current(name).release
        assert len(store.current("oslo").shared.wire[CHUNK]) == 1  # one serialised chunk for both streams


async def test_an_agent_that_does_not_announce_statements_gets_a_tuf_envelope_over_its_own_bytes(pki, tmp_path):
    async with bare_hub(pki, tmp_path) as (store, _, _, address):
        store.publish_shared(["oslo"], shared(1000))
        async with channel(address, pki.agent("oslo")) as ch:
            call = hub_pb2_grpc.HubServiceStub(ch).WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo"))
            whole = await asyncio.wait_for(call.read(), READ)
            call.cancel()
        trusted = load_public_key(tmp_path / "signing.key.pub")
        v = verify_signed_bundle(bytes(whole.bundle.metadata), bytes(whole.bundle.bundle), cluster="oslo",
                                 trusted_keys={trusted.keyid: trusted}, now=dt.datetime.now(dt.UTC))
        assert v.bundle.cluster == "oslo" and b'"cluster":"oslo"' in whole.bundle.bundle
        assert v.release == store.current("oslo").release
