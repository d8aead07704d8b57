"""How the sealer decides which SealedSecrets a cluster's released bundle holds: its one trust module.

The sealer unseals for an agent only SealedSecrets that appear in a bundle
released for that agent's own cluster (the cluster is the agent's mTLS
common name, never a request field). So an agent, even a compromised one,
cannot get plaintext for a namespace, name or scope its cluster was not
given, and a relocated or renamed strict-scope secret fails. The rest of the
sealer sees only ``BundleTrust`` and ``BundleSecrets``; ``TufBundleTrust``
decides what was released, as follows.

An agent asks for a bundle's plaintext with the TUF metadata it trusted (the
evidence document of ``skerry.core.trust``) and the bundle bytes. The sealer
takes neither on faith: per cluster it keeps its own trusted metadata,
bootstrapped from the hub repository's ``root.json`` that the sealer's
operator configured (``--trust-root``), runs a stock ``ngclient.Updater``
whose fetcher can serve only the files the agent sent, and applies the
Uptane rule (``skerry.core.trust.director_says`` and ``release_agrees``): the director's
bin and the ``release-<env>`` bin must list the same target, the path
``releases/<env>/<cluster>/<sha256>.json`` of the bundle it was handed (``<env>`` named
by the evidence's ``release-<env>`` file, ``<cluster>`` by the agent's certificate). So:

* a compromised hub alone (the director's online key) cannot make the sealer
  unseal a SealedSecret that no release key signed;
* an agent — even a compromised one — gets plaintext only for SealedSecrets of
  a bundle released for its own cluster (its mTLS name, never a request field);
* a replayed older bundle fails: the sealer's per-cluster TUF metadata and
  release counter only move forward (persisted under ``<trust state dir>/<cluster>/``).

Root rotation: the evidence carries the agent's newest ``root.json``; the
sealer follows it when it is the next version of the root it trusts (python-tuf
verifies it with both thresholds). A rotation by more than one version while
no agent of that cluster asked is refused until the operator refreshes
``--trust-root``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from skerry.core import documents, sealedsecret, trust
from skerry.core.bundle import decode_signed
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.errors import ConfigError, InvalidInput, VerificationError
from skerry.core.files import atomic_write

# More SealedSecrets than this in one bundle is a mistake or an attack (each costs RSA work).
MAX_BUNDLE_SECRETS = 5000


@dataclasses.dataclass(frozen=True)
class BundleSecret:
    """One SealedSecret as the verified bundle states it."""

    namespace: str
    name: str
    scope: str
    domain: str  # "" when the SealedSecret names none
    key_hint: str
    encrypted_data: Mapping[str, str] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class BundleSecrets:
    cluster: str
    release: int
    secrets: tuple[BundleSecret, ...]


class BundleTrust(Protocol):
    def verify(self, metadata: bytes, bundle: bytes, *, cluster: str) -> BundleSecrets:
        """The SealedSecrets of a bundle signed for ``cluster``; raises ``VerificationError``."""
        ...


def secrets_of(objects: Sequence[Mapping[str, Any]]) -> tuple[BundleSecret, ...]:
    """Every SealedSecret among bundle objects, with its scope read from its own annotations."""
    out: list[BundleSecret] = []
    for obj in objects:
        if not sealedsecret.is_sealed_secret(obj):
            continue
        if len(out) >= MAX_BUNDLE_SECRETS:
            raise InvalidInput(f"the bundle has more than {MAX_BUNDLE_SECRETS} SealedSecrets")
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        spec = obj.get("spec") or {}
        encrypted = spec.get("encryptedData") or {}
        if not isinstance(annotations, Mapping) or not isinstance(encrypted, Mapping):
            encrypted, annotations = {}, {}
        out.append(
            BundleSecret(
                namespace=str(meta.get("namespace") or sealedsecret.DEFAULT_NAMESPACE),
                name=str(meta.get("name") or ""),
                scope=sealedsecret.scope_from_annotations(annotations),
                domain=str(annotations.get(sealedsecret.ANNOTATION_DOMAIN) or ""),
                key_hint=str(annotations.get(sealedsecret.ANNOTATION_KEY_ID) or ""),
                encrypted_data={str(k): v for k, v in encrypted.items() if isinstance(v, str)},
            )
        )
    return tuple(out)


URL_PREFIX = "skerry:/"
STATE_FILE = "release.json"
_VERSIONED = re.compile(r"^metadata/(?P<v>[1-9][0-9]{0,19})\.(?P<role>[a-z0-9-]+)\.json$")


def _version(data: bytes) -> int | None:
    try:
        v = documents.load_json(data, max_bytes=trust.MAX_METADATA_BYTES)["signed"]["version"]
    except (ValueError, KeyError, TypeError):
        return None
    return v if isinstance(v, int) else None


def _environment(files: Mapping[str, bytes]) -> str:
    """The environment whose ``release-<env>`` role the evidence shows (exactly one)."""
    envs = [name[len(trust.RELEASE_PREFIX):-len(".json")] for name in files if name.startswith(trust.RELEASE_PREFIX)]
    if len(envs) != 1 or not trust.valid_name(envs[0]):
        raise VerificationError(f"trust evidence must show one release-<env> role, not {len(envs)}",
                                reason="MalformedMetadata")
    return envs[0]


class EvidenceFetcher(FetcherInterface):
    """Serves python-tuf only what the agent sent: a missing file is a 404 (root rotation stops)."""

    def __init__(self, files: Mapping[str, bytes], bundle: bytes):
        self._files = files
        self._bundle = bundle

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = url[len(URL_PREFIX):] if url.startswith(URL_PREFIX) else url
        if path == "metadata/timestamp.json" and "timestamp.json" in self._files:
            return iter([self._files["timestamp.json"]])
        m = _VERSIONED.match(path)
        if m:
            data = self._files.get(f"{m['role']}.json")
            if data is not None and _version(data) == int(m["v"]):
                return iter([data])
        elif path.startswith("targets/") and trust.parse_target_file(path[len("targets/"):]):
            return iter([self._bundle])
        raise tuf_errors.DownloadHTTPError(f"{path}: not in the agent's evidence", 404)


class TufBundleTrust:
    """``BundleTrust`` over TUF evidence; one trusted-metadata directory per cluster."""

    def __init__(self, trust_root: pathlib.Path, state_dir: pathlib.Path):
        trust.use_fast_canonical_json()
        try:
            self._root = pathlib.Path(trust_root).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the TUF trust root {trust_root}: {e.strerror}") from e
        self._state = pathlib.Path(state_dir)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, cluster: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(cluster, threading.Lock())

    def verify(self, metadata: bytes, bundle: bytes, *, cluster: str) -> BundleSecrets:
        if not trust.valid_name(cluster):
            raise VerificationError(f"caller {cluster!r} is not a cluster name", reason="WrongCluster")
        try:
            files = trust.decode_evidence(metadata)
        except InvalidInput as e:
            raise VerificationError(str(e), reason="MalformedMetadata") from e
        with self._lock(cluster):
            return self._verify(files, bundle, cluster)

    def _verify(self, files: Mapping[str, bytes], bundle: bytes, cluster: str) -> BundleSecrets:
        base = self._state / cluster
        metadata_dir = base / "metadata"
        metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        bootstrap = None if (metadata_dir / "root.json").exists() else self._root
        try:
            updater = Updater(
                metadata_dir=str(metadata_dir),
                metadata_base_url=f"{URL_PREFIX}metadata/",
                target_base_url=f"{URL_PREFIX}targets/",
                fetcher=EvidenceFetcher(files, bundle),
                config=UpdaterConfig(prefix_targets_with_hash=False),
                bootstrap=bootstrap,
            )
            updater.refresh()
            path = trust.release_path(_environment(files), cluster, sha256_hex(bundle))
            directed, released, _roles = trust.lookup(updater, metadata_dir, path)
            env, release = trust.director_says(cluster, None, path, directed)
            digest = trust.release_agrees(cluster, env, path, directed, released)
            released.verify_length_and_hashes(bundle)
        except VerificationError:
            raise
        except tuf_errors.LengthOrHashMismatchError as e:
            raise VerificationError(f"bundle does not match its signed length/hash: {e}", reason="HashMismatch") from e
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, ValueError) as e:
            raise VerificationError(f"TUF evidence of {cluster} refused: {type(e).__name__}: {e}",
                                    reason=type(e).__name__) from e
        if sha256_digest(bundle) != digest:
            raise VerificationError("bundle does not match its signed hash", reason="HashMismatch")
        last_release, last_digest = self._last(base)
        if release < last_release:
            raise VerificationError(f"release {release} is below release {last_release} already seen for {cluster}",
                                    reason="ReleaseRollback")
        if release == last_release and digest != last_digest:
            raise VerificationError(f"release {release} was already seen with another bundle", reason="MixAndMatch")
        decoded = decode_signed(bundle, cluster, shared=True)  # the signed release target names the cluster
        if release > last_release:
            self._save(base, release, digest)
        return BundleSecrets(cluster, release, secrets_of(decoded.objects))

    @staticmethod
    def _last(base: pathlib.Path) -> tuple[int, str]:
        try:
            doc = documents.load_json((base / STATE_FILE).read_bytes(), max_bytes=documents.MAX_STATE_FILE_BYTES)
            return int(doc["release"]), str(doc["digest"])
        except FileNotFoundError:
            return 0, ""
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise VerificationError(f"release state {base / STATE_FILE} is unreadable ({e}); refusing to unseal "
                                    "without rollback protection", reason="StateNotPersisted") from e

    @staticmethod
    def _save(base: pathlib.Path, release: int, digest: str) -> None:
        atomic_write(base / STATE_FILE, json.dumps({"release": release, "digest": digest}).encode())
