"""TUF/Uptane attack suite: a real agent process refuses each attack and applies nothing of it.

Each test builds a real trust repository (``TrustWorld``), lets a real agent
(``skerry agent run --trust-root``, stock python-tuf ``Updater`` over gRPC)
apply a good release from a TUF mirror into the real API server, then has
the mirror (``ReplayHub``: mTLS, valid server certificate) serve what an
attacker with a given set of keys could produce. The agent must report the
refusal with a reason naming the attack class, and the cluster must still
hold the good release.
"""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
from tuf.api.metadata import Metadata, TargetFile

from skerry.core import tls, trust
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.hub.trust import admin
from skerry.hub.trust import keys as keyfiles
from skerry.testing.devstack import Stack, wait_for

from .replay_hub import ReplayHub
from .trust_world import TrustWorld, bundle_bytes, evil_key, expires_in

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "oslo-dev"
# How long the timestamp of the expiry test stays valid once the agent applied: well over its 1 s poll.
SHORT_EXPIRY = 6


class Scene:
    def __init__(self, stack: Stack, mirror: ReplayHub, world: TrustWorld):
        self.stack, self.mirror, self.world = stack, mirror, world
        self.ns = f"trust-{uuid.uuid4().hex[:6]}"
        self.agent = None

    def good(self, value: str = "good", cluster: str = CLUSTER, env: str = "dev") -> bytes:
        data = bundle_bytes(cluster, self.ns, value)
        self.world.publish(cluster, env, data)
        return data

    def serve(self, files: dict[str, bytes] | None = None) -> dict[str, bytes]:
        self.mirror.trust_files = dict(files if files is not None else self.world.files())
        return self.mirror.trust_files

    def start(self, cluster: str = CLUSTER, env: str = "dev", *extra: str):
        self.agent = self.stack.start_agent(cluster, hub=self.mirror.address, trust_root=self.world.root,
                                            environment=env, extra=("--trust-poll", "1", *extra))
        return self.agent

    def applied(self, data: bytes, cluster: str = CLUSTER) -> dict:
        return self.stack.wait_applied(cluster, digest=sha256_digest(data), timeout=60)

    def refused(self, reason: str) -> None:
        def probe():
            for report in self.mirror.reports:
                for cond in report.conditions:
                    if cond.reason == reason and cond.status in ("False", "True") and cond.type in ("Verified", "Frozen"):
                        return cond
            return None

        wait_for(probe, 30, f"the agent to refuse with {reason}", self.agent)

    def settled(self) -> None:
        """The good release published and served, and applied by the agent started for it."""
        good = self.good()
        self.serve()
        self.start()
        self.applied(good)

    def settled_prod(self, data: bytes, keys: tuple[int, ...]) -> None:
        """``data`` released for oslo-prod with the release-prod keys numbered ``keys``, published, served, and
        applied by the agent started for oslo-prod."""
        self.world.release_prod("oslo-prod", data, [self.world.key("release-prod", i) for i in keys])
        self.world.publish("oslo-prod", "prod", data)
        self.serve()
        self.start("oslo-prod", "prod")
        self.applied(data, "oslo-prod")

    def reopened_and_applied(self, value: str) -> None:
        """After an offline change to the trust repository: reopen it, publish ``value``, serve it, and see the
        agent apply it."""
        self.world.repo = self.world.open()
        self.world.repo.reload()
        data = self.good(value)
        self.serve()
        self.applied(data)
        assert self.marker() == value

    def marker(self) -> str:
        return self.stack.kubectl("get", "configmap", "marker", "-n", self.ns, "--ignore-not-found",
                                  "-o", "jsonpath={.data.value}", check=False)


@pytest.fixture
def scene(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig)  # only its agents and PKI: the world below is the repository
    stack.sealer_address = "127.0.0.1:9"
    mirror = ReplayHub(stack.identity("mirror", tls.ROLE_HUB, server=True)).start()
    world = TrustWorld(tmp_path / "trust")
    try:
        yield Scene(stack, mirror, world)
    finally:
        stack.stop()
        mirror.stop()


def attack(scene: Scene, reason: str, tamper) -> None:
    """Apply a good release, serve ``tamper(files)``, expect ``reason``, and the good release still applied."""
    scene.settled()
    files = dict(scene.mirror.trust_files)
    tamper(files)
    scene.serve(files)
    scene.refused(reason)
    assert scene.marker() == "good"


def add_release_target(release: Metadata, env: str, cluster: str, data: bytes) -> str:
    """Name ``data`` in the release metadata as a bundle of ``cluster`` in ``env`` (unsigned); its path."""
    path = trust.release_path(env, cluster, sha256_hex(data))
    target = TargetFile.from_data(path, data, ["sha256"])
    target.unrecognized_fields["custom"] = {"cluster": cluster, "environment": env}
    release.signed.targets[path] = target
    return path


# --- happy paths ---------------------------------------------------------------------------


def test_a_new_release_is_applied_and_the_status_shows_the_valid_until_horizon(scene):
    scene.good("v1")
    scene.serve()
    scene.start()
    nxt = scene.good("v2")
    scene.serve()
    st = scene.applied(nxt)
    assert scene.marker() == "v2"
    assert st["valid_until"] and not st["frozen"]
    assert any(c["type"] == "Fresh" and "valid until" in c["message"] for c in st["conditions"])
    annotations = json.loads(scene.stack.kubectl("get", "configmap", "marker", "-n", scene.ns, "-o", "json"))
    assert annotations["metadata"]["annotations"]["skerry.io/bundle-digest"] == sha256_digest(nxt)


def test_a_prod_release_is_applied_only_with_two_of_three_release_signatures(scene):
    w = scene.world
    one = bundle_bytes("oslo-prod", scene.ns, "one-signature")
    w.release_prod("oslo-prod", one, [w.key("release-prod", 0)])  # collected, not published
    assert w.repo.direct("oslo-prod", "prod", one, revision="a" * 40, release=5) is None
    scene.settled_prod(bundle_bytes("oslo-prod", scene.ns, "good"), (0, 2))
    assert scene.marker() == "good"


def test_root_rotation_through_the_version_chain_is_followed(scene):
    scene.settled()
    w = scene.world
    new_root = w.dir / "offline" / "root-new.key"
    admin.rotate_root(w.dir, [w.key("root")], [keyfiles.generate_key(new_root)])
    scene.reopened_and_applied("after-rotation")
    assert any(p.endswith("2.root.json") for p in scene.mirror.fetched)


def test_fast_forward_recovery_after_the_timestamp_key_is_rotated(scene):
    scene.settled()
    w = scene.world
    # The attacker holds the timestamp key and fast-forwards the timestamp far ahead: accepted (valid key).
    files = dict(scene.mirror.trust_files)
    ts = w.latest(files, "timestamp")
    ts.signed.version = 10**6
    w.put(files, "timestamp", ts, w.key("timestamp"))
    scene.serve(files)
    start = len(scene.mirror.fetched)
    # Two timestamp fetches after the forged one is served: the refresh that took it has finished.
    wait_for(lambda: scene.mirror.fetched[start:].count("metadata/timestamp.json") >= 2, 20, "two refreshes")
    # The owner rotates the timestamp key in root; the honest hub's timestamp (low version) must be accepted again.
    old = w.repo.role_keyids("timestamp")[0]
    new_path = w.dir / "keys" / "timestamp-2.key"
    admin.add_key(w.dir, "timestamp", keyfiles.generate_key(new_path).public_key, [w.key("root")])
    admin.revoke_key(w.dir, "timestamp", old, [w.key("root")])
    (w.dir / "keys" / "timestamp.key").unlink()
    scene.reopened_and_applied("recovered")


# --- attacks -----------------------------------------------------------------------------


def test_a_timestamp_signed_by_an_unknown_key_is_refused_as_bad_signature(scene):
    def tamper(files):
        ts = scene.world.latest(files, "timestamp")
        ts.signed.version += 1
        scene.world.put(files, "timestamp", ts, evil_key())

    attack(scene, "BadSignature", tamper)


def test_a_cluster_pointer_signed_by_a_key_the_director_does_not_hold_is_refused_as_bad_signature(scene):
    w = scene.world

    def tamper(files):  # a mirror forging where the cluster points, without the director's key
        role = w.director_role(CLUSTER)
        md = w.latest(files, role)
        md.signed.version += 1
        w.put(files, role, md, evil_key())
        w.recommit(files, {role: md.signed.version})

    attack(scene, "BadSignature", tamper)


def test_a_prod_release_under_threshold_is_refused_even_with_one_key_counted_twice(scene):
    w = scene.world
    scene.settled_prod(bundle_bytes("oslo-prod", scene.ns, "good"), (0, 1))
    # A compromised hub plus ONE prod release key: sign an evil release, list that key's signature twice.
    files = dict(scene.mirror.trust_files)
    evil = bundle_bytes("oslo-prod", scene.ns, "evil")
    rel = w.latest(files, "release-prod")
    path = add_release_target(rel, "prod", "oslo-prod", evil)
    rel.signed.version += 1
    rel.signatures.clear()
    rel.sign(w.key("release-prod", 0))
    doc = json.loads(rel.to_bytes())
    doc["signatures"] = doc["signatures"] * 2  # the same key twice
    files[f"metadata/{rel.signed.version}.release-prod.json"] = json.dumps(doc).encode()
    files[f"targets/{path}"] = evil
    w.recommit(files, {"release-prod": rel.signed.version})
    w.evil_direct(files, "oslo-prod", evil, blob_env="prod")
    scene.serve(files)
    scene.refused("MalformedMetadata")  # python-tuf refuses duplicate signatures outright
    # and with the duplicate removed, one key is below the threshold of 2
    doc["signatures"] = doc["signatures"][:1]
    files[f"metadata/{rel.signed.version}.release-prod.json"] = json.dumps(doc).encode()
    w.recommit(files)
    scene.serve(files)
    scene.refused("BadSignature")
    assert scene.marker() == "good"


def _release_bin_of(scene, value: str) -> str:
    return trust.release_bin("dev", trust.release_path("dev", CLUSTER, sha256_hex(bundle_bytes(CLUSTER, scene.ns, value))))


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "director", "director bin", "release bin"])
def test_rollback_of_each_metadata_role_is_refused(scene, role):
    w = scene.world
    # Two versions of everything exist; the attacker serves/lists the older one (with the hub's online keys).
    first = w.files()
    earlier = "earlier"
    if role == "release bin":  # the bin that will hold the good release; the earlier one must land there too
        role = _release_bin_of(scene, "good")
        earlier = next(v for v in (f"earlier-{i}" for i in itertools.count()) if _release_bin_of(scene, v) == role)
    scene.good(earlier)  # a different bundle, so every role gets a second version (same bundle: same release)

    def tamper(files):
        if role == "timestamp":
            files["metadata/timestamp.json"] = first["metadata/timestamp.json"]
        elif role == "snapshot":
            ts = w.latest(files, "timestamp")
            ts.signed.snapshot_meta.version = 1
            ts.signed.version += 1
            w.put(files, "timestamp", ts, w.key("timestamp"))
        else:  # (targets: test_rollback_of_the_targets_role_after_an_offline_change)
            named = w.director_role(CLUSTER) if role == "director bin" else role
            current = w.latest(files, named).signed.version
            w.recommit(files, {named: current - 1})
            return
            w.recommit(files, {role: current - 1})

    attack(scene, "Rollback", tamper)


def test_rollback_of_the_targets_role_after_an_offline_change(scene):
    w = scene.world
    scene.settled()
    admin.add_key(w.dir, "release-dev", evil_key().public_key, [w.key("targets"), w.key("release-dev")])  # targets v2
    w.repo.reload()
    scene.serve()
    wait_for(lambda: "metadata/2.targets.json" in scene.mirror.fetched, 20, "targets v2 to be fetched")
    files = dict(scene.mirror.trust_files)
    w.recommit(files, {"targets": 1})
    scene.serve(files)
    scene.refused("Rollback")
    assert scene.marker() == "good"


def test_an_older_release_counter_with_fresh_metadata_is_refused(scene):
    scene.settled()
    w = scene.world
    old = bundle_bytes(CLUSTER, scene.ns, "old")
    w.publish(CLUSTER, "dev", old, release=3)  # released and directed, all signatures fresh, counter lower
    scene.serve()
    scene.refused("ReleaseRollback")
    assert scene.marker() == "good"


def test_expired_metadata_freezes_the_agent_on_its_last_good_state_and_reports_it(scene, tmp_path):
    import datetime as dt

    w = scene.world
    good = scene.good()
    scene.serve()
    scene.start()
    scene.applied(good)
    # Applied first, under fresh metadata; then a timestamp expiring SHORT_EXPIRY from now, which the agent
    # takes at its next poll (every second): the expiry is timed from here, not from a start on a loaded
    # machine (an expiry 20 s after the start, to leave room for it, made the test wait ~20 s).
    ts = w.repo.md["timestamp"]
    ts.signed.expires = expires_in(SHORT_EXPIRY)
    ts.signed.version += 1
    w.repo._sign_online("timestamp", ts)
    w.repo._write("timestamp", ts)
    scene.serve()
    st = wait_for(lambda: (s := scene.agent.status()) and s["valid_until"]
                  and dt.datetime.fromisoformat(s["valid_until"]) <= expires_in(SHORT_EXPIRY + 1) and s,
                  SHORT_EXPIRY, "the agent to take the short-lived timestamp", scene.agent)
    assert st["applied_digest"] == sha256_digest(good) and not st["frozen"]
    wait_for(lambda: any(c.reason == "Freeze" for r in scene.mirror.reports for c in r.conditions), 45,
             "the agent to freeze", scene.agent)  # the mirror keeps serving the same, now expired, timestamp
    st = wait_for(lambda: (s := scene.agent and scene.stack.agents[CLUSTER].status()) and s.get("frozen") and s,
                  20, "the ready file to say frozen")
    assert st["applied_digest"] == sha256_digest(good)
    assert scene.marker() == "good"
    assert "FROZEN" in scene.agent.log_tail(200)


def test_metadata_that_does_not_match_the_snapshot_is_refused_as_mix_and_match(scene):
    def tamper(files):
        w = scene.world
        role = w.director_role(CLUSTER)
        cur = w.latest(files, role)
        # the snapshot names version N+1 but the mirror serves version N's content there (two states mixed)
        files[f"metadata/{cur.signed.version + 1}.{role}.json"] = files[f"metadata/{cur.signed.version}.{role}.json"]
        w.recommit(files, {role: cur.signed.version + 1})

    attack(scene, "MixAndMatch", tamper)


def test_an_endless_timestamp_is_cut_off_at_its_size_cap(scene):
    def tamper(files):
        files["metadata/timestamp.json"] = b"{" + b" " * (trust.MAX_TIMESTAMP_BYTES * 4) + b"}"

    attack(scene, "EndlessData", tamper)


def test_a_bundle_blob_longer_than_signed_is_cut_off(scene):
    scene.settled()
    nxt = scene.good("next")
    files = scene.world.files()
    image = trust.release_path("dev", CLUSTER, sha256_hex(nxt))
    files[f"targets/{image}"] = nxt + b" " * 10_000
    scene.serve(files)
    scene.refused("EndlessData")
    assert scene.marker() == "good"


def test_a_bundle_of_another_cluster_is_refused(scene):
    """The hub can name another cluster's bundle for this one only under this cluster's path, which no
    release key signed (a path of another cluster is never looked up)."""
    w = scene.world
    other = bundle_bytes("oslo-prod", scene.ns, "prod-only")
    w.repo.store_blob("dev", "oslo-prod", other)

    def tamper(files):
        w.evil_direct(files, CLUSTER, other)

    attack(scene, "NotReleased", tamper)


def test_the_director_alone_cannot_ship_an_unreleased_bundle(scene):
    def tamper(files):
        scene.world.evil_direct(files, CLUSTER, bundle_bytes(CLUSTER, scene.ns, "evil"))

    attack(scene, "NotReleased", tamper)


def test_a_release_key_alone_cannot_point_a_cluster_at_its_bundle(scene):
    scene.settled()
    w = scene.world
    # The attacker holds the dev release key: signs an evil bundle into release-dev at the version the
    # snapshot names (it cannot re-sign snapshot/timestamp/director). The director still names the good one.
    files = dict(scene.mirror.trust_files)
    evil = bundle_bytes(CLUSTER, scene.ns, "evil")
    rel = w.latest(files, "release-dev")
    path = add_release_target(rel, "dev", CLUSTER, evil)
    w.put(files, "release-dev", rel, w.key("release-dev"))
    files[f"targets/{path}"] = evil
    scene.serve(files)
    n = len(scene.mirror.fetched)
    # Two refreshes after the one that could fetch the forged target: any apply of it is over by then.
    wait_for(lambda: scene.mirror.fetched[n:].count("metadata/timestamp.json") >= 3, 20, "a few refreshes")
    assert scene.marker() == "good"
    assert f"targets/{path}" not in scene.mirror.fetched


def test_a_root_rotation_with_a_broken_chain_is_refused(scene):
    def tamper(files):
        w = scene.world
        root = Metadata.from_bytes(files["metadata/1.root.json"])
        new = evil_key()
        for keyid in list(root.signed.roles["root"].keyids):
            root.signed.revoke_key(keyid, "root")
        root.signed.add_key(new.public_key, "root")
        root.signed.version = 2
        w.put(files, "root", root, new)  # signed by the new key only: not by version 1's threshold

    attack(scene, "BadRootChain", tamper)


def test_a_director_target_naming_a_path_outside_the_repository_is_never_fetched(scene):
    """The agent looks up only paths it builds itself (``releases/<env>/<cluster>/<sha256>.json``): a
    director naming anything else names no bundle for it."""
    def tamper(files):
        scene.world.evil_direct(files, CLUSTER, bundle_bytes(CLUSTER, scene.ns, "evil"),
                                path="releases/dev/oslo-dev/../../../../etc/passwd")

    attack(scene, "NotDirected", tamper)
    assert not [p for p in scene.mirror.fetched if ".." in p or "passwd" in p]
