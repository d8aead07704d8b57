"""What a TUF-mode agent shows the sealer: the trusted metadata behind the bundle it applies.

The sealer re-verifies everything itself (``skerry.sealer.tuf``), so this
module only gathers the files python-tuf persisted after the agent's last
successful refresh — root, timestamp, snapshot, targets, director, this
cluster's ``cluster-<name>`` and its environment's ``release-<env>`` role —
into the evidence document of ``skerry.core.trust``. Nothing secret is in it.
"""

from __future__ import annotations

import pathlib

from skerry.core import trust
from skerry.core.errors import VerificationError


def roles(cluster: str, environment: str) -> tuple[str, ...]:
    return ("root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, trust.cluster_role(cluster),
            trust.release_role(environment))


def read(metadata_dir: pathlib.Path, cluster: str, environment: str) -> bytes:
    """The evidence document; ``VerificationError`` if a trusted file is missing (never refreshed)."""
    files: dict[str, bytes] = {}
    for role in roles(cluster, environment):
        try:
            files[f"{role}.json"] = (pathlib.Path(metadata_dir) / f"{role}.json").read_bytes()
        except OSError as e:
            raise VerificationError(f"no trusted {role} metadata to show the sealer ({e.strerror})",
                                    reason="NotRefreshed") from e
    return trust.encode_evidence(files)
