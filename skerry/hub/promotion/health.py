"""What the promotion knows of a cluster's health: the agents' reports, as gates and rollouts read them.

A gate opens and a rollout counts as healthy only on what a cluster reported about its *current*
bundle. Two sources: the status board (mutual-TLS reports, with the soak clock the
``HealthTracker`` keeps from them) and, when the hub runs with TUF, the ``AttestationBoard`` of
signed, nonce-bound reports; then only those count, so a replayed or forged report cannot open a gate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from skerry.core.clock import Clock
from skerry.hub.promotion.gates import ClusterHealth, HealthTracker
from skerry.hub.reports import ReportJournal, StoredReport
from skerry.hub.status import ClusterStatus, StatusBoard

MAX_REASONS = 3  # failing health checks named in a not-ready reason; the rest are in the report itself


class TrackingStatusBoard(StatusBoard):
    """A ``StatusBoard`` that also tells the ``HealthTracker`` about every report it accepts.

    The tracker measures soak time from these (mTLS-authenticated) reports; in TUF mode the gates
    additionally require the applied digest and Ready to come from a signed, nonce-bound report
    (``cluster_health`` with ``attestations``), so a replayed or forged report cannot open a gate.
    """

    def __init__(self, tracker: HealthTracker, clock: Clock, journal: ReportJournal | None = None):
        super().__init__()
        self.tracker = tracker
        self._clock = clock
        self._journal = journal  # the hub state keeps reports and soak clocks across restarts

    def report(self, status: ClusterStatus) -> bool:
        accepted = super().report(status)
        if accepted:
            ready, _ = ready_of(status)
            self.tracker.observe(status.cluster, status.applied_digest, ready, status.received_at or self._clock.now())
            if self._journal is not None:
                self._journal.note(status, self.tracker.since(status.cluster))
        return accepted

    def restore(self, stored: Sequence[StoredReport]) -> None:
        """Start from what a previous process stored: each cluster's report and its soak clock."""
        for r in stored:
            super().report(r.status)
            self.tracker.restore(r.status.cluster, r.healthy_digest, r.healthy_since)


def ready_of(status: ClusterStatus) -> tuple[bool, str]:
    """(Ready, why not) from a report's Ready condition; no condition is not ready."""
    for c in status.conditions:
        if c.type == "Ready":
            return c.status == "True", (f"{c.reason}: {c.message}" if c.message else c.reason)
    return False, "no Ready condition reported"


def cluster_health(cluster: str, *, store, statuses: StatusBoard, tracker: HealthTracker, attestations=None) -> ClusterHealth:
    """``cluster``'s health against the bundle the hub serves it now (``store``).

    With ``attestations`` (an ``AttestationBoard``) only the newest signed report counts.
    """
    current = store.current(cluster) if cluster in store else None
    desired = current.digest if current is not None else ""
    revision = current.revision if current is not None else ""
    status = statuses.get(cluster)
    health = _health(cluster, desired, revision, status, attestations, tracker)
    return dataclasses.replace(health, desired_release=current.label if current is not None else "",
                               applied_release=_applied_release(health, current, status))


def _applied_release(health: ClusterHealth, current, status: ClusterStatus | None) -> str:
    """The applied release as people read it (display only): the desired one's number when the cluster
    runs it, else the number of the release its agent reported applied."""
    if not health.reported:
        return ""
    if current is not None and health.applied_digest == current.digest:
        return current.label
    if status is not None and status.applied_digest == health.applied_digest:
        return status.applied_label
    return "-"


def _health(cluster: str, desired: str, revision: str, status: ClusterStatus | None, attestations,
            tracker: HealthTracker) -> ClusterHealth:
    if attestations is not None:
        return _attested_health(cluster, desired, revision, attestations, tracker)
    if status is None:
        return ClusterHealth(cluster=cluster, desired_digest=desired, desired_revision=revision)
    ready, reason = ready_of(status)
    return ClusterHealth(
        cluster=cluster,
        desired_digest=desired,
        desired_revision=revision,
        applied_digest=status.applied_digest,
        ready=ready,
        reason=reason,
        healthy_since=tracker.healthy_since(cluster, status.applied_digest) if ready else None,
        reported=True,
    )


def _attested_health(cluster: str, desired: str, revision: str, attestations, tracker: HealthTracker) -> ClusterHealth:
    """Health from the newest signed report only: what the agent attested, not what was claimed."""
    attested = attestations.latest(cluster)
    if attested is None:
        return ClusterHealth(cluster=cluster, desired_digest=desired, desired_revision=revision,
                             signature_required=True)
    doc = attested.report
    ready = doc.get("ready") is True
    reason = ""
    if not ready:
        failing = [h for h in doc.get("health") or () if isinstance(h, dict) and h.get("status") != "True"]
        reason = ", ".join(f"{h.get('type')}: {h.get('reason')}" for h in failing[:MAX_REASONS]) or "not ready"
    applied = str(doc.get("applied_digest") or "")
    return ClusterHealth(
        cluster=cluster,
        desired_digest=desired,
        desired_revision=revision,
        applied_digest=applied,
        ready=ready,
        reason=reason,
        healthy_since=tracker.healthy_since(cluster, applied) if ready else None,
        reported=True,
        signed=True,
        signature_required=True,
    )
