"""Recovery without a sealer (``kubeseal --recovery-unseal``): SealedSecrets opened offline with private keys.

The keys come from PEM files, Skerry key directories (``<domain>/<id>.key``) or a key backup document,
read through ``skerry.sealer.keys`` so a directory encrypted at rest opens with its KEK.
"""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from skerry.core import sealedsecret
from skerry.core.errors import InvalidInput, SealError
from skerry.sealer import crypto
from skerry.sealer import keys as keymod
from skerry.sealer.seal.manifests import sealed_identity


def recovery_unseal(sealed: Mapping, private_keys: list, source: str = "input") -> dict:
    """``kubeseal --recovery-unseal``: the ``v1 Secret`` of a SealedSecret, opened offline with private keys."""
    ns, name, scope, _, encrypted = sealed_identity(sealed, source)
    if not private_keys:
        raise InvalidInput("--recovery-unseal needs at least one --recovery-private-key")
    label = sealedsecret.encryption_label(ns, name, scope)
    data: dict[str, str] = {}
    for item in sorted(encrypted):
        raw = crypto.decode_item(encrypted[item], item=item)
        for key in private_keys:
            try:
                data[item] = base64.b64encode(crypto.hybrid_decrypt(key, raw, label)).decode("ascii")
                break
            except SealError:
                continue
        else:
            raise SealError(f"{source}: item {item!r} of {ns}/{name}: {crypto.UNSEAL_FAILED}")
    template = (sealed.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            meta[field] = dict(tmeta[field])
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": str(template.get("type") or "Opaque"),
        "data": data,
    }
    if "immutable" in template:
        secret["immutable"] = bool(template["immutable"])
    return secret


def load_private_keys(paths: list, *, kek: bytes | None = None) -> list:
    """RSA private keys from PEM files, Skerry key directories (``<domain>/<id>.key``) or a key backup."""
    out = []
    for path in paths:
        path = pathlib.Path(path)
        if path.is_dir():
            registry = keymod.KeyRegistry.from_directory(path, kek=kek)
            for domain_dir in sorted(p for p in path.iterdir() if p.is_dir()):
                try:
                    keymod.normalize_domain(domain_dir.name)
                except InvalidInput:
                    continue
                out.extend(k.private_key for k in registry.stored_keys(domain_dir.name))
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InvalidInput(f"cannot read private key {path}: {e.strerror}") from None
        if data.lstrip().startswith(b"{"):
            try:
                doc = json.loads(data)
            except ValueError:
                raise InvalidInput(f"{path}: not a PEM key or a key backup") from None
            tmp = keymod.KeyRegistry(keymod.MemoryBackend())
            restored = tmp.restore_document(doc, kek=kek)
            out.extend(k.private_key for d in restored for k in tmp.stored_keys(d))
            continue
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise InvalidInput(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidInput(f"{path}: not an RSA private key")
        out.append(key)
    if not out:
        raise InvalidInput("no private keys found in the given --recovery-private-key paths")
    return out
