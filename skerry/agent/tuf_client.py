"""The agent as a TUF client: a stock python-tuf ``Updater`` over the hub's TrustService.

``GrpcFetcher`` implements only ``FetcherInterface._fetch(url)``: URLs are
``skerry:/metadata/<file>`` and ``skerry:/targets/<path>``; a missing file
(gRPC NOT_FOUND) is a 404 ``DownloadHTTPError`` so root rotation stops at
the newest root; every fetch is capped (``skerry.core.trust.fetch_cap``).

``TufVerifier.update`` runs one TUF client workflow (root chain, timestamp,
snapshot, targets, delegations — python-tuf does all of it and persists the
trusted metadata under ``<state_dir>/tuf``), then applies the Uptane rule:
the director's ``cluster-<name>`` target and the ``release-<env>`` target it
names must agree on length and SHA-256, name this cluster and environment,
and carry a release counter not below the highest one applied (persisted in
``<state_dir>/trust-state.json``). Any refusal is a ``VerificationError``
whose ``reason`` names the attack class (see ``classify``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pathlib
import re
import threading
from collections.abc import Iterator

import grpc
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from skerry.agent._files import atomic_write, ensure_dir
from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import trust
from skerry.core.bundle import Bundle, VerifiedBundle
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, InvalidInput, Unavailable, VerificationError
from skerry.core.tls import TlsFiles, channel_credentials

STATE_FILE = "trust-state.json"
FETCH_TIMEOUT = 30.0  # seconds for one file; the largest (a 12 MiB blob) takes well under a second on a LAN
URL_PREFIX = "skerry:/"


class GrpcFetcher(FetcherInterface):
    """python-tuf fetcher over ``TrustService.Fetch`` (blocking; one channel per fetcher)."""

    def __init__(self, address: str, tls_files: TlsFiles | None = None, *, channel: grpc.Channel | None = None,
                 timeout: float = FETCH_TIMEOUT):
        self._channel = channel or grpc.secure_channel(address, channel_credentials(tls_files))
        self._stub = trust_pb2_grpc.TrustServiceStub(self._channel)
        self._timeout = timeout
        self.last_path = ""

    def close(self) -> None:
        self._channel.close()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(URL_PREFIX):
            raise tuf_errors.DownloadError(f"not a skerry trust URL: {url}")
        path = url[len(URL_PREFIX):]
        self.last_path = path
        if not trust.safe_fetch_path(path):
            raise tuf_errors.DownloadHTTPError(f"refusing to fetch {path!r}: not a repository path", 404)
        cap = trust.fetch_cap(path)
        return self._chunks(path, cap)

    def _chunks(self, path: str, cap: int) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in self._stub.Fetch(trust_pb2.FetchRequest(path=path), timeout=self._timeout):
                if chunk.total_size > cap:
                    raise tuf_errors.DownloadLengthMismatchError(
                        f"{path}: the hub announces {chunk.total_size} bytes, over the {cap} byte cap")
                received += len(chunk.data)
                if received > cap:
                    raise tuf_errors.DownloadLengthMismatchError(f"{path}: more than the {cap} byte cap")
                yield chunk.data
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise tuf_errors.DownloadHTTPError(f"{path}: {e.details()}", 404) from e
            raise tuf_errors.DownloadError(f"{path}: {e.code().name}: {e.details()}") from e


_ROOT_FILE = re.compile(r"^metadata/\d+\.root\.json$")


def classify(error: Exception, last_path: str = "") -> tuple[str, str]:
    """``(attack class, message)`` for an error of python-tuf's client workflow."""
    msg = str(error) or type(error).__name__
    if isinstance(error, tuf_errors.ExpiredMetadataError):
        return "Freeze", f"trusted metadata expired ({msg}): indefinite-freeze protection"
    if isinstance(error, tuf_errors.DownloadLengthMismatchError):
        return "EndlessData", f"{last_path}: {msg}"
    if isinstance(error, tuf_errors.UnsignedMetadataError):
        if _ROOT_FILE.match(last_path):
            return "BadRootChain", f"{last_path} is not signed by the previous and its own root threshold: {msg}"
        return "BadSignature", f"{last_path}: signature threshold not met (forged, or keys below threshold): {msg}"
    if isinstance(error, tuf_errors.BadVersionNumberError):
        if "root version" in msg:
            return "BadRootChain", f"{last_path}: {msg}"
        if "must be >=" in msg or re.search(r"Expected \S+\.json version", msg):
            return "Rollback", f"{last_path}: {msg}"
        return "MixAndMatch", f"{last_path}: version does not match the snapshot/timestamp: {msg}"
    if isinstance(error, tuf_errors.LengthOrHashMismatchError):
        return "MixAndMatch", f"{last_path}: does not match the length/hash the snapshot/timestamp signed: {msg}"
    if isinstance(error, tuf_errors.RepositoryError):
        return "MalformedMetadata", f"{last_path}: {msg}"
    return "VerificationFailed", f"{last_path}: {type(error).__name__}: {msg}"


@dataclasses.dataclass(frozen=True)
class TrustState:
    release: int = 0
    digest: str = ""
    valid_until: str = ""


class TufVerifier:
    """Verify what the director says this cluster runs; keeps TUF metadata and the release counter on disk."""

    def __init__(self, cluster: str, environment: str, trust_root: str | os.PathLike, state_dir: str | os.PathLike,
                 fetcher_factory, clock: Clock | None = None):
        if not trust.valid_name(cluster) or not trust.valid_name(environment):
            raise ConfigError(f"cluster {cluster!r} and environment {environment!r} must be DNS labels")
        self.cluster = cluster
        self.environment = environment
        self._clock = clock or SystemClock()
        self._fetcher_factory = fetcher_factory
        self.state_dir = pathlib.Path(state_dir)
        self.metadata_dir = self.state_dir / "tuf" / "metadata"
        self.targets_dir = self.state_dir / "tuf" / "targets"
        self.provenance_dir = self.state_dir / "provenance"
        self._path = self.state_dir / STATE_FILE
        self._lock = threading.Lock()
        ensure_dir(self.metadata_dir)
        ensure_dir(self.targets_dir)
        self._bootstrap: bytes | None = None
        if not (self.metadata_dir / "root.json").exists():
            try:
                self._bootstrap = pathlib.Path(trust_root).read_bytes()
            except OSError as e:
                raise ConfigError(f"cannot read the trust root {trust_root}: {e.strerror}") from e
        self._state = self._load()

    # the Verifier interface the app uses ----------------------------------------------------

    @property
    def last_release(self) -> int:
        return self._state.release

    @property
    def last_digest(self) -> str:
        return self._state.digest

    @property
    def valid_until(self) -> _dt.datetime | None:
        return _dt.datetime.fromisoformat(self._state.valid_until) if self._state.valid_until else None

    def verify_message(self, signed) -> VerifiedBundle | None:
        """A WatchBundles event is only a hint to refresh: fetch and verify what the director says."""
        return self.update()

    def update(self) -> VerifiedBundle | None:
        """One TUF refresh; the newly directed bundle, or ``None`` if it is the one already applied."""
        with self._lock:
            fetcher = self._fetcher_factory()
            try:
                return self._update(fetcher)
            except VerificationError:
                raise
            except tuf_errors.DownloadError as e:
                if isinstance(e, tuf_errors.DownloadLengthMismatchError):
                    reason, msg = classify(e, fetcher.last_path)
                    raise VerificationError(msg, reason=reason) from e
                raise Unavailable(f"cannot reach the hub's trust service: {e}") from e
            except (tuf_errors.RepositoryError, ValueError) as e:
                reason, msg = classify(e, getattr(fetcher, "last_path", ""))
                raise VerificationError(msg, reason=reason) from e
            finally:
                close = getattr(fetcher, "close", None)
                if close is not None:
                    close()

    def _update(self, fetcher) -> VerifiedBundle | None:
        updater = Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=f"{URL_PREFIX}metadata/",
            target_dir=str(self.targets_dir),
            target_base_url=f"{URL_PREFIX}targets/",
            fetcher=fetcher,
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=self._bootstrap,
        )
        self._bootstrap = None
        updater.refresh()
        directed = updater.get_targetinfo(trust.director_path(self.cluster))
        if directed is None:
            raise VerificationError(f"the director names no bundle for {self.cluster}", reason="NotDirected")
        custom = directed.custom if isinstance(directed.custom, dict) else {}
        image, release = custom.get("image"), custom.get("release")
        if not isinstance(image, str) or not isinstance(release, int) or isinstance(release, bool):
            raise VerificationError("director target lacks custom.image/custom.release", reason="MalformedMetadata")
        parsed = trust.parse_release_path(image)
        if parsed is None:
            raise VerificationError(f"director names target {image[:200]!r}: not a release path", reason="PathTraversal")
        env, cluster, _hex = parsed
        if cluster != self.cluster:
            raise VerificationError(f"director points {self.cluster} at a bundle of {cluster}", reason="WrongCluster")
        if env != self.environment:
            raise VerificationError(f"director points {self.cluster} ({self.environment}) at a {env} release",
                                    reason="WrongEnvironment")
        released = updater.get_targetinfo(image)
        if released is None:
            raise VerificationError(
                f"{image} is not signed by release-{env}: the director alone cannot ship a bundle",
                reason="NotReleased")
        if released.length != directed.length or released.hashes != directed.hashes:
            raise VerificationError("director and release disagree on the bundle's length/hash",
                                    reason="DirectorReleaseMismatch")
        rcustom = released.custom if isinstance(released.custom, dict) else {}
        if rcustom.get("cluster") != self.cluster or rcustom.get("environment") != env:
            raise VerificationError(f"release target is for {rcustom.get('cluster')!r}", reason="WrongCluster")
        digest = "sha256:" + str(released.hashes.get("sha256", ""))
        if release < self._state.release:
            raise VerificationError(
                f"director release {release} is below the applied release {self._state.release} "
                "(metadata is fresh, the release counter is not)", reason="ReleaseRollback")
        if release == self._state.release and digest != self._state.digest:
            raise VerificationError(f"release {release} was already applied with another bundle",
                                    reason="MixAndMatch")
        self._parsed: dict[str, Metadata | None] = {}
        # every role this refresh trusted (root, timestamp, snapshot, targets, director, cluster-*, release-*)
        horizon = min(signed.expires for signed in updater._trusted_set)
        if release == self._state.release:
            self._save(TrustState(release, digest, horizon.isoformat()))
            return None
        filepath = str(self.targets_dir / f"{sha256_hex(image.encode())}.json")
        path = updater.find_cached_target(released, filepath) or updater.download_target(released, filepath)
        raw = pathlib.Path(path).read_bytes()  # python-tuf checked its length and SHA-256 against `released`
        if len(raw) != released.length:
            raise VerificationError("downloaded bundle does not match its signed length", reason="HashMismatch")
        try:
            bundle = Bundle.decode(raw)
        except InvalidInput as e:
            raise VerificationError(f"signed bundle is malformed: {e}", reason="MalformedBundle") from e
        if bundle.cluster != self.cluster:
            raise VerificationError(f"bundle document names cluster {bundle.cluster!r}", reason="WrongCluster")
        self._targets = updater._trusted_set.targets
        provenance = self._provenance(env, image, release, digest, bundle)
        data = json.dumps(provenance, sort_keys=True, indent=2).encode() + b"\n"
        atomic_write(self.provenance_dir / f"{digest.split(':')[1]}.json", data)
        self._save(TrustState(release, digest, horizon.isoformat()))
        for old in self.targets_dir.glob("*.json"):  # keep only the applied blob
            if str(old) != path:
                old.unlink(missing_ok=True)
        return VerifiedBundle(bundle=bundle, release=release, digest=digest, expires=horizon, metadata=data, raw=raw)

    def reverify(self, metadata: bytes, bundle_bytes: bytes) -> tuple[VerifiedBundle, bool]:
        """A cached bundle is re-applied only if it is the one the persisted state says was verified."""
        digest = sha256_digest(bundle_bytes)
        if not self._state.digest or digest != self._state.digest:
            raise VerificationError("cached bundle is not the last verified one", reason="HashMismatch")
        bundle = Bundle.decode(bundle_bytes)
        until = self.valid_until or self._clock.now()
        return (VerifiedBundle(bundle=bundle, release=self._state.release, digest=digest, expires=until,
                               metadata=metadata, raw=bundle_bytes), self._clock.now() >= until)

    # --- helpers ----------------------------------------------------------------------------

    def _trusted(self, role: str) -> Metadata | None:
        """The trusted metadata python-tuf persisted for ``role`` (parsed once per update)."""
        from urllib import parse

        cache = getattr(self, "_parsed", None)
        if cache is not None and role in cache:
            return cache[role]
        try:
            md = Metadata.from_bytes((self.metadata_dir / f"{parse.quote(role, '')}.json").read_bytes())
        except (OSError, ValueError, Exception):  # noqa: BLE001 - absent or unreadable: not part of the horizon
            md = None
        if cache is not None:
            cache[role] = md
        return md

    def _provenance(self, env: str, image: str, release: int, digest: str, bundle: Bundle) -> dict:
        def signers(role: str) -> list[str]:
            md = self._trusted(role)
            return sorted(md.signatures) if md else []

        rel = self._trusted(trust.release_role(env))
        threshold = 0
        if self._targets is not None and self._targets.delegations and self._targets.delegations.roles:
            d = self._targets.delegations.roles.get(trust.release_role(env))
            threshold = d.threshold if d else 0
        return {
            "cluster": self.cluster, "environment": env, "digest": digest, "release": release, "image": image,
            "director": {"role": trust.cluster_role(self.cluster), "signed_by": signers(trust.cluster_role(self.cluster)),
                         "version": (m.signed.version if (m := self._trusted(trust.cluster_role(self.cluster))) else 0)},
            "release_role": {"role": trust.release_role(env), "signed_by": signers(trust.release_role(env)),
                             "threshold": threshold, "version": rel.signed.version if rel else 0},
            "source": {"url": bundle.source_url, "revision": bundle.revision, "paths": list(bundle.paths)},
            "render": {"engine": bundle.engine, "version": bundle.engine_version},
        }

    def _load(self) -> TrustState:
        try:
            doc = json.loads(self._path.read_bytes())
        except FileNotFoundError:
            return TrustState()
        except (OSError, ValueError) as e:
            raise ConfigError(f"trust state {self._path} is unreadable ({e}); refusing to start without "
                              "rollback protection") from e
        if doc.get("cluster") != self.cluster:
            raise ConfigError(f"trust state {self._path} belongs to cluster {doc.get('cluster')!r}")
        return TrustState(int(doc["release"]), str(doc["digest"]), str(doc.get("valid_until", "")))

    def _save(self, state: TrustState) -> None:
        doc = {"cluster": self.cluster, **dataclasses.asdict(state)}
        try:
            atomic_write(self._path, json.dumps(doc, sort_keys=True).encode() + b"\n")
        except OSError as e:
            raise VerificationError(f"cannot persist trust state {self._path}: {e.strerror}",
                                    reason="StateNotPersisted") from e
        self._state = state

    def provenance(self, digest: str) -> dict | None:
        try:
            return json.loads((self.provenance_dir / f"{digest.split(':')[-1]}.json").read_text())
        except (OSError, ValueError):
            return None
