"""What the hub keeps in its state database, as one protocol both backends implement.

``HubState`` is the connection-level object (one per hub process): it opens
transactions, hands out the writer lease and waits for change notifications.
``Tx`` is what one transaction can do; every domain write goes through one, so
an act and the audit line that records it commit together or not at all.

A *fenced* transaction (``state.write(lease)``) re-checks, inside the same
transaction, that ``lease`` is still the current writer lease and has not
expired on the database's clock; otherwise it raises ``Fenced`` and commits
nothing. An unfenced one (``state.write()``) is for writes any replica may make
(redeeming a token, storing an agent report).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from skerry.core.errors import ConfigError, FailedPrecondition, Unavailable


class StateUnavailable(Unavailable):
    """The state database cannot be reached or was lost; the message is one line naming it (no password)."""

    reason = "StateUnavailable"


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer hub than this one; refusing rather than misreading it."""

    reason = "SchemaTooNew"


class Fenced(FailedPrecondition):
    """This process's writer lease was taken over or expired: the transaction committed nothing."""

    reason = "Fenced"


@dataclasses.dataclass(frozen=True)
class Lease:
    """The writer lease as one holder took it: ``epoch`` grows by one on every acquisition."""

    holder: str
    epoch: int
    expires: float  # seconds since the epoch, on the database's clock
    ttl: float = 0.0  # what it was taken or renewed for: a long write transaction renews it as it goes


@dataclasses.dataclass(frozen=True)
class Change:
    """One change-log entry: ``seq`` strictly increases in commit order; ``kind``/``key`` say what changed."""

    seq: int
    kind: str
    key: str


@dataclasses.dataclass(frozen=True)
class Report:
    """The newest stored report of one cluster; ``generation`` orders reports (higher is newer)."""

    cluster: str
    generation: int
    body: bytes


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    seq: int
    doc: Mapping


class Tx(Protocol):
    """One open transaction (see the module docstring)."""

    def alive(self) -> None:
        """Called often during a long computation inside the transaction: keeps its lease and connection."""

    def next_release(self, cluster: str) -> int:
        """The cluster's next release counter: above every counter it ever had, whatever the clocks did."""

    def next_releases(self, clusters: Iterable[str]) -> dict[str, int]:
        """``next_release`` of each distinct cluster, in few statements (a fleet-wide release)."""

    def raise_release(self, cluster: str, release: int) -> None:
        """Make ``release`` count as used for ``cluster`` (the counter never goes below it)."""

    def last_release(self, cluster: str) -> int | None: ...

    def release_floor(self) -> int:
        """Every counter of this state is above it (``skerry.hub.state.schema``); release numbers count
        from it (``skerry.core.release_number``)."""

    def redeem_token(self, token_id: str, expires: float, now: float) -> bool:
        """Record the token as spent; False if it was spent before. Entries expired at ``now`` are dropped."""

    def spent_tokens(self, now: float) -> dict[str, float]: ...

    def revoke(self, kind: str, key: str, at: float) -> None:
        """``kind`` is ``cluster`` or ``fingerprint``; an existing entry keeps the later time."""

    def revocations(self) -> dict[str, dict[str, float]]:
        """``{"clusters": {name: at}, "fingerprints": {hex: at}}``."""

    def prune_revocations(self, before: float) -> int: ...

    def put_report(self, cluster: str, generation: int, body: bytes) -> bool:
        """Store the report unless a report with a generation >= ``generation`` is stored; True if stored."""

    def put_reports(self, reports: Mapping[str, tuple[int, bytes]]) -> int:
        """``put_report`` of each ``{cluster: (generation, body)}``, in few statements; how many were stored."""

    def reports(self) -> list[Report]: ...

    def reports_since(self, seq: int, limit: int = ...) -> tuple[list[Report], int]:
        """Reports stored by transactions after position ``seq`` (any replica's), and the next position."""

    def issue_nonce(self, cluster: str, nonce: str, issued: float, *, keep: int, expired: float) -> int:
        """Open a signed-report nonce with the cluster's next counter; keep only the newest ``keep``, unexpired."""

    def spend_nonce(self, cluster: str, nonce: str) -> tuple[int, float] | None:
        """``(counter, issued)`` of an open nonce, now spent; None if it is not open (single use, any replica)."""

    def put_attestation(self, cluster: str, counter: int, received: float, data: bytes, signature: bytes,
                        certificate: bytes) -> bool:
        """Keep a signed report unless one with a counter >= ``counter`` is kept; True if kept."""

    def attestation(self, cluster: str) -> tuple[int, float, bytes, bytes, bytes] | None: ...

    def audit(self, doc: Mapping) -> int:
        """Append one audit entry (JSON-able); returns its sequence number."""

    def audit_entries(self, limit: int, after: int = 0) -> list[AuditEntry]: ...

    def put_record(self, kind: str, key: str, doc: Mapping | None) -> None:
        """Store (or, with None, delete) one JSON document: approvals, promotion records, history."""

    def put_records(self, kind: str, docs: Mapping[str, Mapping | None]) -> None:
        """``put_record`` of each key, in few statements (a fleet-wide release records every cluster)."""

    def record(self, kind: str, key: str, *, for_update: bool = False) -> dict | None: ...

    def records(self, kind: str) -> dict[str, dict]: ...

    def records_of(self, kind: str, keys: Iterable[str]) -> dict[str, dict]:
        """The existing documents among ``keys``, in few statements (a replica catching up)."""

    def changed(self, kind: str, key: str) -> int:
        """Log a change (replicas re-read it); returns its sequence number. One wake-up per transaction."""

    def changes_since(self, seq: int, limit: int) -> list[Change]: ...

    def put_trust_file(self, name: str, role: str, version: int, data: bytes) -> None:
        """Store one TUF metadata file as served; only a newer version replaces a name."""

    def trust_file(self, name: str) -> bytes | None: ...

    def trust_newest(self) -> dict[str, tuple[int, bytes]]:
        """Each role's newest stored version: ``{role: (version, bytes)}``."""

    def put_blob(self, hexdigest: str, data: bytes) -> None:
        """Store bundle bytes by SHA-256 hex (kept once however many clusters share them)."""

    def blob(self, hexdigest: str) -> bytes | None: ...

    def drop_trust_versions(self, role: str, below: int) -> int:
        """Remove ``role``'s stored versions below ``below`` (root and the timestamp keep every version)."""

    def collect_trust_versions(self) -> int:
        """Remove each role's versions older than its previous one (root and the timestamp excepted)."""

    def drop_blobs(self, digests: Sequence[str]) -> int: ...

    def blob_digests(self, after: str = "", limit: int = ...) -> list[str]:
        """Stored blob digests in order after ``after``, at most ``limit`` (callers page)."""

    def trust_usage(self) -> dict[str, tuple[int, int]]:
        """Rows and payload bytes of ``trust_files`` and ``blobs``."""

    def get_meta(self, name: str) -> str | None: ...

    def set_meta(self, name: str, value: str) -> None: ...


class HubState(Protocol):
    """One hub process's handle on the state database."""

    url: str  # for messages: backend and place, never a password

    def write(self, lease: Lease | None = None) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction, fenced by ``lease`` if given (raises ``Fenced``, commits nothing)."""

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A read-only transaction."""

    def acquire_lease(self, holder: str, ttl: float) -> Lease | None:
        """Take the writer lease if it is free, expired, or already ``holder``'s (new epoch each time).

        Waits for an in-flight fenced transaction of the previous holder to finish first. None if
        another holder's lease is live.
        """

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a live lease; ``Fenced`` if it was taken over or expired meanwhile."""

    def current_lease(self) -> Lease | None:
        """The live writer lease as the database holds it (None if nobody holds one)."""

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up at once (a clean shutdown), so the next writer need not wait for expiry."""

    def wait_for_changes(self, timeout: float) -> None:
        """Block until another process may have logged changes, or ``timeout``. Only a wake-up."""

    def close(self) -> None: ...

