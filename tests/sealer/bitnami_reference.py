"""An independent implementation of the Bitnami Sealed Secrets item format, for tests only.

Written from the format description (upstream ``pkg/crypto`` HybridEncrypt /
HybridDecrypt), not from ``skerry.sealer.crypto``, and deliberately built on
different primitives (the low-level ``Cipher`` GCM API, ``struct``) so that a
shared mistake is unlikely:

    item = uint16_be(len(rsa_ct)) || rsa_ct || aes_gcm_ct || tag(16)
    rsa_ct = RSA-OAEP-SHA256(MGF1-SHA256, label)(session_key[32])
    aes_gcm with a 12-byte zero nonce, no additional data
"""

from __future__ import annotations

import secrets
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def reference_seal(public_key, plaintext: bytes, label: bytes) -> bytes:
    session_key = secrets.token_bytes(32)
    wrapped = public_key.encrypt(session_key, _oaep(label))
    enc = Cipher(algorithms.AES(session_key), modes.GCM(b"\x00" * 12)).encryptor()
    body = enc.update(plaintext) + enc.finalize()
    return struct.pack(">H", len(wrapped)) + wrapped + body + enc.tag


def reference_open(private_key, item: bytes, label: bytes) -> bytes:
    (n,) = struct.unpack(">H", item[:2])
    wrapped, rest = item[2 : 2 + n], item[2 + n :]
    session_key = private_key.decrypt(wrapped, _oaep(label))
    body, tag = rest[:-16], rest[-16:]
    dec = Cipher(algorithms.AES(session_key), modes.GCM(b"\x00" * 12, tag)).decryptor()
    return dec.update(body) + dec.finalize()
