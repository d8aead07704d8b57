"""Key files and signers for the trust repository.

A key is named by a *key reference*:

* a path to an Ed25519 private key in PKCS#8 PEM (what ``skerry keys init``
  writes, mode 0600). A key file readable by group or others is refused:
  an online key that leaked to another local user is a compromised key;
* or a securesystemslib signer URI (``hsm:``, ``gcpkms:``, ``awskms:``,
  ``azurekms:`` ...) with its public key next to it as ``<name>.pub.json``
  (securesystemslib ``Key.to_dict()`` JSON), so an HSM or KMS signs and the
  private key never reaches the hub's disk.

Public keys are kept beside each key file as ``<path>.pub.json`` in the
same securesystemslib JSON form, so CLI commands can add them to metadata
without touching the private part.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat

from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey

from skerry.core.errors import ConfigError


def _is_uri(ref: str) -> bool:
    scheme, sep, _ = ref.partition(":")
    return bool(sep) and len(scheme) > 1 and "/" not in scheme


def generate_key(path: pathlib.Path) -> CryptoSigner:
    """A new Ed25519 key: private PEM at ``path`` (0600), public key JSON at ``path.pub.json``."""
    signer = CryptoSigner.generate_ed25519()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_bytes)
    public_path(path).write_text(json.dumps(signer.public_key.to_dict(), sort_keys=True) + "\n")
    return signer


def public_path(path: pathlib.Path | str) -> pathlib.Path:
    return pathlib.Path(f"{path}.pub.json")


def load_public(ref: pathlib.Path | str) -> Key:
    """The public key of a key reference (its ``.pub.json``), or of a ``.pub.json`` file itself."""
    p = pathlib.Path(ref)
    candidate = p if p.name.endswith(".pub.json") else public_path(ref)
    try:
        doc = json.loads(candidate.read_text())
        return SSlibKey.from_dict(doc.pop("keyid", None) or _keyid_of(doc), doc)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read public key {candidate}: {e}") from e
    return load_signer(ref).public_key


def _keyid_of(doc: dict) -> str:
    import hashlib

    from securesystemslib.formats import encode_canonical

    return hashlib.sha256(encode_canonical(doc).encode()).hexdigest()


def load_signer(ref: pathlib.Path | str) -> Signer:
    """A signer for a key reference; refuses private key files others can read."""
    ref_s = str(ref)
    if _is_uri(ref_s):
        public = load_public(pathlib.Path(ref_s.split(":", 1)[1].replace("/", "_") or "key"))
        try:
            return Signer.from_priv_key_uri(ref_s, public)
        except Exception as e:  # noqa: BLE001 - any backend error
            raise ConfigError(f"cannot open signer {ref_s}: {e}") from e
    path = pathlib.Path(ref_s)
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError(f"cannot read key {path}: {e.strerror}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key {path} is readable by group or others (mode {oct(mode & 0o777)}); chmod 600 it")
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load key {path}: {e}") from e
    return CryptoSigner(private)
