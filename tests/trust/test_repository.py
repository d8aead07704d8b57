"""The trust repository's own rules: release thresholds, online re-signing, key hygiene, attack naming."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata

from skerry.agent.trust import TufVerifier, classify
from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.clock import FixedClock
from skerry.core.errors import ConfigError, InvalidInput, NotFound, VerificationError
from skerry.hub.trust import admin
from skerry.hub.trust import keys as keyfiles
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository
from tests.trust.fetchers import RepositoryFetcher


def bundle(cluster: str = "oslo-prod", value: str = "x") -> bytes:
    objs = ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": "n"}, "data": {"v": value}},)
    return Bundle(cluster, "a" * 40, "file:///f", ("o",), "kustomize", "v5", objs).encode()


@pytest.fixture
def world(tmp_path):
    clock = FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    made = admin.init(tmp_path / "trust", {"dev": (1, 1), "prod": (3, 2)}, clock=clock)
    repo = TrustRepository.open(tmp_path / "trust", clock=clock)
    return repo, made, clock


def signers(made, role, *idx):
    return [keyfiles.load_signer(made[role][i]) for i in idx]


def test_a_prod_release_is_published_only_at_two_distinct_release_keys(world):
    repo, made, _ = world
    data = bundle()
    md = repo.release_proposal("prod", "oslo-prod", data, "a" * 40)
    one = Metadata.from_bytes(md.to_bytes(_SERIALIZER))
    one.sign(signers(made, "release-prod", 0)[0])
    assert not repo.submit_release("release-prod", one.to_bytes(_SERIALIZER)).published
    assert repo.submit_release("release-prod", one.to_bytes(_SERIALIZER)).signatures == 1  # same key: once
    assert repo.direct("oslo-prod", "prod", data, revision="a" * 40, release=1) is None
    two = Metadata.from_bytes(md.to_bytes(_SERIALIZER))
    two.sign(signers(made, "release-prod", 1)[0])
    result = repo.submit_release("release-prod", two.to_bytes(_SERIALIZER))
    assert result.published and result.signatures == 2
    assert repo.direct("oslo-prod", "prod", data, revision="a" * 40, release=1) is not None


def test_release_signatures_by_foreign_keys_or_outside_the_env_are_refused(world):
    repo, made, _ = world
    md = repo.release_proposal("prod", "oslo-prod", bundle(), "a" * 40)
    md.sign(CryptoSigner.generate_ed25519())
    with pytest.raises(VerificationError) as e:
        repo.submit_release("release-prod", md.to_bytes(_SERIALIZER))
    assert e.value.reason == "BadSignature"
    md = repo.release_proposal("dev", "oslo-dev", bundle("oslo-dev"), "a" * 40)
    md.signed.targets["releases/prod/oslo-prod/" + "0" * 64 + ".json"] = next(iter(md.signed.targets.values()))
    md.sign(signers(made, "release-dev", 0)[0])
    with pytest.raises(VerificationError) as e:
        repo.submit_release("release-dev", md.to_bytes(_SERIALIZER))
    assert e.value.reason == "PathTraversal"


def test_the_timestamp_is_re_signed_automatically_before_it_expires(world):
    repo, _, clock = world
    ts = repo.md["timestamp"].signed
    first_version, first_expiry = ts.version, ts.expires
    assert repo.refresh() == []  # fresh: nothing to do
    clock.advance(13 * 3600)  # past half of the 1-day timestamp lifetime
    assert "timestamp" in repo.refresh()
    ts = Metadata.from_bytes((repo.metadata_dir / "timestamp.json").read_bytes()).signed
    assert ts.version == first_version + 1 and ts.expires > first_expiry


def test_the_director_is_re_signed_before_it_expires(world):
    repo, _, clock = world
    v = repo.md[trust.DIRECTOR_ROLE].signed.version
    clock.advance(4 * 86400)
    assert trust.DIRECTOR_ROLE in repo.refresh()
    assert repo.md[trust.DIRECTOR_ROLE].signed.version == v + 1


def test_an_online_key_readable_by_others_is_refused(world, tmp_path):
    key = tmp_path / "trust" / "keys" / "timestamp.key"
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        TrustRepository.open(tmp_path / "trust")


def test_fetch_serves_only_repository_paths(world):
    repo, _, _ = world
    assert repo.fetch("metadata/1.root.json").startswith(b"{")
    for bad in ("metadata/../keys/director.key", "targets/releases/dev/x/../../../../etc/passwd",
                "keys/director.key", "metadata/1.root.json/.."):
        with pytest.raises(InvalidInput):
            repo.fetch(bad)
    with pytest.raises(NotFound):
        repo.fetch("metadata/9.root.json")


def test_root_rotation_needs_the_old_threshold(world, tmp_path):
    repo, made, _ = world
    new = keyfiles.generate_key(tmp_path / "new-root.key")
    md = admin.rotate_root(repo.directory, signers(made, "root", 0), [new])
    assert md.signed.version == 2
    repo.root.verify_delegate("root", md.signed_bytes, md.signatures)  # old root accepts it
    md.signed.verify_delegate("root", md.signed_bytes, md.signatures)  # and so does the new one


@pytest.mark.parametrize(("error", "path", "reason"), [
    (tuf_errors.ExpiredMetadataError("timestamp.json is expired"), "metadata/timestamp.json", "Freeze"),
    (tuf_errors.UnsignedMetadataError("root was signed by 0/1 keys"), "metadata/2.root.json", "BadRootChain"),
    (tuf_errors.UnsignedMetadataError("x"), "metadata/3.snapshot.json", "BadSignature"),
    (tuf_errors.BadVersionNumberError("New timestamp version 1 must be >= 2"), "metadata/timestamp.json", "Rollback"),
    (tuf_errors.BadVersionNumberError("Expected director.json version 2, got 1."), "", "Rollback"),
    (tuf_errors.BadVersionNumberError("Expected director v3, got v2."), "", "MixAndMatch"),
    (tuf_errors.DownloadLengthMismatchError("over"), "metadata/timestamp.json", "EndlessData"),
])
def test_each_tuf_error_is_named_by_its_attack_class(error, path, reason):
    assert classify(error, path)[0] == reason


def test_adding_and_revoking_a_release_key_re_signs_the_binned_release_role(world, tmp_path):
    repo, made, clock = world
    targets, (r1, r2, _r3) = signers(made, "targets", 0)[0], signers(made, "release-prod", 0, 1, 2)
    new = keyfiles.generate_key(tmp_path / "ci-d.key")
    admin.add_key(repo.directory, "release-prod", new.public_key, [targets, r1, r2], clock=clock)
    repo.reload()
    assert all(new.public_key.keyid in b.keyids for b in repo.md["release-prod"].signed.delegations.roles.values())
    data = bundle()
    md = repo.release_proposal("prod", "oslo-prod", data, "a" * 40)
    md.sign(new, append=True)
    md.sign(r1, append=True)
    assert repo.submit_release("release-prod", md.to_bytes(_SERIALIZER)).published  # the added key counts
    assert repo.direct("oslo-prod", "prod", data, revision="a" * 40, release=1) is not None
    agent = TufVerifier("oslo-prod", "prod", repo.directory / "root.json", tmp_path / "agent",
                        lambda: RepositoryFetcher(repo, []), clock=clock)
    assert agent.update(digest=sha256_digest(data)).release == 1
    # revoking r1 leaves the bin it co-signed below the threshold of 2: re-signed by the keys given
    holder = repo.release_holder("prod", trust.release_path("prod", "oslo-prod", sha256_hex(data)))
    version = repo.md[holder].signed.version
    admin.revoke_key(repo.directory, "release-prod", r1.public_key.keyid, [targets, new, r2], clock=clock)
    repo.reload()
    assert all(r1.public_key.keyid not in b.keyids for b in repo.md["release-prod"].signed.delegations.roles.values())
    assert repo.md[holder].signed.version == version + 1
    assert set(repo.md[holder].signatures) == {new.public_key.keyid, r2.public_key.keyid}
    assert agent.update(digest=sha256_digest(data)) is None  # still verifies: nothing new to apply


def _same_release_bin(cluster: str, n: int) -> list[bytes]:
    """``n`` bundles of ``cluster`` whose release paths fall in one release bin (paths hash apart)."""
    by_bin: dict[str, list[bytes]] = {}
    for i in range(10_000):
        data = bundle(cluster, f"v{i}")
        group = by_bin.setdefault(trust.release_bin("prod", trust.release_path("prod", cluster, sha256_hex(data))), [])
        group.append(data)
        if len(group) == n:
            return group
    raise AssertionError("no bin got enough bundles")


def release(repo, made, cluster: str, data: bytes) -> None:
    md = repo.release_proposal("prod", cluster, data, "a" * 40)
    for s in signers(made, "release-prod", 0, 1):
        md.sign(s, append=True)
    assert repo.submit_release("release-prod", md.to_bytes(_SERIALIZER)).published


def test_a_release_bin_keeps_the_directed_and_the_newest_release_not_the_lowest_hashes(world, tmp_path):
    repo, made, clock = world
    a, b, c, d = _same_release_bin("oslo-prod", 4)
    release(repo, made, "oslo-prod", a)
    repo.direct("oslo-prod", "prod", a, revision="a" * 40, release=1)
    repo = TrustRepository.open(tmp_path / "trust", clock=clock)  # a restarted hub: the bin read back from disk
    release(repo, made, "oslo-prod", b)  # released, not directed yet ...
    release(repo, made, "oslo-prod", c)  # ... and superseded by a newer release
    kept = {p for p in repo.md[repo.release_holder("prod", trust.release_path("prod", "oslo-prod", sha256_hex(a)))]
            .signed.targets}
    assert kept == {trust.release_path("prod", "oslo-prod", sha256_hex(x)) for x in (a, c)}
    # b's file goes once no kept version of its bin lists it: after the next commit of that bin
    release(repo, made, "oslo-prod", d)
    b_file = repo.targets_dir / trust.consistent_name(trust.release_path("prod", "oslo-prod", sha256_hex(b)),
                                                      sha256_hex(b))
    assert not b_file.exists() and not repo._blob_path(sha256_hex(b)).exists()
    assert repo.fetch(f"targets/{trust.release_path('prod', 'oslo-prod', sha256_hex(a))}") == a  # directed: kept


def test_a_proposal_keeps_its_blob_until_superseded_and_collected_signatures_keep_theirs(world):
    repo, made, _ = world
    first, second, third = bundle(value="p1"), bundle(value="p2"), bundle(value="p3")
    repo.release_proposal("prod", "oslo-prod", first, "a" * 40)
    one = repo.release_proposal("prod", "oslo-prod", second, "a" * 40)  # supersedes the first proposal
    one.sign(signers(made, "release-prod", 0)[0])
    assert not repo.submit_release("release-prod", one.to_bytes(_SERIALIZER)).published  # 1 of 2: collecting
    repo.release_proposal("prod", "bergen-prod", third, "a" * 40)
    release(repo, made, "bergen-prod", third)  # a commit: garbage collection runs
    assert not repo._blob_path(sha256_hex(first)).exists()  # superseded, never released
    assert repo._blob_path(sha256_hex(second)).exists()  # signatures are being collected for it
    with pytest.raises(NotFound):
        repo.fetch(f"targets/{trust.release_path('prod', 'oslo-prod', sha256_hex(first))}")


def test_opening_the_repository_removes_what_no_kept_version_names(world, tmp_path):
    repo, made, clock = world
    data = bundle()
    release(repo, made, "oslo-prod", data)
    repo.direct("oslo-prod", "prod", data, revision="a" * 40, release=1)
    stray_blob = repo._blob_path("0" * 64)
    stray_blob.write_bytes(b"{}")
    stray_link = repo.targets_dir / trust.consistent_name(trust.release_path("prod", "gone", "1" * 64), "1" * 64)
    stray_link.parent.mkdir(parents=True)
    os.link(stray_blob, stray_link)
    old_snapshot = repo.metadata_dir / "1.snapshot.json"
    old_snapshot.write_bytes(b"{}")  # a version long superseded, left by a crash
    kept = {p for p in repo.metadata_dir.iterdir() if p != old_snapshot}
    repo = TrustRepository.open(tmp_path / "trust", clock=clock)
    assert not stray_link.exists() and not stray_blob.exists() and not old_snapshot.exists()
    assert set(repo.metadata_dir.iterdir()) == kept
    assert repo.fetch(f"targets/{repo.directed('oslo-prod').path}") == data
