"""What a TUF-mode agent shows the sealer: the trusted metadata behind the bundle it applies.

The sealer re-verifies everything itself (``skerry.sealer.bundle_trust``), so this
module only gathers the files python-tuf persisted after the agent's last
successful refresh — root, timestamp, snapshot, targets, director, the
director role holding this cluster's pointer (its hash bin ``clusters-<hh>``,
or ``cluster-<name>`` in repositories made before bins; read from the trusted
director), its environment's ``release-<env>`` role and the hash bin of it that
holds the bundle's release target — into the evidence
document of ``skerry.core.trust``. Nothing secret is in it.
"""

from __future__ import annotations

import pathlib

from skerry.core import documents, trust
from skerry.core.errors import VerificationError


def roles(cluster: str, environment: str, director: dict | None = None, pointer: dict | None = None,
          release: dict | None = None) -> tuple[str, ...]:
    """The role files to show: the cluster's director role is the one ``director`` (parsed JSON)
    delegates to, the release bin the one ``release`` (``release-<env>``) delegates the image
    ``pointer`` (the cluster role's JSON) names."""
    cluster_role = (trust.delegated_cluster_role(director, cluster) if director else None) or trust.cluster_role(cluster)
    names = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, cluster_role, trust.release_role(environment)]
    target = ((pointer or {}).get("signed", {}).get("targets") or {}).get(trust.director_path(cluster)) or {}
    image = (target.get("custom") or {}).get("image")
    if release is not None and isinstance(image, str):
        holder = trust.delegated_role(release, image)
        if holder is not None:
            names.append(holder)
    return tuple(names)


def _json(metadata_dir: pathlib.Path, role: str) -> dict:
    try:
        return documents.load_json((metadata_dir / f"{role}.json").read_bytes(), max_bytes=trust.MAX_METADATA_BYTES)
    except OSError as e:
        raise VerificationError(f"no trusted {role} metadata to show the sealer ({e.strerror})",
                                reason="NotRefreshed") from e
    except ValueError as e:
        raise VerificationError(f"trusted {role} metadata is unreadable: {e}", reason="NotRefreshed") from e


def read(metadata_dir: pathlib.Path, cluster: str, environment: str) -> bytes:
    """The evidence document; ``VerificationError`` if a trusted file is missing (never refreshed)."""
    metadata_dir = pathlib.Path(metadata_dir)
    director = _json(metadata_dir, trust.DIRECTOR_ROLE)
    first = roles(cluster, environment, director)
    pointer, release = _json(metadata_dir, first[5]), _json(metadata_dir, trust.release_role(environment))
    files: dict[str, bytes] = {}
    for role in roles(cluster, environment, director, pointer, release):
        try:
            files[f"{role}.json"] = (metadata_dir / f"{role}.json").read_bytes()
        except OSError as e:
            raise VerificationError(f"no trusted {role} metadata to show the sealer ({e.strerror})",
                                    reason="NotRefreshed") from e
    return trust.encode_evidence(files)
