"""What a new hub's state directory starts from: ``skerry hub seed`` (the hub pod's init container).

Why: the hub keeps its enrollment CA, its token key and its TUF repository on its state volume and
changes them there (revocations, new metadata versions). ``skerry install`` makes them before the
hub exists, so it can issue operator certificates and bootstrap tokens at once, and hands them over
in one Secret (``skerry-hub-seed``), mounted read-only. This module copies them onto the state
volume once. It never writes over what the hub already has: a seed that differs from the hub's own
material is reported (one line) and left alone, since replacing the CA would lock out every
enrolled agent and replacing the trust directory would roll the hub's metadata back.

Seed directory (the Secret's keys, each a file)::

    enrollment-ca.crt, enrollment-ca.key   the hub-run CA (agents, operators): <state>/enrollment/ca.*
    token.key                              32-byte bootstrap-token MAC key: <state>/enrollment/token.key
    trust.tar.gz                           the trust directory (root.json, config.json, keys/ with the
                                           online keys only, repository/): <state>/trust/
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import shutil
import tarfile
import tempfile

from skerry.core.errors import ConfigError
from skerry.core.files import ensure_dir, fsync_dir, read_bounded, write_together

ENROLLMENT_DIR = "enrollment"
TRUST_DIR = "trust"
CA_CERT, CA_KEY, TOKEN_KEY, TRUST_ARCHIVE = "enrollment-ca.crt", "enrollment-ca.key", "token.key", "trust.tar.gz"
# A Secret holds at most 1 MiB; a fresh trust directory packs to ~30 KiB.
MAX_SEED_FILE_BYTES = 1024 * 1024
# Unpacked, the archive may not grow past this, nor hold more entries (a fresh one: ~150 files, ~130 KiB).
MAX_TRUST_BYTES = 16 * 1024 * 1024
MAX_TRUST_ENTRIES = 10_000


@dataclasses.dataclass(frozen=True)
class SeedOutcome:
    copied: tuple[str, ...]  # what was written onto the state volume
    kept: tuple[str, ...]  # what the hub already had (and differs from the seed, if so said in ``differs``)
    differs: tuple[str, ...]


def pack_trust(trust_dir: pathlib.Path) -> bytes:
    """The trust directory as a gzipped tar, paths relative to it (``root.json``, ``keys/...``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(trust_dir.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(trust_dir)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            elif path.is_dir():
                tar.addfile(info)
    return buf.getvalue()


def unpack_trust(archive: bytes, target: pathlib.Path) -> None:
    """Unpack ``archive`` into the new directory ``target`` (regular files and directories only, bounded)."""
    total = 0
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = []
        for i, m in enumerate(tar):
            if i >= MAX_TRUST_ENTRIES:
                raise ConfigError(f"{TRUST_ARCHIVE}: more than {MAX_TRUST_ENTRIES} entries", reason="BadSeed")
            if not (m.isfile() or m.isdir()):
                raise ConfigError(f"{TRUST_ARCHIVE}: {m.name!r} is not a file or directory", reason="BadSeed")
            total += m.size
            if total > MAX_TRUST_BYTES:
                raise ConfigError(f"{TRUST_ARCHIVE}: unpacks to over {MAX_TRUST_BYTES} bytes", reason="BadSeed")
            members.append(m)
        try:
            tar.extractall(target, members=members, filter="data")  # refuses absolute paths and '..'
        except tarfile.FilterError as e:
            raise ConfigError(f"{TRUST_ARCHIVE}: {e}", reason="BadSeed") from None


def _read(seed: pathlib.Path, name: str) -> bytes:
    path = seed / name
    if not path.is_file():
        raise ConfigError(f"{path}: missing from the seed (the skerry-hub-seed Secret; run skerry install)",
                          reason="BadSeed")
    return read_bounded(path, MAX_SEED_FILE_BYTES, str(path))


def seed_state(seed: pathlib.Path, state_dir: pathlib.Path) -> SeedOutcome:
    """Copy the seed's material into ``state_dir`` where the hub has none yet."""
    copied, kept, differs = [], [], []
    enrollment = ensure_dir(state_dir / ENROLLMENT_DIR)
    crt, key, token = enrollment / "ca.crt", enrollment / "ca.key", enrollment / "token.key"
    ca_crt, ca_key = _read(seed, CA_CERT), _read(seed, CA_KEY)
    if not crt.exists() and not key.exists():
        write_together([(key, ca_key, 0o600), (crt, ca_crt, 0o644)])
        copied.append(str(crt))
    else:
        kept.append(str(crt))
        if not crt.exists() or crt.read_bytes() != ca_crt:
            differs.append(str(crt))
    token_key = _read(seed, TOKEN_KEY)
    if not token.exists():
        write_together([(token, token_key, 0o600)])
        copied.append(str(token))
    else:
        kept.append(str(token))
        if token.read_bytes() != token_key:
            differs.append(str(token))
    trust = state_dir / TRUST_DIR
    if (trust / "root.json").exists():
        kept.append(str(trust))
    else:
        archive = _read(seed, TRUST_ARCHIVE)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".trust-seed-", dir=state_dir))
        try:
            unpack_trust(archive, staging)
            if not (staging / "root.json").is_file():
                raise ConfigError(f"{TRUST_ARCHIVE}: no root.json in it", reason="BadSeed")
            if trust.exists():  # an empty or half-made directory from an earlier, interrupted attempt
                shutil.rmtree(trust)
            os.replace(staging, trust)
            fsync_dir(state_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        copied.append(str(trust))
    return SeedOutcome(tuple(copied), tuple(kept), tuple(differs))
