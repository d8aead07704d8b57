"""The backup document that moves keys between sealers (``skerry sealer keys backup|restore``).

Format (JSON)::

    {"apiVersion": "skerry.io/v1alpha1", "kind": "SealerKeyBackup", "encrypted": bool, "created": iso8601,
     "domains": {"<domain>": [{"keyId": hex64, "certificate": PEM, "privateKey": PEM or base64}]}}

With a KEK the private keys are encrypted exactly as at rest (:mod:`.storage`) and base64-encoded;
without one they are PEM in clear and the document must be protected like the keys themselves.
Parsing checks every key (parses, certificate matches, id matches) before a caller writes any.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from collections.abc import Mapping, Sequence

from skerry.core.errors import ConfigError, InvalidInput
from skerry.sealer.keys.model import KEY_ID_RE, SealingKey, StoredKey, normalize_domain
from skerry.sealer.keys.storage import from_stored, to_stored, unwrap_private_key, wrap_private_key

BACKUP_API_VERSION = "skerry.io/v1alpha1"
BACKUP_KIND = "SealerKeyBackup"
# A backup holds a few keys per domain (one a month, retired ones removed); bound what restore reads.
MAX_BACKUP_BYTES = 16 * 1024 * 1024
_ENTRY_FIELDS = ("keyId", "certificate", "privateKey")


def backup_document(
    keys: Mapping[str, Sequence[SealingKey]], *, kek: bytes | None, created: _dt.datetime
) -> dict:
    """``keys`` (per domain, newest first) as a JSON-ready backup document."""
    out: dict[str, list[dict]] = {}
    for domain, domain_keys in keys.items():
        entries = []
        for key in domain_keys:
            pem = to_stored(key).key_pem
            private = _b64(wrap_private_key(kek, domain, key.key_id, pem)) if kek else pem.decode("ascii")
            entries.append({"keyId": key.key_id, "certificate": key.cert_pem.decode("ascii"), "privateKey": private})
        out[domain] = entries
    return {
        "apiVersion": BACKUP_API_VERSION,
        "kind": BACKUP_KIND,
        "encrypted": bool(kek),
        "created": created.astimezone(_dt.UTC).isoformat(),
        "domains": out,
    }


def parse_backup(doc: object, *, kek: bytes | None) -> list[tuple[str, SealingKey]]:
    """Every key of a backup document, checked; ``InvalidInput``/``ConfigError`` name the first bad one."""
    if not isinstance(doc, dict) or doc.get("kind") != BACKUP_KIND or doc.get("apiVersion") != BACKUP_API_VERSION:
        raise InvalidInput(f"not a {BACKUP_API_VERSION} {BACKUP_KIND} document")
    domains = doc.get("domains")
    if not isinstance(domains, dict):
        raise InvalidInput("backup: domains must be a mapping of domain to keys")
    parsed: list[tuple[str, SealingKey]] = []
    for domain, entries in domains.items():
        domain = normalize_domain(str(domain))
        if not isinstance(entries, list):
            raise InvalidInput(f"backup: domain {domain!r} must list its keys")
        for i, e in enumerate(entries):
            where = f"backup key #{i} of domain {domain!r}"
            if not isinstance(e, dict) or not all(isinstance(e.get(f), str) for f in _ENTRY_FIELDS):
                raise InvalidInput(f"{where}: needs keyId, certificate and privateKey strings")
            if not KEY_ID_RE.match(e["keyId"]):
                raise InvalidInput(f"{where}: invalid key id")
            if doc.get("encrypted"):
                if kek is None:
                    raise ConfigError("the backup is encrypted; give its key-encryption key")
                blob = _unb64(e["privateKey"], where)
                pem = unwrap_private_key(kek, domain, e["keyId"], blob, where)
            else:
                pem = e["privateKey"].encode("ascii")
            stored = StoredKey(e["keyId"], pem, e["certificate"].encode("ascii"), source=where)
            parsed.append((domain, from_stored(domain, stored)))
    return parsed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: privateKey is not valid base64") from None
