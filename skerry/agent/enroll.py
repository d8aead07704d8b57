"""The agent's side of enrollment: make a key, send a CSR, keep the certificate fresh.

``enroll`` is ``skerry agent enroll --token``: a fresh ECDSA P-256 key is
made on the agent (it never leaves it), a CSR naming the token's cluster is
sent to the hub's enrollment listener over server-authenticated TLS (the
agent has no client certificate yet; ``--tls-ca`` pins the hub), and the
returned certificate is written next to the key::

    <dir>/agent.key        PKCS#8 PEM, 0600
    <dir>/agent.crt        the client certificate (O=skerry:agent, CN=<cluster>)
    <dir>/client-ca.crt    the hub-run CA that issued it

``CertificateRenewer`` runs inside ``skerry agent run`` for certificates the
hub-run CA issued (others are left to their issuer): once two thirds of
the certificate's lifetime has passed (``RENEW_AT``), it makes a new key,
calls ``Renew`` over mutual TLS with the current certificate, replaces key and
certificate atomically, and calls ``on_renewed`` (the hub client reconnects
with the new identity). Failures retry with backoff until the certificate
expires; the old certificate stays in use meanwhile.

Both take the hub as one address or several (replicas, ``core.client.Endpoints``): ``enroll`` tries
them in random order while they are unreachable (never after a refusal: a token is single-use), and
the renewer uses the address the agent's other hub paths use, moving them all on when it is down.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as _dt
import json
import pathlib
import random
from collections.abc import Callable

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from skerry.api.v1 import enrollment_pb2, enrollment_pb2_grpc
from skerry.core.backoff import full_jitter
from skerry.core.client import Endpoints, aio_secure_channel
from skerry.core.errors import ConfigError, InvalidInput, SkerryError, Unavailable
from skerry.core.files import as_refusal, ensure_dir, unwritable, write_together
from skerry.core.peers import parse_addresses
from skerry.core.rpc import error_from_rpc
from skerry.core.tls import AGENT_CA_NAME, TlsFiles

log = structlog.get_logger("skerry.agent.enroll")

# Renew once this fraction of the lifetime has passed: a day-long certificate renews after 16 h,
# leaving 8 h of retries before it expires.
RENEW_AT = 2 / 3
# Deadline of one Enroll/Renew call (the hub signs in about a millisecond).
ENROLL_TIMEOUT = 15.0
# Least time between two renewals: if the agent's clock runs far ahead of the hub's, every new
# certificate already looks due; this keeps that from becoming a tight renewal loop.
RENEW_MIN_INTERVAL = 60.0
# Retry backoff for failed renewals (full jitter between 0 and this cap, doubling from 5 s).
RENEW_RETRY_BASE = 5.0
RENEW_RETRY_CAP = 300.0


def make_csr(cluster: str) -> tuple[bytes, bytes]:
    """``(csr_pem, key_pem)``: a fresh P-256 key and a CSR with ``CN=cluster``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


def token_cluster(token: str) -> str:
    """The cluster a token names (read without verifying: only the hub can verify it)."""
    try:
        prefix, payload, _mac = token.strip().split(".")
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        cluster = str(doc["cluster"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("the token is malformed: copy it whole from `skerry cluster add NAME`") from None
    if prefix != "skt1" or not cluster:
        raise InvalidInput("the token is malformed: copy it whole from `skerry cluster add NAME`")
    return cluster


@dataclasses.dataclass(frozen=True)
class Enrolled:
    cluster: str
    cert: pathlib.Path
    key: pathlib.Path
    client_ca: pathlib.Path
    fingerprint: str
    not_after: _dt.datetime


def _write_pair(directory: pathlib.Path, key_pem: bytes, resp: enrollment_pb2.EnrollResponse) -> Enrolled:
    ensure_dir(directory)
    key, crt, ca = directory / "agent.key", directory / "agent.crt", directory / "client-ca.crt"
    # One swap for the three: a full disk or a crash never leaves a key beside another key's certificate.
    write_together([(key, key_pem, 0o600), (crt, resp.certificate_pem, 0o644), (ca, resp.client_ca_pem, 0o644)])
    return Enrolled(
        cluster=resp.cluster,
        cert=crt,
        key=key,
        client_ca=ca,
        fingerprint=resp.fingerprint,
        not_after=_dt.datetime.fromtimestamp(resp.not_after_unix, _dt.UTC),
    )


async def enroll(
    address: str, token: str, hub_ca: pathlib.Path, directory: pathlib.Path, *, server_name: str | None = None,
    rng: Callable[[], float] = random.random,
) -> Enrolled:
    """Enroll at ``address`` (``HOST:PORT`` or several, comma-separated: tried in random order while
    unreachable; any other answer, a refusal above all, ends the attempt)."""
    cluster = token_cluster(token)
    addresses = list(parse_addresses(address, "hub enrollment address (--hub)"))
    try:
        ca_pem = pathlib.Path(hub_ca).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the hub CA {hub_ca}: {e.strerror}") from e
    csr_pem, key_pem = make_csr(cluster)
    addresses.sort(key=lambda _: rng())  # replicas in random order: a fleet enrolling at once spreads out
    for n, hub in enumerate(addresses):
        # No client certificate yet: the hub's CA alone authenticates the hub; the token authenticates us.
        async with aio_secure_channel(hub, grpc.ssl_channel_credentials(ca_pem), server_name=server_name) as ch:
            try:
                resp = await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll(
                    enrollment_pb2.EnrollRequest(token=token.strip(), csr_pem=csr_pem), timeout=ENROLL_TIMEOUT
                )
                break
            except grpc.aio.AioRpcError as e:
                error = error_from_rpc(e, f"hub enrollment {hub}")
                if not isinstance(error, Unavailable) or n == len(addresses) - 1:
                    raise error from None
                log.warning("hub enrollment address unreachable; trying another", hub=hub, error=str(error))
    if resp.cluster != cluster:
        raise InvalidInput(f"the hub issued a certificate for {resp.cluster!r}, not {cluster!r}")
    return _write_pair(pathlib.Path(directory), key_pem, resp)


def _validity(cert_path: pathlib.Path) -> tuple[_dt.datetime, _dt.datetime]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_before_utc, cert.not_valid_after_utc


class CertificateRenewer:
    def __init__(
        self,
        hub: str | Endpoints,
        tls_files: TlsFiles,
        cluster: str,
        *,
        on_renewed: Callable[[], None] = lambda: None,
        server_name: str | None = None,
        now: Callable[[], _dt.datetime] = lambda: _dt.datetime.now(_dt.UTC),
        rng: Callable[[], float] = random.random,
    ):
        self.endpoints = hub if isinstance(hub, Endpoints) else Endpoints(hub, what="hub", rng=rng)
        self.tls_files = tls_files
        self.cluster = cluster
        self._on_renewed = on_renewed
        self._server_name = server_name
        self._now = now
        self._rng = rng
        self.renewals = 0

    def due(self) -> _dt.datetime:
        nb, na = _validity(pathlib.Path(self.tls_files.cert))
        return nb + (na - nb) * RENEW_AT

    async def renew_once(self) -> Enrolled:
        csr_pem, key_pem = make_csr(self.cluster)
        address = self.endpoints.current
        async with aio_secure_channel(address, self.tls_files, server_name=self._server_name) as ch:
            try:
                resp = await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Renew(
                    enrollment_pb2.RenewRequest(csr_pem=csr_pem), timeout=ENROLL_TIMEOUT
                )
            except grpc.aio.AioRpcError as e:
                error = error_from_rpc(e, f"hub {address}")
                if isinstance(error, Unavailable):
                    self.endpoints.failed(address)  # the retry (and the agent's other paths) try another replica
                raise error from None
        cert, key = pathlib.Path(self.tls_files.cert), pathlib.Path(self.tls_files.key)
        try:
            write_together([(key, key_pem, 0o600), (cert, resp.certificate_pem, 0o644)])
        except OSError as e:  # the old pair is whole (write_together): it keeps serving until the retry
            raise unwritable(e, f"the renewed key and certificate in {cert.parent}") from None
        self.renewals += 1
        log.info("agent certificate renewed", fingerprint=resp.fingerprint, not_after=resp.not_after_unix)
        self._on_renewed()
        return Enrolled(
            cluster=resp.cluster,
            cert=cert,
            key=key,
            client_ca=pathlib.Path(self.tls_files.ca),
            fingerprint=resp.fingerprint,
            not_after=_dt.datetime.fromtimestamp(resp.not_after_unix, _dt.UTC),
        )

    def issued_by_hub(self) -> bool:
        cert = x509.load_pem_x509_certificate(pathlib.Path(self.tls_files.cert).read_bytes())
        cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        return bool(cns) and cns[0].value == AGENT_CA_NAME

    async def run(self) -> None:
        try:
            if not self.issued_by_hub():
                log.info("agent certificate not issued by the hub's agent CA; renewal is up to its issuer")
                return
        except (OSError, ValueError) as e:
            log.warning("cannot read the agent certificate; not renewing", error=str(e))
            return
        attempt = 0
        while True:
            try:
                wait = (self.due() - self._now()).total_seconds()
            except (OSError, ValueError) as e:
                log.warning("cannot read the agent certificate; not renewing", error=str(e))
                return
            if wait > 0:
                await asyncio.sleep(min(wait, 3600.0))  # re-read hourly: the file may change under us
                continue
            try:
                await self.renew_once()
                attempt = 0
                await asyncio.sleep(RENEW_MIN_INTERVAL)
            except (SkerryError, OSError) as e:
                delay = full_jitter(attempt, base=RENEW_RETRY_BASE, cap=RENEW_RETRY_CAP, rng=self._rng)
                attempt += 1
                failed = as_refusal(e, "the agent certificate")
                log.warning("certificate renewal failed; will retry", reason=failed.reason, error=str(failed),
                            retry_in=round(delay, 1))
                await asyncio.sleep(delay)
