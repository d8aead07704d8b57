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
      ├── director            hub online key; paths releases/*/*/*; listed first, not terminating
      │     └── clusters-<hh>   64 hash bins, path_hash_prefixes <hh>..<hh+3>: which bundle each cluster runs
      └── release-<env>       the env's release keys, threshold t; paths releases/<env>/*/*; holds no targets
            └── releases-<env>-<hh>   64 hash bins, same keys and threshold: what a bundle is

Both sides are standard TUF hash-bin delegations (``path_hash_prefixes`` of 2
hex digits, 4 per bin: ``bin_of``), so the director, each ``release-<env>`` and
the snapshot stay bounded (64 entries a side) however large the fleet. A
director bin is delegated (online key) when a target first falls in it.
``release-<env>`` — the 64 bin delegations, naming the env's release keys and
threshold — and its 64 bins, empty, are signed by those keys once, offline, when
the environment is made (``skerry keys init``; ``skerry keys add``/``revoke`` on
a release role sign its next version), so every bin a client may walk into
exists (an image nobody released is ``NotReleased``, not a missing role); a
release then changes and re-signs only the one bin holding it (``skerry keys
sign`` in CI, or the hub itself for environments whose keys it holds:
``--release-keys``, ``skerry keys init --dev``). An environment added later
with ``skerry keys add`` gets an unbinned ``release-<env>`` (its targets in the
role itself). Expiry: timestamp 1 d, snapshot/director/bins 7 d (re-signed
online at half-life), release bins 90 d, ``release-<env>``/targets/root 365 d.

One target, named by both sides (as Uptane's director and image repositories
name the same image)::

    releases/<env>/<cluster>/<sha256 hex>.json
        release bin releases-<env>-<hh>   custom {cluster, environment, revision}
        director bin clusters-<hh>        custom {release, revision[, number, render]}

The same path, length and SHA-256 in both; only ``custom`` differs. The
director lists exactly one path per cluster — its current bundle — and drops
the previous one when it moves the cluster on; ``release`` is the cluster's
release counter (never goes down), ``number`` the release number people read
(``skerry.core.release_number``: display only, never compared), ``render`` the engine and version that
rendered it (provenance, outside the bundle's digest). A release bin keeps, per
cluster, the target the director names and the newest release; older ones drop
out when the bin is next signed.

Since a target's bin depends on its hash, a client finds its cluster's entry
by path: the hub's stream event names the bundle's SHA-256 (a hint, trusted for
nothing: a path the director does not list is never used), else the client
tries the path it applied last, else (the director moved on without it hearing)
it walks every director bin for paths of its cluster (``bin_probes``). python-tuf's
``get_targetinfo`` returns the first role in pre-order that lists a path, so
both entries are read from the roles its walk just verified (``lookup``).

Files (below ``repository/`` of the trust directory; served as they are over
``TrustService.Fetch`` or by any static file server)::

    metadata/<version>.<role>.json      every role but the timestamp (consistent snapshots):
                                        the current and the previous version (every root version)
    metadata/timestamp.json
    blobs/<sha256 hex>.json             each bundle once, however many clusters share it
    targets/releases/<env>/<cluster>/<sha256 hex>.<sha256 hex>.json
                                        every target of every role under its hash-prefixed name,
                                        a hard link to its blob (what a default TUF client fetches)

Files no role's current or previous version names are removed after each
commit (``skerry.hub.trust.storage``). ``TrustService.Fetch`` also serves a
target at its plain path. Bundle files go only to their own cluster's agent
(``target_cluster``) and operators; metadata (paths and hashes) is fleet-public.

The bundle (``skerry.core.bundle``): canonical JSON (sorted keys, no
whitespace, UTF-8) of ``{"apiVersion": "skerry.io/v1alpha1", "kind": "Bundle",
"cluster": <name, or "" for a blob shared by clusters built from the same
inputs>, "source": {"url", "revision", "paths"}, "objects": [...]}`` — what is
applied; its SHA-256 is what both sides sign. The signed release target binds
it to one cluster and environment.

The agreement rule: an agent of cluster ``c`` in environment ``e`` applies a
bundle only when the director and ``release-<e>`` both list its path
``releases/e/c/<sha256>.json`` with the same length and SHA-256 (the one in the
path), the release target names ``c`` and ``e``, and the director's
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
import pathlib
import re

from securesystemslib.formats import encode_canonical
from tuf.api.metadata import DelegatedRole, TargetFile
from tuf.api.serialization import json as tuf_json

from skerry.core import documents
from skerry.core.errors import InvalidInput, VerificationError

DIRECTOR_ROLE = "director"
RELEASE_PREFIX = "release-"
CLUSTER_BIN_PREFIX = "clusters-"
BIN_HEX = 2  # hash prefixes are 2 hex digits ...
BIN_WIDTH = 4  # ... and a bin takes 4 consecutive ones: 64 bins, named by the first (00, 04, ..., fc)
RELEASE_BIN_PREFIX = "releases-"  # releases-<env>-<hh>: never equal to a release-<env> role name

# A cluster/environment name: a DNS label (what the fleet file and certificates allow).
NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^{NAME}$")
# A target's file under its consistent-snapshot name (``<dir>/<sha256>.<basename>``), as a stock
# TUF client with the default ``prefix_targets_with_hash`` asks for it.
_RELEASE_FILE = re.compile(
    rf"^releases/(?P<env>{NAME})/(?P<cluster>{NAME})/(?P<prefix>[0-9a-f]{{64}})\.(?P<hex>[0-9a-f]{{64}})\.json$")
_RELEASE_PATH = re.compile(rf"^releases/(?P<env>{NAME})/(?P<cluster>{NAME})/(?P<hex>[0-9a-f]{{64}})\.json$")
_ROLE = rf"(?:root|snapshot|targets|director|release-{NAME}|clusters-[0-9a-f]{{1,8}}|releases-{NAME}-[0-9a-f]{{1,8}})"
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


def director_bin(path: str) -> str:
    """The director's hash bin that lists target ``path`` (TUF ``path_hash_prefixes``)."""
    return f"{CLUSTER_BIN_PREFIX}{bin_of(path)}"


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


def is_director_bin(role: str) -> bool:
    """A hash bin the director delegates (``clusters-<hh>``)."""
    return role.startswith(CLUSTER_BIN_PREFIX)


def release_path(env: str, cluster: str, hexdigest: str) -> str:
    return f"releases/{env}/{cluster}/{hexdigest}.json"


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
    a target path or its consistent-snapshot name; else ``None``."""
    if m := _RELEASE_PATH.match(path):
        return path, m["env"], m["cluster"], m["hex"]
    if (m := _RELEASE_FILE.match(path)) and m["prefix"] == m["hex"]:
        return release_path(m["env"], m["cluster"], m["hex"]), m["env"], m["cluster"], m["hex"]
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


def director_says(cluster: str, environment: str | None, path: str, directed) -> tuple[str, int]:
    """``(environment, release counter)`` of the director's verified target at ``path``.

    ``directed`` is the director's ``TargetFile`` at ``path`` (``None`` when it lists none).
    ``environment`` is the one the caller knows the cluster runs in; ``None`` (the sealer, which
    keeps no fleet file) takes it from the path, so the release side of *that* environment must
    still sign the content. Raises ``VerificationError`` whose ``reason`` names the attack class.
    """
    parsed = parse_release_path(path)
    if parsed is None:
        raise VerificationError(f"director names target {path[:200]!r}: not a release path", reason="PathTraversal")
    env, path_cluster, hexdigest = parsed
    if path_cluster != cluster:
        raise VerificationError(f"director points {cluster} at a bundle of {path_cluster}", reason="WrongCluster")
    if environment is not None and env != environment:
        raise VerificationError(f"director points {cluster} ({environment}) at a {env} release",
                                reason="WrongEnvironment")
    if directed is None:
        raise VerificationError(f"the director does not name {path} for {cluster}", reason="NotDirected")
    custom = directed.custom if isinstance(directed.custom, dict) else {}
    release = custom.get("release")
    if not isinstance(release, int) or isinstance(release, bool):
        raise VerificationError(f"director target {path} lacks custom.release", reason="MalformedMetadata")
    if directed.hashes.get("sha256") != hexdigest:
        raise VerificationError(f"director target {path} has another SHA-256 than its name", reason="HashMismatch")
    return env, release


def release_agrees(cluster: str, env: str, path: str, directed, released) -> str:
    """``"sha256:<hex>"`` if ``release-<env>``'s verified target at ``path`` is the director's.

    The Uptane rule: the director (online key) and the release side (offline/CI keys) name the
    same target — path, length and hash — and the release target names this cluster and
    environment, so neither alone can ship a bundle.
    """
    if released is None:
        raise VerificationError(f"{path} is not signed by release-{env}: the director alone cannot ship a bundle",
                                reason="NotReleased")
    if released.length != directed.length or released.hashes != directed.hashes:
        raise VerificationError("director and release disagree on the bundle's length/hash",
                                reason="DirectorReleaseMismatch")
    rcustom = released.custom if isinstance(released.custom, dict) else {}
    if rcustom.get("cluster") != cluster or rcustom.get("environment") != env:
        raise VerificationError(f"release target is for {rcustom.get('cluster')!r}", reason="WrongCluster")
    return "sha256:" + str(released.hashes.get("sha256", ""))


# --- finding both sides' entry for a path (agent and sealer walk the same way) -----------------------


@functools.lru_cache(maxsize=256)
def bin_probes(env: str, cluster: str) -> dict[str, str]:
    """bin name suffix -> a path under ``releases/<env>/<cluster>/`` that falls in that bin and that no
    role lists (not a release path): looking it up makes python-tuf walk (fetch and verify) the
    director bin and the ``release-<env>`` bin of every real path with that hash prefix."""
    probes: dict[str, str] = {}
    i = 0
    while len(probes) < 16 ** BIN_HEX // BIN_WIDTH:
        path = f"releases/{env}/{cluster}/probe-{i}.json"
        probes.setdefault(bin_of(path), path)
        i += 1
    return probes


def _walk(updater, env: str, cluster: str, bins) -> None:
    probes = bin_probes(env, cluster)
    for name in bins:
        if updater.get_targetinfo(probes[name]) is not None:
            raise VerificationError(f"a role lists {probes[name]}, which is no bundle", reason="MalformedMetadata")


def _trusted(metadata_dir, role: str, snapshot: dict) -> dict | None:
    """The role python-tuf just verified and persisted, checked against the trusted snapshot's hash."""
    meta = (snapshot.get("signed", {}).get("meta") or {}).get(f"{role}.json")
    if meta is None:
        return None
    try:
        raw = (pathlib.Path(metadata_dir) / f"{role}.json").read_bytes()
        doc = documents.load_json(raw, max_bytes=MAX_METADATA_BYTES)
    except (OSError, ValueError) as e:
        raise VerificationError(f"trusted {role} metadata is unreadable after a refresh: {e}",
                                reason="StateNotPersisted") from e
    want = (meta.get("hashes") or {}).get("sha256")
    if doc.get("signed", {}).get("version") != meta.get("version") or (want and hashlib.sha256(raw).hexdigest() != want):
        raise VerificationError(f"{role} on disk is not the version the snapshot names", reason="MixAndMatch")
    return doc


def _target(doc: dict | None, path: str):
    info = ((doc or {}).get("signed", {}).get("targets") or {}).get(path)
    return None if info is None else TargetFile.from_dict(dict(info), path)


def lookup(updater, metadata_dir, path: str) -> tuple[object, object, dict[str, str]]:
    """``(director's TargetFile, release side's TargetFile, {"director": bin, "release": role})`` at the
    release path ``path`` (either ``None`` if that side lists none), after ``updater.refresh()``.

    python-tuf returns only the first role that lists a path, so this makes it walk (fetch,
    check signatures, versions and expiry) both sides' bins of ``path`` with a probe, then
    reads the two entries from the files it persisted — each checked against the snapshot.
    """
    env, cluster, _hex = parse_release_path(path)
    _walk(updater, env, cluster, [bin_of(path)])
    metadata_dir = pathlib.Path(metadata_dir)
    snapshot = _load_snapshot(metadata_dir)
    director = _trusted(metadata_dir, DIRECTOR_ROLE, snapshot)
    bin_role = delegated_role(director or {}, path)
    env_doc = _trusted(metadata_dir, release_role(env), snapshot)
    holder = (delegated_role(env_doc, path) if env_doc else None) or release_role(env)
    probe = bin_probes(env, cluster)[bin_of(path)]
    if (bin_role and delegated_role(director, probe) != bin_role) or (
            env_doc and (delegated_role(env_doc, probe) or release_role(env)) != holder):
        raise VerificationError(f"the bins holding {path} are not standard hash bins", reason="MalformedMetadata")
    directed = _target(_trusted(metadata_dir, bin_role, snapshot), path) if bin_role else None
    released = _target(_trusted(metadata_dir, holder, snapshot) if env_doc else None, path)
    return directed, released, {"director": bin_role or "", "release": holder}


def scan(updater, metadata_dir, env: str, cluster: str) -> list[str]:
    """Every path of ``cluster`` in ``env`` the director lists, walking all its bins (after ``refresh``).

    The fallback when a client knows no path to look up: its cost grows with the fleet (every
    director bin), where ``lookup`` reads one bin a side.
    """
    _walk(updater, env, cluster, bin_probes(env, cluster))
    metadata_dir = pathlib.Path(metadata_dir)
    snapshot = _load_snapshot(metadata_dir)
    director = _trusted(metadata_dir, DIRECTOR_ROLE, snapshot) or {}
    found = []
    for role in ((director.get("signed", {}).get("delegations") or {}).get("roles")) or []:
        doc = _trusted(metadata_dir, role["name"], snapshot) or {}
        for path in (doc.get("signed", {}).get("targets") or {}):
            parsed = parse_release_path(path)
            if parsed and parsed[:2] == (env, cluster) and delegated_role(director, path) == role["name"]:
                found.append(path)
    return sorted(found)


def _load_snapshot(metadata_dir) -> dict:
    try:
        return documents.load_json((metadata_dir / "snapshot.json").read_bytes(), max_bytes=MAX_METADATA_BYTES)
    except (OSError, ValueError) as e:
        raise VerificationError(f"trusted snapshot is unreadable after a refresh: {e}",
                                reason="StateNotPersisted") from e


# --- evidence: the trusted metadata an agent hands the sealer with a bundle ---------------------
#
# Byte format (UTF-8 JSON, one object; the sealer verifies every file itself with its own root):
#   {"skerry-tuf-evidence": 1, "files": {"<role>.json": "<base64 of the metadata file>", ...}}
# roles: root, timestamp, snapshot, targets, director, its hash bin clusters-<hh> and release-<env>'s hash bin
# releases-<env>-<hh> listing the bundle's path, and release-<env>; nothing else. The sealer takes the
# environment from the release-<env> file's name and the path from the bundle's SHA-256.

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
