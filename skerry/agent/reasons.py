"""The ``KubeError.reason`` values ``KubeClient`` raises, importable without the kubernetes client."""

NOT_FOUND = "NotFound"
FORBIDDEN = "Forbidden"
CONFLICT = "Conflict"
INVALID = "Invalid"
UNKNOWN_KIND = "UnknownKind"
UNAVAILABLE = "Unavailable"

KUBE_REASONS = (NOT_FOUND, FORBIDDEN, CONFLICT, INVALID, UNKNOWN_KIND, UNAVAILABLE)
