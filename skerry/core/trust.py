"""How Skerry trusts a bundle: roles, file names and byte formats, in one place.

Skerry's hub is one standard TUF repository (python-tuf metadata, Ed25519 or
any securesystemslib signer, signatures over OLPC canonical JSON of
``signed``) with Uptane's split between the party that says *which* bundle a
cluster runs (the director, hub online key) and the parties that sign *what*
a bundle is (the release side, offline/CI keys with a threshold per
environment). Neither alone can ship: an agent and the sealer apply the
agreement rule below (``director_says``, ``release_agrees``).

Roles::

    root (offline keys, threshold) ── timestamp, snapshot (hub online keys)
    targets (offline key)
      ├── director            hub online key; paths clusters/*/*
      │     └── clusters-<hh>   64 hash bins, path_hash_prefixes <hh>..<hh+3>: which bundle each cluster runs
      └── release-<env>       the env's release keys, threshold t; paths releases/<env>/*; holds no targets
            └── releases-<env>-<hh>   64 hash bins, same keys and threshold: what a bundle is

Both sides are standard TUF hash-bin delegations (``path_hash_prefixes`` of 2
hex digits, 4 per bin: ``bin_of``), so the director, each ``release-<env>`` and
the snapshot stay bounded (64 entries a side) however large the fleet. A
director bin is delegated (online key) when its first cluster is directed.
``release-<env>`` — the 64 bin delegations, naming the env's release keys and
threshold — and its 64 bins, empty, are signed by those keys once, offline, when
the environment is made (``skerry keys init``), so every bin a client may walk
into exists (an image nobody released is ``NotReleased``, not a missing role);
a release then changes and re-signs only the one
bin holding it (``skerry keys sign`` in CI, or the hub itself for environments
whose keys it holds: ``--release-keys``, ``skerry keys init --dev``), never
``release-<env>``, so the offline keys stay offline. An environment added later
with ``skerry keys add`` gets an unbinned ``release-<env>`` (its targets in the
role itself). Repositories made before bins keep their per-cluster director
roles ``cluster-<name>`` (delegated first, so they still win). Expiry:
timestamp 1 d, snapshot/director/bins 7 d (re-signed online at half-life),
release bins 90 d, ``release-<env>``/targets/root 365 d.

Target paths and custom fields (each field is parsed and canonically encoded
by every agent that loads the role, so they stay minimal)::

    releases/<env>/<cluster>/<sha256 hex>.json   release bin   {cluster, environment, revision}
    clusters/<cluster>/bundle.json               director bin  {release, image, environment, revision[, render]}

``image`` is the release path the director points the cluster at; ``release``
the cluster's release counter (never goes down); ``render`` the engine and
version that rendered it — provenance, outside the bundle's digest. A release
bin keeps each cluster's newest two release targets.

Files (below ``repository/`` of the trust directory; served as they are over
``TrustService.Fetch`` or by any static file server)::

    metadata/<version>.<role>.json      every role but the timestamp (consistent snapshots)
    metadata/timestamp.json
    blobs/<sha256 hex>.json             each bundle once, however many clusters share it
    targets/<dir>/<sha256 hex>.<name>   every target of every role under its hash-prefixed name,
                                        a hard link to its blob (what a default TUF client fetches)

``TrustService.Fetch`` also serves a release target at its plain path. Bundle
files go only to their own cluster's agent (``target_cluster``) and operators;
metadata (paths and hashes) is fleet-public.

The bundle (``skerry.core.bundle``): canonical JSON (sorted keys, no
whitespace, UTF-8) of ``{"apiVersion": "skerry.io/v1alpha1", "kind": "Bundle",
"cluster": <name, or "" for a blob shared by clusters built from the same
inputs>, "source": {"url", "revision", "paths"}, "objects": [...]}`` — what is
applied; its SHA-256 is what both sides sign. The signed release target binds
it to one cluster and environment.

The agreement rule: an agent of cluster ``c`` in environment ``e`` applies a
bundle only when the director's target ``clusters/c/bundle.json`` and the
release target named by its ``custom.image`` agree on length and SHA-256, the
image path and the release target both name ``c`` and ``e``, and
``custom.release`` is not below the highest counter it applied. The sealer
applies the same rule to the evidence an agent shows it (format at the end of
this module).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re

from securesystemslib.formats import encode_canonical
from tuf.api.metadata import DelegatedRole
from tuf.api.serialization import json as tuf_json

from skerry.core import documents
from skerry.core.errors import InvalidInput, VerificationError

DIRECTOR_ROLE = "director"
RELEASE_PREFIX = "release-"
CLUSTER_PREFIX = "cluster-"  # per-cluster director roles of repositories made before hash bins
CLUSTER_BIN_PREFIX = "clusters-"
BIN_HEX = 2  # hash prefixes are 2 hex digits ...
BIN_WIDTH = 4  # ... and a bin takes 4 consecutive ones: 64 bins, named by the first (00, 04, ..., fc)
CLUSTER_BIN_HEX = BIN_HEX  # (kept for readers of the name)
RELEASE_BIN_PREFIX = "releases-"  # releases-<env>-<hh>: never equal to a release-<env> role name

# A cluster/environment name: a DNS label (what the fleet file and certificates allow).
NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^{NAME}$")
# A target's file under its consistent-snapshot name (``<dir>/<sha256>.<basename>``), as a stock
# TUF client with the default ``prefix_targets_with_hash`` asks for it.
_RELEASE_FILE = re.compile(
    rf"^releases/(?P<env>{NAME})/(?P<cluster>{NAME})/(?P<prefix>[0-9a-f]{{64}})\.(?P<hex>[0-9a-f]{{64}})\.json$")
_DIRECTOR_FILE = re.compile(rf"^clusters/(?P<cluster>{NAME})/(?P<hex>[0-9a-f]{{64}})\.bundle\.json$")
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
    return bin_of(director_path(cluster))


def delegated_cluster_role(director: dict, cluster: str) -> str | None:
    """The role a director document (parsed JSON) delegates ``cluster``'s pointer to, as TUF walks: first match."""
    return delegated_role(director, director_path(cluster))


def delegated_role(doc: dict, path: str) -> str | None:
    """The first role a targets document (parsed JSON) delegates ``path`` to, as TUF walks; ``None`` if none."""
    for role in ((doc.get("signed", {}).get("delegations") or {}).get("roles")) or []:
        if DelegatedRole.from_dict(dict(role)).is_delegated_path(path):
            return role["name"]
    return None


def release_bin(env: str, path: str) -> str:
    """The ``release-<env>`` hash bin holding release target ``path`` (TUF ``path_hash_prefixes``)."""
    return f"{RELEASE_BIN_PREFIX}{env}-{bin_of(path)}"


def release_bin_names(env: str) -> list[str]:
    return [f"{RELEASE_BIN_PREFIX}{env}-{i:0{BIN_HEX}x}" for i in range(0, 16 ** BIN_HEX, BIN_WIDTH)]


@functools.lru_cache(maxsize=1 << 16)  # the hub looks each path up several times per release
def bin_of(path: str) -> str:
    """The name suffix of the bin whose ``path_hash_prefixes`` hold the TUF hash prefix of ``path``."""
    first = int(hashlib.sha256(path.encode()).hexdigest()[:BIN_HEX], 16)
    return f"{first - first % BIN_WIDTH:0{BIN_HEX}x}"


def bin_prefixes(name: str) -> list[str]:
    """The ``path_hash_prefixes`` of the bin named by its first prefix ``name``."""
    first = int(name, 16)
    return [f"{first + i:0{BIN_HEX}x}" for i in range(BIN_WIDTH)]


def is_release_bin(role: str) -> bool:
    return role.startswith(RELEASE_BIN_PREFIX)


def is_release_side(role: str) -> bool:
    """``release-<env>`` or one of its bins: a role the release keys sign."""
    return role.startswith(RELEASE_PREFIX) or is_release_bin(role)


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


def consistent_name(path: str, hexdigest: str) -> str:
    """``path``'s file under its consistent-snapshot name: ``<dir>/<sha256>.<basename>``."""
    directory, _, base = path.rpartition("/")
    return f"{directory}/{hexdigest}.{base}"


def parse_target_file(path: str) -> tuple[str, str, str, str] | None:
    """``(target path, env, cluster, sha256 hex)`` of a bundle file the repository serves (below ``targets/``):
    a release path, its consistent-snapshot name, or that of a director target; else ``None``.
    ``env`` is ``""`` for a director target."""
    if m := _RELEASE_PATH.match(path):
        return path, m["env"], m["cluster"], m["hex"]
    if (m := _RELEASE_FILE.match(path)) and m["prefix"] == m["hex"]:
        return release_path(m["env"], m["cluster"], m["hex"]), m["env"], m["cluster"], m["hex"]
    if m := _DIRECTOR_FILE.match(path):
        return director_path(m["cluster"]), "", m["cluster"], m["hex"]
    return None


def target_cluster(path: str) -> str | None:
    """The cluster whose bundle a fetch path (``targets/...``) names; ``None`` for metadata."""
    parsed = parse_target_file(path.removeprefix("targets/")) if path.startswith("targets/") else None
    return parsed[2] if parsed else None


def safe_fetch_path(path: str) -> bool:
    """Whether ``path`` names a metadata file or a bundle file (never ``..``, ``/x``, ``\\``)."""
    if path.startswith("metadata/"):
        return bool(_METADATA_NAME.match(path[len("metadata/"):]))
    if path.startswith("targets/"):
        return parse_target_file(path[len("targets/"):]) is not None
    return False


def fetch_cap(path: str) -> int:
    if path == "metadata/timestamp.json":
        return MAX_TIMESTAMP_BYTES
    if path.startswith("metadata/"):
        return MAX_METADATA_BYTES
    return MAX_BLOB_BYTES


# --- canonical JSON for TUF signatures -------------------------------------------------------


def _olpc_canonical(value) -> str:
    """OLPC canonical JSON (what TUF signs) of parsed metadata, through the C JSON encoder.

    Canonical JSON is ``json.dumps`` with sorted keys and no whitespace, except that it escapes
    only ``"`` and ``\\`` where ``json.dumps`` also escapes control characters, and it refuses
    floats. Both outputs are identical whenever the text has no backslash (a ``"`` or ``\\`` in a
    string, or a control character) — otherwise securesystemslib's own encoder is used. A float
    (never in metadata Skerry or any TUF signer writes) would be encoded instead of refused, and
    no signature over it can verify. securesystemslib's pure-Python encoder was 2/3 of a TUF
    refresh at 10,000 clusters (bench/fleet.py profile).
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if "\\" in text:
        return encode_canonical(value)
    return text


def use_fast_canonical_json() -> None:
    """Make python-tuf's signature payloads (``Metadata.signed_bytes``) use ``_olpc_canonical``.

    python-tuf's ``CanonicalJSONSerializer`` calls its module's ``encode_canonical``; the bytes
    it produces are unchanged (see ``_olpc_canonical``), only faster. Called by every service that
    signs or verifies TUF metadata (hub repository, agent, sealer); idempotent.
    """
    tuf_json.encode_canonical = _olpc_canonical


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
    return json.dumps({EVIDENCE_MARK: 1, "files": {k: base64.b64encode(v).decode() for k, v in sorted(files.items())}},
                      separators=(",", ":")).encode()


def is_evidence(data: bytes) -> bool:
    return data[:64].lstrip().startswith(b'{"' + EVIDENCE_MARK.encode())


def decode_evidence(data: bytes) -> dict[str, bytes]:
    """The metadata files of an evidence document; ``InvalidInput`` naming what is wrong."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise InvalidInput(f"trust evidence is {len(data)} bytes, over {MAX_EVIDENCE_BYTES}")
    try:
        doc = documents.load_json(data, max_bytes=MAX_EVIDENCE_BYTES)
    except documents.BadDocument as e:
        raise InvalidInput(f"trust evidence is not JSON: {e}", reason=e.reason) from e
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
