"""The hub⇄agent trust contract: TUF role names, target paths and custom fields.

Skerry's hub is one TUF repository (standard TUF metadata, python-tuf) with
an Uptane-style split between two delegated roles of the top-level
``targets`` (offline key)::

    root (offline) ── timestamp, snapshot (hub online keys)
    targets (offline)
      ├── release-<env>   CI/offline keys, threshold per environment (prod: 2 of 3)
      │     paths releases/<env>/*      the bundle *content*: one target per signed bundle
      └── director        hub online key; delegates one role per cluster
            └── cluster-<name>  paths clusters/<name>/*   which bundle the cluster runs

Target paths (content-addressed; no hash prefix is added on download)::

    releases/<env>/<cluster>/<sha256 hex>.json   custom: {cluster, environment, revision}
    clusters/<cluster>/bundle.json               custom: {release, image, environment, revision}

An agent applies a bundle only when its ``cluster-<name>`` target (director)
and the ``release-<env>`` target it names in ``custom.image`` (release side)
agree on length and SHA-256, both name the agent's cluster and environment,
and ``custom.release`` is not below the highest release counter the agent
has applied. Metadata files are served by consistent-snapshot names
(``<version>.<role>.json``, ``timestamp.json``).
"""

from __future__ import annotations

import re

DIRECTOR_ROLE = "director"
RELEASE_PREFIX = "release-"
CLUSTER_PREFIX = "cluster-"

# A cluster/environment name: a DNS label (what the fleet file and certificates allow).
NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^{NAME}$")
_RELEASE_PATH = re.compile(rf"^releases/(?P<env>{NAME})/(?P<cluster>{NAME})/(?P<hex>[0-9a-f]{{64}})\.json$")
_METADATA_NAME = re.compile(rf"^(?:timestamp|(?:[1-9][0-9]{{0,19}}\.(?:root|snapshot|targets|director|(?:release|cluster)-{NAME})))\.json$")

# Bounds on every fetch (the "endless data" attack); the agent's fetcher enforces them per path.
MAX_TIMESTAMP_BYTES = 16 * 1024  # python-tuf's default cap
MAX_METADATA_BYTES = 5 * 1024 * 1024  # python-tuf's targets cap; a director role for 10k clusters is ~2 MB
MAX_BLOB_BYTES = 12 * 1024 * 1024  # a bundle, below the 16 MiB gRPC message limit
FETCH_CHUNK = 1024 * 1024  # bytes per streamed fetch message


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


def release_role(env: str) -> str:
    return f"{RELEASE_PREFIX}{env}"


def cluster_role(cluster: str) -> str:
    return f"{CLUSTER_PREFIX}{cluster}"


def release_path(env: str, cluster: str, hexdigest: str) -> str:
    return f"releases/{env}/{cluster}/{hexdigest}.json"


def director_path(cluster: str) -> str:
    return f"clusters/{cluster}/bundle.json"


def parse_release_path(path: str) -> tuple[str, str, str] | None:
    """``(env, cluster, hex)`` of a well-formed release path, else ``None`` (traversal, junk)."""
    m = _RELEASE_PATH.match(path)
    return (m["env"], m["cluster"], m["hex"]) if m else None


def safe_fetch_path(path: str) -> bool:
    """Whether ``path`` names a metadata file or a release blob (never ``..``, ``/x``, ``\\``)."""
    if path.startswith("metadata/"):
        return bool(_METADATA_NAME.match(path[len("metadata/"):]))
    if path.startswith("targets/"):
        return parse_release_path(path[len("targets/"):]) is not None
    return False


def fetch_cap(path: str) -> int:
    if path == "metadata/timestamp.json":
        return MAX_TIMESTAMP_BYTES
    if path.startswith("metadata/"):
        return MAX_METADATA_BYTES
    return MAX_BLOB_BYTES
