"""Which SealedSecrets in a repository still need a key: the check before a key is retired.

Sealed Secrets keeps every key forever, because it cannot tell whether a
key is still used. Skerry can: the operator points ``skerry sealer keys
retire`` at the checkouts that hold SealedSecrets, and every item of every
SealedSecret there that could be in the key's domain is tried against that
one key (one RSA decryption per item, with the label of the SealedSecret's
own place and scope). If any opens, the key is still needed and is not
retired. SealedSecrets annotated for another domain are skipped; those with
no domain annotation are checked, because they may be sealed for any.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Iterator

from skerry.core import sealedsecret
from skerry.core.errors import InvalidInput, NotFound, SealError
from skerry.sealer import crypto, seal
from skerry.sealer.keys import MAX_BACKUP_BYTES, KeyRegistry, normalize_domain

__all__ = ["MAX_BACKUP_BYTES", "manifest_files", "sealed_secrets_needing"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# A manifest file larger than this is not something a person committed by hand.
MAX_MANIFEST_FILE_BYTES = 8 * 1024 * 1024


def manifest_files(paths: Iterable[pathlib.Path]) -> Iterator[pathlib.Path]:
    """YAML/JSON files under ``paths`` (files as given), skipping ``.git``."""
    for p in paths:
        p = pathlib.Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix in MANIFEST_SUFFIXES and ".git" not in f.relative_to(p).parts:
                    yield f
        elif p.is_file():
            yield p
        else:
            raise InvalidInput(f"{p}: no such file or directory")


def sealed_secrets_needing(
    registry: KeyRegistry, domain: str, key_id: str, paths: Iterable[pathlib.Path]
) -> list[str]:
    """``"<file>: <namespace>/<name>"`` for each SealedSecret that opens with ``key_id``."""
    domain = normalize_domain(domain)
    key = next((k for k in registry.stored_keys(domain) if k.key_id == key_id), None)
    if key is None:
        raise NotFound(f"domain {domain!r} has no key {key_id}")
    users: list[str] = []
    for path in manifest_files(paths):
        try:
            if path.stat().st_size > MAX_MANIFEST_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if sealedsecret.KIND not in text:
            continue
        try:
            docs = seal.parse_documents(text, str(path))
        except InvalidInput:
            continue
        for doc in docs:
            if not (isinstance(doc, dict) and sealedsecret.is_sealed_secret(doc)):
                continue
            try:
                ns, name, scope, sealed_domain, encrypted = seal.sealed_identity(doc, str(path))
            except InvalidInput:
                continue
            if sealed_domain and sealed_domain != domain:
                continue
            label = sealedsecret.encryption_label(ns, name, scope)
            for item in encrypted.values():
                try:
                    crypto.hybrid_decrypt(key.private_key, crypto.decode_item(item), label)
                except SealError:
                    continue
                users.append(f"{path}: {ns or '(cluster-wide)'}/{name}")
                break
    return users
