"""What a TUF-mode agent shows the sealer: the trusted metadata behind the bundle it applies.

The sealer re-verifies everything itself (``skerry.sealer.bundle_trust``), so this
module only gathers the files python-tuf persisted after the agent's last
successful refresh — root, timestamp, snapshot, targets, director, the
director's hash bin ``clusters-<hh>`` listing the bundle's path, its environment's
``release-<env>`` role and the hash bin of it that lists the same path (read from
the trusted director and ``release-<env>``) — into the evidence document of
``skerry.core.trust``. Nothing secret is in it.
"""

from __future__ import annotations

import pathlib

from skerry.core import documents, trust
from skerry.core.errors import VerificationError


def roles(cluster: str, environment: str, digest: str, director: dict | None = None,
          release: dict | None = None) -> tuple[str, ...]:
    """The role files to show for the bundle ``digest`` (``sha256:<hex>``): the bins ``director`` and
    ``release`` (``release-<env>``, parsed JSON) delegate its path to."""
    path = trust.release_path(environment, cluster, digest.removeprefix("sha256:"))
    names = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE,
             (trust.delegated_role(director, path) if director else None) or trust.director_bin(path),
             trust.release_role(environment)]
    holder = trust.delegated_role(release, path) if release is not None else None
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


def read(metadata_dir: pathlib.Path, cluster: str, environment: str, digest: str) -> bytes:
    """The evidence document for the applied bundle ``digest``; ``VerificationError`` if a trusted file
    is missing (never refreshed)."""
    metadata_dir = pathlib.Path(metadata_dir)
    director = _json(metadata_dir, trust.DIRECTOR_ROLE)
    release = _json(metadata_dir, trust.release_role(environment))
    files: dict[str, bytes] = {}
    for role in roles(cluster, environment, digest, director, release):
        try:
            files[f"{role}.json"] = (metadata_dir / f"{role}.json").read_bytes()
        except OSError as e:
            raise VerificationError(f"no trusted {role} metadata to show the sealer ({e.strerror})",
                                    reason="NotRefreshed") from e
    return trust.encode_evidence(files)
