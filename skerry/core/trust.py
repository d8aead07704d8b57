"""The hub⇄agent trust contract: TUF role names, target paths and custom fields.

Skerry's hub is one TUF repository (standard TUF metadata, python-tuf) with
an Uptane-style split between two delegated roles of the top-level
``targets`` (offline key)::

    root (offline) ── timestamp, snapshot (hub online keys)
    targets (offline)
      ├── release-<env>   CI/offline keys, threshold per environment (prod: 2 of 3)
      │     paths releases/<env>/*      the bundle *content*: one target per signed bundle
      └── director        hub online key; delegates hash bins of clusters
            └── clusters-<hh>   path_hash_prefixes [<hh>]   which bundle each cluster of the bin runs

The director's bins are standard TUF hash-bin delegations (``path_hash_prefixes``,
not TAP 15 succinct roles, which spec clients do not accept): cluster ``c``
belongs to bin ``<hh>`` = the first ``CLUSTER_BIN_HEX`` hex digits of
SHA-256(``clusters/<c>/bundle.json``). A bin is delegated once its first
cluster is directed, so the director holds at most 256 roles and the
snapshot at most 256 bin entries however large the fleet (at 10,000
clusters: ~40 clusters a bin; a per-cluster role each would make the
director ~2 MB, parsed and verified on every refresh of every agent).
Repositories made before bins keep their ``cluster-<name>`` roles
(delegated first, so they still win); new clusters get bins. Agents find
their role from the director they trust, whichever layout it has.

Target paths (content-addressed; no hash prefix is added on download)::

    releases/<env>/<cluster>/<sha256 hex>.json   custom: {cluster, environment, revision}
    clusters/<cluster>/bundle.json               custom: {release, image, environment, revision}

Target custom fields stay minimal: every field is parsed and canonically
encoded twice per refresh by every agent that loads the role.

An agent applies a bundle only when its ``cluster-<name>`` target (director)
and the ``release-<env>`` target it names in ``custom.image`` (release side)
agree on length and SHA-256, both name the agent's cluster and environment,
and ``custom.release`` is not below the highest release counter the agent
has applied. Metadata files are served by consistent-snapshot names
(``<version>.<role>.json``, ``timestamp.json``).
"""

from __future__ import annotations

import hashlib
import re

DIRECTOR_ROLE = "director"
RELEASE_PREFIX = "release-"
CLUSTER_PREFIX = "cluster-"  # per-cluster director roles of repositories made before hash bins
CLUSTER_BIN_PREFIX = "clusters-"
CLUSTER_BIN_HEX = 2  # 256 bins: bounds the director and snapshot whatever the fleet size
RELEASE_BIN_PREFIX = "releases-"  # releases-<env>-<hh>: never equal to a release-<env> role name
RELEASE_BIN_HEX = 2  # 256 bins per environment: a bin holds ~N/256 clusters' kept releases

# A cluster/environment name: a DNS label (what the fleet file and certificates allow).
NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^{NAME}$")
_RELEASE_PATH = re.compile(rf"^releases/(?P<env>{NAME})/(?P<cluster>{NAME})/(?P<hex>[0-9a-f]{{64}})\.json$")
_ROLE = rf"(?:root|snapshot|targets|director|(?:release|cluster)-{NAME}|clusters-[0-9a-f]{{1,8}}|releases-{NAME}-[0-9a-f]{{1,8}})"
_METADATA_NAME = re.compile(rf"^(?:timestamp|[1-9][0-9]{{0,19}}\.{_ROLE})\.json$")

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
    """The director's hash-bin role that says which bundle ``cluster`` runs (TUF ``path_hash_prefixes``)."""
    return f"{CLUSTER_BIN_PREFIX}{cluster_bin(cluster)}"


def cluster_bin(cluster: str) -> str:
    """The hash prefix of ``cluster``'s director target path, as TUF computes it for ``path_hash_prefixes``."""
    return bin_prefix(director_path(cluster), CLUSTER_BIN_HEX)


def delegated_cluster_role(director: dict, cluster: str) -> str | None:
    """The role a director document (parsed JSON) delegates ``cluster``'s pointer to, as TUF walks: first match."""
    return delegated_role(director, director_path(cluster))


def delegated_role(doc: dict, path: str) -> str | None:
    """The first role a targets document (parsed JSON) delegates ``path`` to, as TUF walks; ``None`` if none."""
    from tuf.api.metadata import DelegatedRole

    for role in ((doc.get("signed", {}).get("delegations") or {}).get("roles")) or []:
        if DelegatedRole.from_dict(dict(role)).is_delegated_path(path):
            return role["name"]
    return None


def release_bin(env: str, path: str) -> str:
    """The ``release-<env>`` hash bin holding release target ``path`` (TUF ``path_hash_prefixes``)."""
    return f"{RELEASE_BIN_PREFIX}{env}-{bin_prefix(path, RELEASE_BIN_HEX)}"


def release_bin_names(env: str) -> list[str]:
    return [f"{RELEASE_BIN_PREFIX}{env}-{i:0{RELEASE_BIN_HEX}x}" for i in range(16 ** RELEASE_BIN_HEX)]


def bin_prefix(path: str, digits: int) -> str:
    """The hash prefix TUF computes for ``path`` under ``path_hash_prefixes``."""
    return hashlib.sha256(path.encode()).hexdigest()[:digits]


def is_release_bin(role: str) -> bool:
    return role.startswith(RELEASE_BIN_PREFIX)


def release_env_of_bin(role: str) -> str:
    """``prod`` of ``releases-prod-ab``."""
    return role[len(RELEASE_BIN_PREFIX):].rsplit("-", 1)[0]


def unbinned_cluster_role(cluster: str) -> str:
    """``cluster-<name>``: the per-cluster director role of repositories made before hash bins."""
    return f"{CLUSTER_PREFIX}{cluster}"


def is_cluster_role(role: str) -> bool:
    """A role the director delegates (a hash bin, or an unbinned per-cluster role)."""
    return role.startswith((CLUSTER_BIN_PREFIX, CLUSTER_PREFIX))


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


# --- the Uptane agreement rule (agent and sealer apply the same one) --------------------------


def director_says(cluster: str, environment: str | None, directed) -> tuple[str, str, int]:
    """``(environment, image path, release counter)`` the director's verified target names.

    ``directed`` is the verified ``clusters/<cluster>/bundle.json`` target (a python-tuf
    ``TargetFile``, or ``None`` when the director lists none). ``environment`` is the one the
    caller knows the cluster runs in; ``None`` (the sealer, which keeps no fleet file) takes it
    from the image path, so the release side of *that* environment must still sign the content.
    Raises ``VerificationError`` whose ``reason`` names the attack class. Check this before
    fetching the image's release target: a bad path is never looked up.
    """
    from skerry.core.errors import VerificationError

    if directed is None:
        raise VerificationError(f"the director names no bundle for {cluster}", reason="NotDirected")
    custom = directed.custom if isinstance(directed.custom, dict) else {}
    image, release = custom.get("image"), custom.get("release")
    if not isinstance(image, str) or not isinstance(release, int) or isinstance(release, bool):
        raise VerificationError("director target lacks custom.image/custom.release", reason="MalformedMetadata")
    parsed = parse_release_path(image)
    if parsed is None:
        raise VerificationError(f"director names target {image[:200]!r}: not a release path", reason="PathTraversal")
    env, image_cluster, _hex = parsed
    if image_cluster != cluster:
        raise VerificationError(f"director points {cluster} at a bundle of {image_cluster}", reason="WrongCluster")
    if environment is not None and env != environment:
        raise VerificationError(f"director points {cluster} ({environment}) at a {env} release",
                                reason="WrongEnvironment")
    return env, image, release


def release_agrees(cluster: str, env: str, image: str, directed, released) -> str:
    """``"sha256:<hex>"`` if ``release-<env>``'s verified target for ``image`` matches the director's.

    The Uptane rule: the director (online key) and the release side (offline/CI keys) must
    agree on length and hash and both name this cluster and environment, so neither alone can
    ship a bundle.
    """
    from skerry.core.errors import VerificationError

    if released is None:
        raise VerificationError(f"{image} is not signed by release-{env}: the director alone cannot ship a bundle",
                                reason="NotReleased")
    if released.length != directed.length or released.hashes != directed.hashes:
        raise VerificationError("director and release disagree on the bundle's length/hash",
                                reason="DirectorReleaseMismatch")
    rcustom = released.custom if isinstance(released.custom, dict) else {}
    if rcustom.get("cluster") != cluster or rcustom.get("environment") != env:
        raise VerificationError(f"release target is for {rcustom.get('cluster')!r}", reason="WrongCluster")
    return "sha256:" + str(released.hashes.get("sha256", ""))


# --- evidence: the trusted metadata an agent hands the sealer with a bundle ---------------------
#
# Byte format (UTF-8 JSON, one object; the sealer verifies every file itself with its own root):
#   {"skerry-tuf-evidence": 1, "files": {"<role>.json": "<base64 of the metadata file>", ...}}
# roles: root, timestamp, snapshot, targets, director, the director role of the cluster (its hash bin
# clusters-<hh>, or an unbinned cluster-<name>), release-<env> and its hash bin releases-<env>-<hh> holding
# the bundle's release target; nothing else.

EVIDENCE_MARK = "skerry-tuf-evidence"
MAX_EVIDENCE_FILES = 9  # the eight roles above, one spare
MAX_EVIDENCE_BYTES = 8 * 1024 * 1024  # base64 of the files; below the sealer's 16 MiB message limit
_EVIDENCE_ROLE = re.compile(rf"^(?:timestamp|{_ROLE})\.json$")


def encode_evidence(files: dict[str, bytes]) -> bytes:
    import base64
    import json

    return json.dumps({EVIDENCE_MARK: 1, "files": {k: base64.b64encode(v).decode() for k, v in sorted(files.items())}},
                      separators=(",", ":")).encode()


def is_evidence(data: bytes) -> bool:
    return data[:64].lstrip().startswith(b'{"' + EVIDENCE_MARK.encode())


def decode_evidence(data: bytes) -> dict[str, bytes]:
    """The metadata files of an evidence document; ``InvalidInput`` naming what is wrong."""
    import base64
    import binascii
    import json

    from skerry.core.errors import InvalidInput

    if len(data) > MAX_EVIDENCE_BYTES:
        raise InvalidInput(f"trust evidence is {len(data)} bytes, over {MAX_EVIDENCE_BYTES}")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"trust evidence is not JSON: {e}") from e
    files = doc.get("files") if isinstance(doc, dict) and doc.get(EVIDENCE_MARK) == 1 else None
    if not isinstance(files, dict) or not 0 < len(files) <= MAX_EVIDENCE_FILES:
        raise InvalidInput(f"trust evidence must hold 1..{MAX_EVIDENCE_FILES} metadata files")
    out: dict[str, bytes] = {}
    for name, b64 in files.items():
        if not isinstance(name, str) or not _EVIDENCE_ROLE.match(name) or not isinstance(b64, str):
            raise InvalidInput(f"trust evidence names {str(name)[:80]!r}: not a Skerry TUF role file")
        try:
            out[name] = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidInput(f"trust evidence {name}: not base64") from e
    return out
