"""Nonces for signed agent reports and the board of verified (attested) reports.

The hub issues each cluster single-use nonces with a per-cluster counter;
a signed report must carry one it issued to *that* cluster, unused and not
older than ``NONCE_TTL``. The newest attested report per cluster (by nonce
counter: a report answering a later nonce is newer) is what a promotion
gate reads.

Where nonces and reports live is the board's ``book``: ``StateBook`` (the
hub) keeps them in the hub state, so any replica may issue a nonce and any
other accept the report answering it, a replayed report is refused by every
replica (a nonce is spent once, in one transaction), a restart forgets
neither, and an older report never replaces a newer one whichever replica
stores it. ``MemoryBook`` keeps them in this process (tests, tools).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import secrets
from collections import OrderedDict
from typing import Protocol

from skerry.core import report as report_format
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import PermissionDenied, VerificationError
from skerry.core.tls import ROLE_AGENT, identity_from_pem
from skerry.hub.state import HubState

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


class NonceBook(Protocol):
    """Where a board keeps open nonces and the newest attested report of each cluster."""

    def issue(self, cluster: str, nonce: str, at: _dt.datetime) -> int:
        """Open ``nonce``; returns its counter (the cluster's next)."""

    def spend(self, cluster: str, nonce: str) -> tuple[int, _dt.datetime] | None:
        """``(counter, issued at)`` of an open nonce, now spent; None if it is not open."""

    def record(self, attested: Attested, counter: int) -> bool:
        """Keep ``attested`` unless a report answering a later nonce is kept; True if kept."""

    def latest(self, cluster: str) -> Attested | None: ...


class MemoryBook:
    """Nonces and reports in this process: a restart forgets them (old nonces become unknown: refused)."""

    def __init__(self) -> None:
        self._open: dict[str, OrderedDict[str, tuple[int, _dt.datetime]]] = {}
        self._counter: dict[str, int] = {}
        self._latest: dict[str, tuple[int, Attested]] = {}

    def issue(self, cluster: str, nonce: str, at: _dt.datetime) -> int:
        counter = self._counter[cluster] = self._counter.get(cluster, 0) + 1
        book = self._open.setdefault(cluster, OrderedDict())
        book[nonce] = (counter, at)
        while len(book) > MAX_OPEN_NONCES:
            book.popitem(last=False)
        return counter

    def spend(self, cluster: str, nonce: str) -> tuple[int, _dt.datetime] | None:
        return (self._open.get(cluster) or {}).pop(nonce, None)

    def record(self, attested: Attested, counter: int) -> bool:
        held = self._latest.get(attested.cluster)
        if held is not None and held[0] >= counter:
            return False
        self._latest[attested.cluster] = (counter, attested)
        return True

    def latest(self, cluster: str) -> Attested | None:
        held = self._latest.get(cluster)
        return held[1] if held is not None else None


class StateBook:
    """Nonces and reports in the hub state (see the module docstring); writes are unfenced: any replica's."""

    def __init__(self, state: HubState):
        self._state = state

    def issue(self, cluster: str, nonce: str, at: _dt.datetime) -> int:
        with self._state.write() as tx:
            return tx.issue_nonce(cluster, nonce, at.timestamp(), keep=MAX_OPEN_NONCES,
                                  expired=(at - NONCE_TTL).timestamp())

    def spend(self, cluster: str, nonce: str) -> tuple[int, _dt.datetime] | None:
        with self._state.write() as tx:
            spent = tx.spend_nonce(cluster, nonce)
        return None if spent is None else (spent[0], _dt.datetime.fromtimestamp(spent[1], _dt.UTC))

    def record(self, attested: Attested, counter: int) -> bool:
        with self._state.write() as tx:
            return tx.put_attestation(attested.cluster, counter, attested.received_at.timestamp(), attested.data,
                                      attested.signature, attested.certificate)

    def latest(self, cluster: str) -> Attested | None:
        with self._state.read() as tx:
            row = tx.attestation(cluster)
        if row is None:
            return None
        _counter, received, data, signature, certificate = row
        return Attested(cluster, json.loads(data), data, signature, certificate,
                        _dt.datetime.fromtimestamp(received, _dt.UTC))


class AttestationBoard:
    def __init__(self, clock: Clock | None = None, book: NonceBook | None = None):
        self._clock = clock or SystemClock()
        self._book = book if book is not None else MemoryBook()

    def issue(self, cluster: str) -> tuple[str, int]:
        nonce = secrets.token_hex(16)
        return nonce, self._book.issue(cluster, nonce, self._clock.now())

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
        issued = self._book.spend(cluster, doc["nonce"]) if isinstance(doc["nonce"], str) else None
        if issued is None:
            raise VerificationError(
                f"report of {cluster} carries nonce {str(doc['nonce'])[:8]}… that is unknown or already used",
                reason="ReplayedReport",
            )
        counter, at = issued
        if doc["counter"] != counter or self._clock.now() - at > NONCE_TTL:
            raise VerificationError(f"report of {cluster}: nonce expired or counter mismatch", reason="ReplayedReport")
        attested = Attested(cluster, doc, data, signature, certificate, self._clock.now())
        self._book.record(attested, counter)  # (a report answering a later nonce, kept already, stays)
        return attested

    def latest(self, cluster: str) -> Attested | None:
        return self._book.latest(cluster)

    def gate(self, cluster: str, digest: str) -> bool:
        """Whether ``cluster`` attested that it runs ``digest`` and is Ready (a promotion gate)."""
        a = self.latest(cluster)
        return a is not None and a.report["applied_digest"] == digest and a.report["ready"] is True
