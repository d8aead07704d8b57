"""Skerry's error hierarchy.

Library errors (GitPython, kubernetes, grpc, cryptography) are wrapped in
these with ``raise ... from ...`` at the module that owns the library, so the
rest of the code handles one vocabulary. Each class names the gRPC status it
maps to; the mapping itself is applied in one place, ``skerry.core.rpc``.
Messages must never contain secret values.
"""

from __future__ import annotations


class SkerryError(Exception):
    """Base class. ``status`` is the name of a ``grpc.StatusCode``."""

    status = "INTERNAL"
    reason = "InternalError"

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(SkerryError):
    status = "INVALID_ARGUMENT"
    reason = "InvalidInput"


class ConfigError(InvalidInput):
    reason = "ConfigError"


class NotFound(SkerryError):
    status = "NOT_FOUND"
    reason = "NotFound"


class Absent(NotFound):
    """An expected absence: the answer to a probe, not a refusal.

    A TUF client asks for root version N+1 at every refresh until it is missing (the specification's root
    walk), so at every release each agent of the fleet gets this answer once. Answered NOT_FOUND like any
    missing file, but neither logged nor counted as a refusal (at 10,000 agents that was 10,000 "rpc
    refused" lines and ~0.5 ms of hub CPU each per release).
    """

    reason = "Absent"


class AlreadyExists(SkerryError):
    status = "ALREADY_EXISTS"
    reason = "AlreadyExists"


class Unauthenticated(SkerryError):
    status = "UNAUTHENTICATED"
    reason = "Unauthenticated"


class PermissionDenied(SkerryError):
    status = "PERMISSION_DENIED"
    reason = "PermissionDenied"


class FailedPrecondition(SkerryError):
    status = "FAILED_PRECONDITION"
    reason = "FailedPrecondition"


class Unavailable(SkerryError):
    status = "UNAVAILABLE"
    reason = "Unavailable"


class ResourceExhausted(SkerryError):
    """Over a limit. ``retry_after`` (seconds), when the refuser knows it, reaches the client as gRPC's
    ``grpc-retry-pushback-ms`` trailer (``skerry.core.pushback``)."""

    status = "RESOURCE_EXHAUSTED"
    reason = "ResourceExhausted"
    retry_after: float | None = None

    def __init__(self, message: str, *, reason: str | None = None, retry_after: float | None = None):
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class DeadlineExceeded(SkerryError):
    status = "DEADLINE_EXCEEDED"
    reason = "DeadlineExceeded"


class StateUnwritable(ResourceExhausted):
    """A service's own state could not be written (disk full, read-only, quota): nothing new that
    needs it is accepted, the last good state stays. Reason ``DiskFull`` (ENOSPC, EDQUOT) or
    ``StateUnwritable``; built by ``skerry.core.files.unwritable``."""

    reason = "StateUnwritable"


# --- domain errors shared across services -------------------------------------------------


class SourceError(Unavailable):
    """The Git source could not be fetched or read."""

    reason = "SourceError"


class RenderError(InvalidInput):
    """A path failed to render; the previous bundle stays served."""

    reason = "RenderFailed"


class VerificationError(PermissionDenied):
    """A bundle or its metadata failed verification; nothing of it is applied.

    ``reason`` names the attack class or check that failed (e.g.
    ``BadSignature``, ``Rollback``, ``WrongCluster``, ``Expired``).
    """

    reason = "VerificationFailed"


class SealError(InvalidInput):
    """Sealing or unsealing failed (wrong key, wrong scope, corrupt data)."""

    reason = "SealError"


class KubeError(SkerryError):
    """The Kubernetes API refused or failed a request."""

    reason = "KubeError"

    def __init__(self, message: str, *, reason: str | None = None, http_status: int | None = None):
        super().__init__(message, reason=reason)
        self.http_status = http_status
