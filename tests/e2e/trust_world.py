"""A real trust repository (made by ``skerry.hub.trust``) plus the tools an attacker would have.

``TrustWorld`` owns every key (online and offline), so each test can play a
given attacker: someone holding the hub's online keys (director, snapshot,
timestamp), someone holding one release key, or a mirror with no keys that
replays or withholds files. ``files()`` is what a hub would serve; tests
tamper with a copy and hand it to ``ReplayHub.trust_files``.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, TargetFile

from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_hex
from skerry.hub.trust import admin
from skerry.hub.trust import keys as keyfiles
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository


def bundle_bytes(cluster: str, namespace: str, value: str, revision: str = "a" * 40) -> bytes:
    objects = (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "marker", "namespace": namespace},
         "data": {"value": value}},
    )
    return Bundle(cluster, revision, "file:///fleet", ("overlays/x",), "kustomize", "test", objects).encode()


class TrustWorld:
    def __init__(self, directory: pathlib.Path, *, expiry: dict | None = None):
        self.dir = directory
        self.expiry = expiry
        self.made = admin.init(directory, {"dev": (1, 1), "prod": (3, 2)}, expiry=expiry)
        self.repo = self.open()
        self.release_counter = 100

    def open(self) -> TrustRepository:
        return TrustRepository.open(self.dir, release_keys=[("dev", self.made["release-dev"][0])], expiry=self.expiry)

    @property
    def root(self) -> pathlib.Path:
        return self.dir / "root.json"

    def key(self, role: str, i: int = 0):
        return keyfiles.load_signer(self.made[role][i])

    # --- legitimate operations ------------------------------------------------------------

    def release_prod(self, cluster: str, data: bytes, signers) -> None:
        md = self.repo.release_proposal("prod", cluster, data, "a" * 40)
        for s in signers:
            md.sign(s, append=True)
        self.repo.submit_release("release-prod", md.to_bytes(_SERIALIZER))

    def publish(self, cluster: str, env: str, data: bytes, *, release: int | None = None):
        if release is None:
            self.release_counter += 1
            release = self.release_counter
        return self.repo.direct(cluster, env, data, revision="a" * 40, release=release)

    def files(self) -> dict[str, bytes]:
        """Every file the hub serves: metadata, and each released bundle under its target path
        (the repository keeps one blob per bundle; ``fetch`` serves it at every release path)."""
        base = self.dir / "repository" / "metadata"
        out = {f"metadata/{p.name}": p.read_bytes() for p in base.glob("*.json") if not p.name.startswith(".")}
        for role, md in self.repo.md.items():
            if role.startswith(trust.RELEASE_PREFIX) or trust.is_release_bin(role):
                for path in md.signed.targets:
                    out[f"targets/{path}"] = self.repo.fetch(f"targets/{path}")
        return out

    # --- attacker tools -------------------------------------------------------------------

    def latest(self, files: dict[str, bytes], role: str) -> Metadata:
        if role == "timestamp":
            return Metadata.from_bytes(files["metadata/timestamp.json"])
        versions = [int(p.split("/")[1].split(".")[0]) for p in files
                    if p.startswith("metadata/") and p.endswith(f".{role}.json") and p.split("/")[1][0].isdigit()]
        return Metadata.from_bytes(files[f"metadata/{max(versions)}.{role}.json"])

    def put(self, files: dict[str, bytes], role: str, md: Metadata, *signers) -> None:
        if signers:
            md.signatures.clear()
            for s in signers:
                md.sign(s, append=True)
        name = "timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json"
        files[f"metadata/{name}"] = md.to_bytes(_SERIALIZER)

    def recommit(self, files: dict[str, bytes], meta: dict[str, int] | None = None, *, ts_version: int | None = None,
                 snapshot_signer=None, timestamp_signer=None) -> None:
        """New snapshot (+ timestamp) signed with the hub's online keys, with ``meta`` overriding versions."""
        snap = self.latest(files, "snapshot")
        for role, version in (meta or {}).items():
            snap.signed.meta[f"{role}.json"] = MetaFile(version=version)
        snap.signed.version += 1
        self.put(files, "snapshot", snap, snapshot_signer or self.key("snapshot"))
        ts = self.latest(files, "timestamp")
        ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
        ts.signed.version = ts_version or ts.signed.version + 1
        self.put(files, "timestamp", ts, timestamp_signer or self.key("timestamp"))

    def director_role(self, cluster: str) -> str:
        """The director bin listing ``cluster``'s current bundle."""
        return trust.director_bin(self.repo.directed(cluster).path)

    def evil_direct(self, files: dict[str, bytes], cluster: str, data: bytes, *, path: str | None = None,
                    release: int = 10_000, blob_env: str = "dev") -> None:
        """What a compromised hub can do alone: make the director name ``path`` (by default ``data``'s
        release path for ``cluster``) instead of the cluster's current bundle."""
        path = path or trust.release_path(blob_env, cluster, sha256_hex(data))
        if trust.parse_release_path(path):
            files[f"targets/{path}"] = data
        changed: dict[str, Metadata] = {}
        current = self.repo.directed(cluster)
        if current is not None:
            changed[trust.director_bin(current.path)] = md = self.latest(files, trust.director_bin(current.path))
            md.signed.targets.pop(current.path, None)
        role = trust.director_bin(path)
        md = changed.setdefault(role, self.latest(files, role))
        pointer = TargetFile.from_data(path, data, ["sha256"])
        pointer.unrecognized_fields["custom"] = {"release": release, "revision": "e" * 40}
        md.signed.targets[path] = pointer
        for name, md in changed.items():
            md.signed.version += 1
            self.put(files, name, md, self.key("director"))
        self.recommit(files, {name: md.signed.version for name, md in changed.items()})


def evil_key() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def expires_in(seconds: float) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).replace(microsecond=0)


def dumps(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
