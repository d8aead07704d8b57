"""The Bitnami Sealed Secrets hybrid encryption format, byte for byte.

Skerry seals and unseals values that ``kubeseal`` and the upstream
controller also read and write, so the format is fixed by upstream and
written down here rather than left to a library:

    item       = len(rsa_ct) as 2-byte big-endian  ||  rsa_ct  ||  gcm_out
    rsa_ct     = RSA-OAEP(public_key, session_key, hash=SHA-256, MGF1-SHA-256, label)
    gcm_out    = AES-256-GCM(session_key, nonce=12 zero bytes, plaintext, no AAD)
                 i.e. ciphertext || 16-byte tag
    session_key = 32 fresh random bytes per item

The all-zero nonce is safe only because every session key encrypts exactly
one value; ``hybrid_encrypt`` always draws a new key. The OAEP label binds
a value to where it may be unsealed (``skerry.core.sealedsecret.encryption_label``):
``b"<namespace>/<name>"`` (strict), ``b"<namespace>"`` (namespace-wide) or
``b""`` (cluster-wide). In a SealedSecret's ``spec.encryptedData`` each item
is standard base64 (with padding) of the bytes above.

Every failure is a ``SealError`` with one message that never contains
plaintext and does not say which step failed (no padding oracle).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from skerry.core.errors import SealError

# A Kubernetes Secret is at most 1 MiB in total, so no single value can be larger.
MAX_PLAINTEXT_BYTES = 1024 * 1024
SESSION_KEY_BYTES = 32
GCM_NONCE = bytes(12)
GCM_TAG_BYTES = 16
_LENGTH_PREFIX_BYTES = 2
# RSA ciphertext is the modulus size; 16384-bit keys are the largest anyone uses.
MAX_RSA_CIPHERTEXT_BYTES = 16384 // 8
MAX_ITEM_BYTES = _LENGTH_PREFIX_BYTES + MAX_RSA_CIPHERTEXT_BYTES + MAX_PLAINTEXT_BYTES + GCM_TAG_BYTES
MAX_ITEM_BASE64_CHARS = 4 * ((MAX_ITEM_BYTES + 2) // 3)
MIN_RSA_KEY_BITS = 2048

UNSEAL_FAILED = (
    "cannot unseal: no key matches (wrong key, or wrong scope, namespace or name) or the data is corrupt"
)


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def check_public_key(public_key) -> rsa.RSAPublicKey:
    """Return ``public_key`` if it can seal (RSA, at least 2048 bits), else raise ``SealError``."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SealError("the sealing key is not an RSA public key")
    if public_key.key_size < MIN_RSA_KEY_BITS:
        raise SealError(
            f"the sealing key has {public_key.key_size} bits; at least {MIN_RSA_KEY_BITS} are required"
        )
    return public_key


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """Seal one value for ``label`` with a fresh session key; returns the raw item bytes."""
    check_public_key(public_key)
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise SealError(f"value is {len(plaintext)} bytes; a Secret value is at most {MAX_PLAINTEXT_BYTES}")
    session_key = os.urandom(SESSION_KEY_BYTES)
    rsa_ct = public_key.encrypt(session_key, _oaep(label))
    gcm_out = AESGCM(session_key).encrypt(GCM_NONCE, bytes(plaintext), None)
    return len(rsa_ct).to_bytes(_LENGTH_PREFIX_BYTES, "big") + rsa_ct + gcm_out


def hybrid_decrypt(private_key: rsa.RSAPrivateKey, data: bytes, label: bytes) -> bytes:
    """Unseal one raw item sealed for ``label``; raises ``SealError`` on any mismatch or corruption."""
    if len(data) > MAX_ITEM_BYTES:
        raise SealError(f"sealed item is {len(data)} bytes; at most {MAX_ITEM_BYTES} are accepted")
    if len(data) < _LENGTH_PREFIX_BYTES:
        raise SealError("sealed item is truncated")
    rsa_len = int.from_bytes(data[:_LENGTH_PREFIX_BYTES], "big")
    body = data[_LENGTH_PREFIX_BYTES:]
    if rsa_len != (private_key.key_size + 7) // 8 or len(body) < rsa_len + GCM_TAG_BYTES:
        # Sealed for a key of another size, or cut short: it cannot be ours.
        raise SealError(UNSEAL_FAILED)
    try:
        session_key = private_key.decrypt(body[:rsa_len], _oaep(label))
        if len(session_key) != SESSION_KEY_BYTES:
            raise SealError(UNSEAL_FAILED)
        return AESGCM(session_key).decrypt(GCM_NONCE, body[rsa_len:], None)
    except (ValueError, InvalidTag) as e:
        raise SealError(UNSEAL_FAILED) from e


def encode_item(item: bytes) -> str:
    """The ``spec.encryptedData`` form of an item: standard base64 with padding."""
    return base64.b64encode(item).decode("ascii")


def decode_item(text: str, *, item: str = "") -> bytes:
    """Decode one ``spec.encryptedData`` value; ``item`` names it in the error."""
    where = f"encryptedData item {item!r}" if item else "sealed value"
    text = text.strip()
    if len(text) > MAX_ITEM_BASE64_CHARS:
        raise SealError(f"{where} is {len(text)} characters; at most {MAX_ITEM_BASE64_CHARS} are accepted")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SealError(f"{where} is not valid standard base64") from e


def seal_value(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> str:
    """``hybrid_encrypt`` then base64: one ``spec.encryptedData`` value."""
    return encode_item(hybrid_encrypt(public_key, plaintext, label))
