"""What a TUF-mode agent shows the sealer: the trusted metadata behind the bundle it applies.

The sealer re-verifies everything itself (``skerry.sealer.tuf``), so this
module only gathers the files python-tuf persisted after the agent's last
successful refresh — root, timestamp, snapshot, targets, director, the
director role holding this cluster's pointer (its hash bin ``clusters-<hh>``,
or ``cluster-<name>`` in repositories made before bins; read from the trusted
director) and its environment's ``release-<env>`` role — into the evidence
document of ``skerry.core.trust``. Nothing secret is in it.
"""

from __future__ import annotations

import pathlib

from skerry.core import documents, trust
from skerry.core.errors import VerificationError


def roles(cluster: str, environment: str, director: dict | None = None) -> tuple[str, ...]:
    """The role files to show; the cluster's role is the one ``director`` (parsed JSON) delegates to."""
    cluster_role = (trust.delegated_cluster_role(director, cluster) if director else None) or trust.cluster_role(cluster)
    return ("root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, cluster_role,
            trust.release_role(environment))


def read(metadata_dir: pathlib.Path, cluster: str, environment: str) -> bytes:
    """The evidence document; ``VerificationError`` if a trusted file is missing (never refreshed)."""
    metadata_dir = pathlib.Path(metadata_dir)
    try:
        director = documents.load_json((metadata_dir / f"{trust.DIRECTOR_ROLE}.json").read_bytes(),
                                       max_bytes=trust.MAX_METADATA_BYTES)
    except OSError as e:
        raise VerificationError(f"no trusted director metadata to show the sealer ({e.strerror})",
                                reason="NotRefreshed") from e
    except ValueError as e:
        raise VerificationError(f"trusted director metadata is unreadable: {e}", reason="NotRefreshed") from e
    files: dict[str, bytes] = {}
    for role in roles(cluster, environment, director):
        try:
            files[f"{role}.json"] = (metadata_dir / f"{role}.json").read_bytes()
        except OSError as e:
            raise VerificationError(f"no trusted {role} metadata to show the sealer ({e.strerror})",
                                    reason="NotRefreshed") from e
    return trust.encode_evidence(files)
