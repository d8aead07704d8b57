"""Enrollment end to end over real TLS: token -> CSR -> certificate bound to one cluster; reuse,
expiry, cross-cluster use and revocation (including of an open stream) refused; renewal."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from skerry.agent.enroll import CertificateRenewer, enroll, make_csr
from skerry.agent.stream import HubClient
from skerry.api.v1 import enrollment_pb2, enrollment_pb2_grpc, hub_pb2, hub_pb2_grpc
from skerry.core.errors import PermissionDenied, SkerryError
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.tls import TlsFiles, channel_credentials, identity_from_pem
from skerry.hub.enrollment.tokens import TokenIssuer

from .hubs import running_hub

READ = 20.0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skerry", *args], capture_output=True, text=True, timeout=60)


def cluster_add(state_dir, name: str, ttl: str = "1h") -> str:
    out = cli("cluster", "add", name, "--ttl", ttl, "--state-dir", str(state_dir))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def enrolled(app, pki, tmp_path, cluster: str) -> TlsFiles:
    token = cluster_add(app.config.state_dir, cluster)
    got = await enroll(f"127.0.0.1:{app.enroll_port}", token, pki.ca_file, tmp_path / f"agent-{cluster}")
    return TlsFiles(ca=pki.ca_file, cert=got.cert, key=got.key)


@contextlib.asynccontextmanager
async def stub(app, files: TlsFiles):
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{app.port}", channel_credentials(files), options=CHANNEL_OPTIONS
    ) as ch:
        yield hub_pb2_grpc.HubServiceStub(ch), enrollment_pb2_grpc.EnrollmentServiceStub(ch)


async def test_token_buys_a_short_lived_certificate_for_exactly_that_cluster(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        files = await enrolled(app, pki, tmp_path, "oslo-prod")
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "oslo-prod"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "skerry:agent"
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime.total_seconds() <= 24 * 3600 + 600
        assert oct(files.key.stat().st_mode & 0o777) == "0o600"
        async with stub(app, files) as (hub, _):
            first = await asyncio.wait_for(
                hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo-prod")).read(), READ
            )
            assert first.bundle.cluster == "oslo-prod" and first.bundle.version > 0


async def test_the_cli_enrolls_from_a_token_file_once_and_an_init_container_rerun_is_a_no_op(
    fleet_repo, tmp_path, pki, engine
):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        token_file = tmp_path / "token"
        token_file.write_text(cluster_add(app.config.state_dir, "bergen-prod") + "\n")
        args = ["agent", "enroll", "--hub", f"127.0.0.1:{app.enroll_port}", "--tls-ca", str(pki.ca_file),
                "--token-file", str(token_file), "--dir", str(tmp_path / "tls"), "--if-missing"]
        first = await asyncio.to_thread(cli, *args)
        assert first.returncode == 0, first.stderr
        assert token_file.read_text().strip() not in first.stderr + first.stdout  # the token is never echoed
        cert = (tmp_path / "tls" / "agent.crt").read_bytes()
        again = await asyncio.to_thread(cli, *args)  # a pod restart: the spent token is not sent again
        assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
        assert (tmp_path / "tls" / "agent.crt").read_bytes() == cert
        without = await asyncio.to_thread(cli, *[a for a in args if a != "--if-missing"])
        assert without.returncode == 1 and "already used" in without.stderr, without.stderr


async def test_reused_expired_and_forged_tokens_are_refused(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        address = f"127.0.0.1:{app.enroll_port}"
        token = cluster_add(app.config.state_dir, "oslo-dev")
        await enroll(address, token, pki.ca_file, tmp_path / "a")
        with pytest.raises(PermissionDenied, match="already used"):
            await enroll(address, token, pki.ca_file, tmp_path / "b")
        # Minted an hour ago with a one-minute lifetime, with the hub's own key.
        stale = TokenIssuer.load_or_create(
            app.config.state_dir / "enrollment", now=lambda: time.time() - 3600
        ).issue("oslo-dev", 60)[0]
        with pytest.raises(PermissionDenied, match="expired"):
            await enroll(address, stale, pki.ca_file, tmp_path / "c")
        forged = TokenIssuer(b"x" * 32).issue("oslo-dev")[0]
        with pytest.raises(PermissionDenied, match="not issued by this hub"):
            await enroll(address, forged, pki.ca_file, tmp_path / "d")
        # Changing the cluster inside a real token breaks its MAC.
        head, payload, mac = cluster_add(app.config.state_dir, "oslo-dev").split(".")
        other = TokenIssuer(b"y" * 32).issue("oslo-prod")[0].split(".")[1]
        with pytest.raises(PermissionDenied, match="not issued by this hub"):
            await enroll(address, f"{head}.{other}.{mac}", pki.ca_file, tmp_path / "e")


async def test_a_certificate_for_one_cluster_is_refused_on_every_rpc_for_another(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        files = await enrolled(app, pki, tmp_path, "oslo-dev")
        async with stub(app, files) as (hub, enrollment):
            calls = {
                "WatchBundles": lambda: hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo-prod")).read(),
                "ReportStatus": lambda: hub.ReportStatus(
                    hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster="oslo-prod")), timeout=READ
                ),
                "GetFleetStatus": lambda: hub.GetFleetStatus(
                    hub_pb2.GetFleetStatusRequest(cluster="oslo-prod"), timeout=READ
                ),
                "Renew": lambda: enrollment.Renew(
                    enrollment_pb2.RenewRequest(csr_pem=make_csr("oslo-prod")[0]), timeout=READ
                ),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await asyncio.wait_for(call(), READ)
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
                assert "oslo-prod" in err.value.details(), name
            # ... while its own cluster works.
            own = await hub.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=READ)
            assert [c.cluster for c in own.clusters] == ["oslo-dev"]
        # A token for one cluster cannot buy a certificate for another either.
        token = cluster_add(app.config.state_dir, "oslo-dev")
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{app.enroll_port}", grpc.ssl_channel_credentials(pki.ca_file.read_bytes())
        ) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll(
                    enrollment_pb2.EnrollRequest(token=token, csr_pem=make_csr("oslo-prod")[0]), timeout=READ
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # and the refused attempt did not burn the token
            ok = await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll(
                enrollment_pb2.EnrollRequest(token=token, csr_pem=make_csr("oslo-dev")[0]), timeout=READ
            )
            assert ok.cluster == "oslo-dev"


async def test_revoking_a_cluster_closes_its_open_stream_and_refuses_new_calls(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        files = await enrolled(app, pki, tmp_path, "oslo-prod")
        async with stub(app, files) as (hub, _):
            call = hub.WatchBundles(hub_pb2.WatchBundlesRequest(cluster="oslo-prod"))
            assert (await asyncio.wait_for(call.read(), READ)).bundle.version > 0
            started = time.monotonic()
            out = cli("cluster", "revoke", "oslo-prod", "--state-dir", str(app.config.state_dir))
            assert out.returncode == 0, out.stderr
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(call.read(), READ)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "revoked" in err.value.details()
            assert time.monotonic() - started < 5
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await hub.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=READ)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Revocation has one-second resolution: re-enroll once the clock is past the revoked second.
        app.enrollment.revocations.reload()
        revoked_at = app.enrollment.revocations.clusters["oslo-prod"]
        await wait_until(lambda: time.time() >= revoked_at + 1, "the second after the revocation")
        fresh = await enrolled(app, pki, tmp_path / "again", "oslo-prod")
        async with stub(app, fresh) as (hub, _):
            assert (await hub.GetFleetStatus(hub_pb2.GetFleetStatusRequest(), timeout=READ)).clusters


async def test_a_renewed_certificate_replaces_the_old_one_on_the_open_watch(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        files = await enrolled(app, pki, tmp_path, "oslo-dev")
        old_pem = files.cert.read_bytes()
        old_fp = identity_from_pem(old_pem).fingerprint
        client = HubClient(f"127.0.0.1:{app.port}", files, "oslo-dev", backoff_base=0.05, backoff_cap=0.2)
        renewer = CertificateRenewer(f"127.0.0.1:{app.port}", files, "oslo-dev", on_renewed=client.reload_credentials)
        events: list = []

        async def consume():
            async for event in client.watch():
                events.append(event)

        task = asyncio.create_task(consume())
        try:
            await wait_until(lambda: events, "the first bundle")
            assert app.servicer.streams.fingerprints() == [old_fp]
            renewed = await renewer.renew_once()
            assert renewed.fingerprint != old_fp and renewer.renewals == 1
            # The watch moves to a new connection with the new certificate ...
            await wait_until(lambda: app.servicer.streams.fingerprints() == [renewed.fingerprint], "the new identity")
            # ... and the unchanged bundle is not sent again: it comes without its bytes, filled in locally.
            await wait_until(lambda: len(events) == 2, "the re-announced bundle")
            assert events[1].bundle.digest == events[0].bundle.digest
            assert events[1].bundle.bundle == events[0].bundle.bundle
            out = cli("cluster", "revoke", "--fingerprint", old_fp, "--state-dir", str(app.config.state_dir))
            assert out.returncode == 0, out.stderr
            # Once the hub has read the new list (the old certificate is refused), a recheck of the open
            # streams spares the renewed one.
            revocations = app.enrollment.revocations
            revocations.reload()
            with pytest.raises(PermissionDenied):
                revocations.check("oslo-dev", old_fp, x509.load_pem_x509_certificate(old_pem).not_valid_before_utc)
            assert app.servicer.recheck_streams() == 0
            assert app.servicer.streams.fingerprints() == [renewed.fingerprint]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()


async def wait_until(predicate, what: str, timeout: float = READ) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_the_agent_renews_by_itself_once_two_thirds_of_the_lifetime_passed(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        files = await enrolled(app, pki, tmp_path, "oslo-dev")
        before = files.cert.read_bytes()
        not_before = x509.load_pem_x509_certificate(before).not_valid_before_utc
        not_after = x509.load_pem_x509_certificate(before).not_valid_after_utc
        half_way = not_before + (not_after - not_before) * 0.5
        early = CertificateRenewer(f"127.0.0.1:{app.port}", files, "oslo-dev", now=lambda: half_way)
        late = CertificateRenewer(f"127.0.0.1:{app.port}", files, "oslo-dev",
                                  now=lambda: not_before + (not_after - not_before) * 0.7)
        # Half-way through the lifetime the renewer's next renewal is still ahead of it ...
        assert early.due() > half_way and early.renewals == 0 and files.cert.read_bytes() == before
        # ... past two thirds it renews by itself.
        task = asyncio.create_task(late.run())
        await wait_until(lambda: late.renewals == 1, "the renewal")
        task.cancel()
        assert files.cert.read_bytes() != before
        # A certificate from the operator's own CA is left to that CA.
        foreign = CertificateRenewer(f"127.0.0.1:{app.port}", pki.agent("oslo-dev"), "oslo-dev",
                                     now=lambda: not_after)
        await asyncio.wait_for(foreign.run(), READ)
        assert foreign.renewals == 0


def _pair_matches(files: TlsFiles) -> bool:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.PEM, pub) == cert.public_key().public_bytes(
        serialization.Encoding.PEM, pub
    )


async def test_a_full_disk_during_renewal_leaves_the_old_pair_whole_and_the_next_renewal_works(
    fleet_repo, tmp_path, pki, engine, monkeypatch
):
    """ENOSPC on the second file the renewal writes (an injected failing writer at the file layer)."""
    import errno
    import tempfile as real_tempfile

    from skerry.core import files as files_mod

    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        files = await enrolled(app, pki, tmp_path, "oslo-dev")
        old_cert = files.cert.read_bytes()
        renewer = CertificateRenewer(f"127.0.0.1:{app.port}", files, "oslo-dev")
        made = {"n": 0}
        real_mkstemp = real_tempfile.mkstemp

        def mkstemp_until_full(*args, **kwargs):
            made["n"] += 1
            if made["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_mkstemp(*args, **kwargs)

        monkeypatch.setattr(files_mod.tempfile, "mkstemp", mkstemp_until_full)
        with pytest.raises(SkerryError) as refused:
            await renewer.renew_once()
        assert refused.value.reason == "DiskFull"
        assert _pair_matches(files) and files.cert.read_bytes() == old_cert
        assert sorted(p.name for p in files.key.parent.iterdir()) == ["agent.crt", "agent.key", "client-ca.crt"]
        async with stub(app, files) as (hub, _):  # the old pair still connects
            await hub.ReportStatus(hub_pb2.ReportStatusRequest(status=hub_pb2.ClusterStatus(cluster="oslo-dev")),
                                   timeout=READ)
        monkeypatch.setattr(files_mod.tempfile, "mkstemp", real_mkstemp)
        renewed = await renewer.renew_once()
        assert _pair_matches(files) and identity_from_pem(files.cert.read_bytes()).fingerprint == renewed.fingerprint


def test_a_swap_interrupted_after_its_commit_completes_on_the_next_read(tmp_path, pki, monkeypatch):
    """A crash between the renames (simulated: the staged files and the commit marker are left)."""
    from skerry.core import files as files_mod

    old, new = pki.agent("swap-a"), pki.agent("swap-b")
    key, crt = tmp_path / "agent.key", tmp_path / "agent.crt"
    files_mod.write_together([(key, old.key.read_bytes(), 0o600), (crt, old.cert.read_bytes(), 0o644)])
    real_replace = files_mod.os.replace
    calls = {"n": 0}

    def crash_on_second_rename(src, dst):
        calls["n"] += 1
        if calls["n"] == 5:  # 2 staged writes + the marker, the key renamed; then the power goes
            raise KeyboardInterrupt("power lost")
        return real_replace(src, dst)

    monkeypatch.setattr(files_mod.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        files_mod.write_together([(key, new.key.read_bytes(), 0o600), (crt, new.cert.read_bytes(), 0o644)])
    monkeypatch.setattr(files_mod.os, "replace", real_replace)
    assert not _pair_matches(TlsFiles(ca=pki.ca_file, cert=crt, key=key))  # the crash left a mix on disk
    tls = TlsFiles(ca=pki.ca_file, cert=crt, key=key)
    _, cert_pem, key_pem = tls.read()
    assert (cert_pem, key_pem) == (new.cert.read_bytes(), new.key.read_bytes())
    assert _pair_matches(tls)


async def test_a_non_ascii_token_is_refused_plainly_on_the_enrollment_port(fleet_repo, tmp_path, pki, engine):
    async with running_hub(fleet_repo, tmp_path / "state", pki, engine) as app:
        token = cluster_add(app.config.state_dir, "oslo-dev")
        async with grpc.aio.secure_channel(f"127.0.0.1:{app.enroll_port}",
                                           grpc.ssl_channel_credentials(pki.ca_file.read_bytes())) as ch:
            for bad in (token[:-2] + "é☃", "skt1.zoë.☃", "ü" * 100):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll(
                        enrollment_pb2.EnrollRequest(token=bad, csr_pem=make_csr("oslo-dev")[0]), timeout=READ)
                assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                                            grpc.StatusCode.INVALID_ARGUMENT), err.value
                assert "Traceback" not in (err.value.details() or "")


@pytest.mark.parametrize("lost", ["ca.crt", "ca.key"])
def test_a_missing_half_of_the_agent_ca_stops_the_hub_instead_of_minting_a_new_ca(tmp_path, lost):
    from skerry.core.errors import ConfigError
    from skerry.hub.enrollment.authority import AgentAuthority

    first = AgentAuthority.load_or_create(tmp_path)
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / lost).unlink()
    with pytest.raises(ConfigError, match=f"{lost} is missing"):
        AgentAuthority.load_or_create(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {k: v for k, v in kept.items() if k != lost}
    assert first.ca_pem == kept["ca.crt"]
