"""The sealer's keys: which RSA keys exist, where they are kept, which one seals, which ones may unseal.

Split by verb, behind the names this package always exported:

``model``      a key (domain, id = SHA-256 of the SubjectPublicKeyInfo, RSA pair, self-signed certificate
               as upstream Sealed Secrets makes it), the ``KeyBackend`` protocol, key generation
``storage``    backends (directory, memory) and private keys encrypted at rest under a KEK (format there)
``registry``   ``KeyRegistry``: domains, the sealing key, unseal with every retained key, renew, refresh,
               retire, backup and restore
``backup``     the backup document that moves keys between sealers (format there)
"""

from __future__ import annotations

from skerry.sealer.keys.backup import BACKUP_API_VERSION, BACKUP_KIND, MAX_BACKUP_BYTES
from skerry.sealer.keys.model import (
    CERT_COMMON_NAME,
    CERT_ORGANIZATION,
    CERT_VALIDITY,
    DEFAULT_DOMAIN,
    DEFAULT_RENEWAL,
    KEY_BITS,
    KeyBackend,
    SealingKey,
    StoredKey,
    generate_key,
    key_id_of,
    normalize_domain,
)
from skerry.sealer.keys.registry import KeyRegistry
from skerry.sealer.keys.storage import (
    KEK_BYTES,
    KEK_MAGIC,
    DirectoryBackend,
    EncryptedBackend,
    MemoryBackend,
    configured_kek,
    load_kek,
    unwrap_private_key,
    wrap_private_key,
)

__all__ = [
    "BACKUP_API_VERSION",
    "BACKUP_KIND",
    "CERT_COMMON_NAME",
    "CERT_ORGANIZATION",
    "CERT_VALIDITY",
    "DEFAULT_DOMAIN",
    "DEFAULT_RENEWAL",
    "KEK_BYTES",
    "KEK_MAGIC",
    "KEY_BITS",
    "MAX_BACKUP_BYTES",
    "DirectoryBackend",
    "EncryptedBackend",
    "KeyBackend",
    "KeyRegistry",
    "MemoryBackend",
    "SealingKey",
    "StoredKey",
    "configured_kek",
    "generate_key",
    "key_id_of",
    "load_kek",
    "normalize_domain",
    "unwrap_private_key",
    "wrap_private_key",
]
