"""Nonces for signed agent reports and the board of verified (attested) reports.

The hub issues each cluster single-use nonces with a per-cluster counter;
a signed report must carry one it issued to *that* cluster, unused and not
older than ``NONCE_TTL``. Nonces live in memory: after a hub restart old
nonces are simply unknown, which refuses replays all the same. The newest
attested report per cluster is what a promotion gate reads.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import secrets
from collections import OrderedDict

from skerry.core import report as report_format
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import PermissionDenied, VerificationError
from skerry.core.tls import ROLE_AGENT, identity_from_pem

NONCE_TTL = _dt.timedelta(minutes=5)  # long enough for a report to be built and retried
MAX_OPEN_NONCES = 8  # per cluster: an agent needs one at a time; more only means a misbehaving caller


@dataclasses.dataclass(frozen=True)
class Attested:
    cluster: str
    report: dict
    data: bytes
    signature: bytes
    certificate: bytes
    received_at: _dt.datetime


class AttestationBoard:
    def __init__(self, clock: Clock | None = None):
        self._clock = clock or SystemClock()
        self._open: dict[str, OrderedDict[str, tuple[int, _dt.datetime]]] = {}
        self._counter: dict[str, int] = {}
        self._latest: dict[str, Attested] = {}

    def issue(self, cluster: str) -> tuple[str, int]:
        counter = self._counter.get(cluster, 0) + 1
        self._counter[cluster] = counter
        nonce = secrets.token_hex(16)
        book = self._open.setdefault(cluster, OrderedDict())
        book[nonce] = (counter, self._clock.now())
        while len(book) > MAX_OPEN_NONCES:
            book.popitem(last=False)
        return nonce, counter

    def submit(
        self, data: bytes, signature: bytes, certificate: bytes, *, ca_check=None, submitter: str | None = None
    ) -> Attested:
        """Verify and record a signed report; raises ``VerificationError`` naming the attack class.

        ``submitter``: the cluster whose agent sent it; a report of any other cluster is refused
        before its nonce is spent (one agent cannot relay, or burn, another's report).
        """
        doc = report_format.verify(data, signature, certificate)
        identity = identity_from_pem(certificate)
        if ca_check is not None:
            ca_check(certificate)
        cluster = doc["cluster"]
        if not identity.has_role(ROLE_AGENT) or identity.name != cluster:
            raise VerificationError(f"report for {cluster!r} signed by {identity}", reason="ForgedReport")
        if submitter is not None and submitter != cluster:
            raise PermissionDenied(f"the agent of {submitter!r} may not submit a report of {cluster!r}")
        book = self._open.get(cluster) or {}
        issued = book.pop(doc["nonce"], None) if isinstance(doc["nonce"], str) else None
        if issued is None:
            raise VerificationError(
                f"report of {cluster} carries nonce {str(doc['nonce'])[:8]}… that is unknown or already used",
                reason="ReplayedReport",
            )
        counter, at = issued
        if doc["counter"] != counter or self._clock.now() - at > NONCE_TTL:
            raise VerificationError(f"report of {cluster}: nonce expired or counter mismatch", reason="ReplayedReport")
        attested = Attested(cluster, doc, data, signature, certificate, self._clock.now())
        self._latest[cluster] = attested
        return attested

    def latest(self, cluster: str) -> Attested | None:
        return self._latest.get(cluster)

    def gate(self, cluster: str, digest: str) -> bool:
        """Whether ``cluster`` attested that it runs ``digest`` and is Ready (a promotion gate)."""
        a = self._latest.get(cluster)
        return a is not None and a.report["applied_digest"] == digest and a.report["ready"] is True
