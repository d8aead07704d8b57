"""Disk full under the agent's, the hub's and the sealer's state, on a real small tmpfs.

Each service keeps serving or applying its last good state, says so in one line naming the cause,
leaves no half-written file behind, and carries on by itself when the space comes back. Mounting
a tmpfs needs root (these tests run as root in a container); where ``mount`` is refused the tests
are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hub.helpers import FLEET_FILES, GitRepo  # tests/hub/helpers.py
from transport.hubs import enrolled, running_hub  # tests/transport/hubs.py

from skerry.agent.enroll import CertificateRenewer
from skerry.core.errors import SkerryError
from skerry.core.tls import TlsFiles, identity_from_pem
from skerry.hub.render.engine import KustomizeEngine
from skerry.testing.devstack import wait_for

from .helpers import error_lines
from .state_world import SmallDisk, World, tracebacks

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

RECOVERY_SECONDS = 20.0


def _can_mount(tmp_path) -> str:
    probe = tmp_path / "probe"
    probe.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True, text=True)
    if out.returncode != 0:
        return out.stderr.strip() or "mount failed"
    subprocess.run(["umount", str(probe)], check=True)
    return ""


@pytest.fixture(scope="module", autouse=True)
def mountable(tmp_path_factory):
    why = _can_mount(tmp_path_factory.mktemp("mount-probe"))
    if why:
        pytest.skip(f"cannot mount a tmpfs here ({why}); a full disk cannot be made for real")


@contextlib.contextmanager
def stopping(world: World):
    """Stop the world's services before its disks are unmounted under them."""
    try:
        yield world
    finally:
        world.stop()


def level_change(world: World, level: str) -> str:
    path = world.stack.repo / world.overlay / "configmaps.yaml"
    text = path.read_text()
    old = text.split('level: "', 1)[1].split('"', 1)[0]
    path.write_text(text.replace(f'level: "{old}"', f'level: "{level}"'))
    return world.commit(f"level {level}")


def level(world: World) -> str:
    return world.kubectl("get", "configmap", "settings", "-n", world.ns, "-o", "jsonpath={.data.level}")


def test_a_full_agent_disk_applies_nothing_new_says_why_and_recovers(kubeconfig, tmp_path):
    """Reverted to check: ``TufVerifier.update``'s ``except OSError`` (removed): the full disk then ends
    as "unexpected error" with a traceback and no named reason."""
    world = World(kubeconfig, tmp_path, "fda")
    with SmallDisk(world.agent_state) as disk, stopping(world):
        world.seed()
        ready = world.start()
        before = world.snapshot()
        state_before = disk.files()
        disk.fill()
        level_change(world, "2")
        lines = wait_for(lambda: error_lines(world.agent.log_tail(200), "No space left on device"), 20,
                         "the agent to say its disk is full", world.agent)
        assert any(r.get("reason") == "DiskFull" for r in lines), lines
        assert not tracebacks(world.agent.log_tail(400)), world.agent.log_tail(400)
        assert world.agent.alive()
        # the last good state: still applied, still what the agent's state says
        assert level(world) == "1"
        assert world.agent.status()["applied_release"] == ready["applied_release"]
        world.assert_nothing_lost(before)
        assert disk.leftovers() == []
        after = disk.files()
        assert after["trust-state.json"] == state_before["trust-state.json"]

        disk.free()
        started = time.monotonic()
        world.wait_ready(release_above=ready["applied_release"], timeout=RECOVERY_SECONDS)
        assert time.monotonic() - started < RECOVERY_SECONDS
        assert level(world) == "2"
        world.assert_nothing_lost(before)


def test_a_full_hub_disk_serves_the_last_good_release_says_why_and_recovers(kubeconfig, tmp_path):
    """Two disks: the trust repository's (the publish fails) and the state's (database, Git mirror).

    Reverted to check: (1) ``Syncer.run``'s ``except (SkerryError, OSError)`` (removed): the full trust
    disk then ends as "sync failed" with a traceback and no named reason; (2) in ``Syncer._sync``,
    ``self._inputs[cluster] = ...`` moved back before ``store.publish``: the publish that failed is
    then taken as done, the commit is never published and the recovery times out."""
    world = World(kubeconfig, tmp_path, "fdh")
    with SmallDisk(world.stack.workdir / "hub-state", "32m") as state, \
            SmallDisk(world.stack.trust_dir, "32m") as trust, stopping(world):
        world.seed()
        ready = world.start()
        before = world.snapshot()
        hub = world.stack.hub
        for disk, change in ((trust, "2"), (state, "3")):
            good = world.desired()
            applied = world.agent.status()["applied_release"]
            seen = len(hub.log_path.read_text().splitlines())
            disk.fill()
            level_change(world, change)

            def full_lines(seen=seen):
                new_lines = "\n".join(hub.log_path.read_text().splitlines()[seen:])
                return [r for r in error_lines(new_lines, "No space left on device") + error_lines(new_lines, "disk is full")
                        if r.get("reason") == "DiskFull"]

            lines = wait_for(full_lines, 20, f"the hub to say the {disk.path.name} disk is full", hub)
            assert all(len(r["error"]) < 1024 for r in lines)
            assert not tracebacks(hub.log_tail(400)), hub.log_tail(400)
            assert hub.alive()
            # the hub still serves the last good release; the agent still runs it
            now = world.desired()
            assert (now["desired_version"], now["desired_digest"]) == (good["desired_version"], good["desired_digest"])
            assert world.agent.status()["applied_release"] == applied
            assert trust.leftovers() == [] and state.leftovers() == []

            disk.free()
            started = time.monotonic()
            world.wait_ready(release_above=applied, timeout=RECOVERY_SECONDS)
            assert time.monotonic() - started < RECOVERY_SECONDS
            assert level(world) == change
            world.assert_nothing_lost(before)
        assert world.agent.status()["applied_release"] > ready["applied_release"]


def test_a_full_sealer_disk_keeps_every_key_and_a_rotation_works_when_space_returns(tmp_path):
    """Reverted to check: the key registry's ``atomic_write`` of a new key (made a plain
    ``write_bytes``): the failed rotation then leaves a truncated key file that stops the next load."""
    keys_dir = tmp_path / "sealer-keys"

    def keys(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skerry", "sealer", "keys", "--keys-dir", str(keys_dir), *args],
                              capture_output=True, text=True, timeout=120)

    with SmallDisk(keys_dir, "1m") as disk:
        first = keys("rotate")
        assert first.returncode == 0, first.stderr
        listed = keys("list")
        assert listed.returncode == 0, listed.stderr
        before = disk.files()
        disk.fill()
        full = keys("rotate")
        assert full.returncode == 1, full.stdout + full.stderr
        assert len(full.stderr.strip().splitlines()) == 1 and "Traceback" not in full.stderr, full.stderr
        assert "No space left on device" in full.stderr
        assert disk.files() == before, "a failed rotation changed the keys on disk"
        assert keys("list").stdout == listed.stdout
        disk.free()
        again = keys("rotate")
        assert again.returncode == 0, again.stderr
        assert len(disk.files()) > len(before)
        assert set(before) <= set(disk.files())


def _pair_matches(files: TlsFiles) -> bool:
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


async def test_a_disk_that_fills_between_the_new_key_and_its_certificate_never_leaves_a_mismatched_pair(
    tmp_path, pki
):
    """One free page: the new key's staged copy fits, its certificate's does not, so nothing is replaced.

    Reverted to check: ``CertificateRenewer.renew_once``'s ``write_together`` made two ``atomic_write``
    calls, key first: this test then fails at ``pytest.raises`` (replacing the key frees the old key's
    page, so the certificate fits after all). A tmpfs's page accounting cannot make the key land and
    the certificate fail under that code; the mismatched pair itself is shown with an injected ENOSPC
    in ``tests/transport/test_enrollment.py``. What this test adds: on a real full disk the renewal is
    refused as ``DiskFull`` with the old pair whole and leaves no staged file, and renews once space
    returns."""
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    async with running_hub(repo, tmp_path / "hub", pki, KustomizeEngine.detect()) as hub:
        with SmallDisk(tmp_path / "agent-tls", "1m") as disk:
            files = await enrolled(hub, pki, disk.path, "oslo-dev")
            before = disk.files()
            renewer = CertificateRenewer(f"127.0.0.1:{hub.port}", files, "oslo-dev")
            disk.fill()
            disk.release(4096)
            with pytest.raises(SkerryError) as refused:
                await renewer.renew_once()
            assert refused.value.reason == "DiskFull" and "No space left on device" in str(refused.value)
            assert _pair_matches(files)
            assert disk.files() == before and disk.leftovers() == []

            disk.free()
            started = time.monotonic()
            renewed = await renewer.renew_once()  # the old pair still authenticates the renewal
            assert time.monotonic() - started < RECOVERY_SECONDS
            assert _pair_matches(files)
            assert identity_from_pem(files.cert.read_bytes()).fingerprint == renewed.fingerprint
            assert disk.files()["agent.crt"] != before["agent.crt"]
