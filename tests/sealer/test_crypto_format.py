"""The hybrid format: round trips per scope, label binding, tampering and bounds."""

from __future__ import annotations

import base64

import pytest

from skerry.core.errors import SealError
from skerry.core.sealedsecret import CLUSTER_WIDE, NAMESPACE_WIDE, STRICT, encryption_label
from skerry.sealer import crypto

VALUE = b"s3cr3t-\x00\xff-binary-ok"


@pytest.fixture(scope="module")
def key(sealing_key):
    return sealing_key.private_key


@pytest.mark.parametrize(
    "namespace,name,scope",
    [
        ("apps", "db", STRICT),
        ("apps", "db", NAMESPACE_WIDE),
        ("apps", "db", CLUSTER_WIDE),
        ("", "db", CLUSTER_WIDE),
    ],
)
def test_round_trip_in_every_scope(key, namespace, name, scope):
    label = encryption_label(namespace, name, scope)
    item = crypto.hybrid_encrypt(key.public_key(), VALUE, label)
    assert crypto.hybrid_decrypt(key, item, label) == VALUE


def test_empty_and_maximum_values_round_trip(key):
    label = b"apps/db"
    for value in (b"", b"x" * crypto.MAX_PLAINTEXT_BYTES):
        assert (
            crypto.hybrid_decrypt(key, crypto.hybrid_encrypt(key.public_key(), value, label), label) == value
        )


def test_item_layout_is_length_prefix_rsa_block_then_gcm(key):
    item = crypto.hybrid_encrypt(key.public_key(), b"abc", b"apps/db")
    assert int.from_bytes(item[:2], "big") == 512  # RSA-4096
    assert len(item) == 2 + 512 + 3 + 16


def test_every_seal_uses_a_fresh_session_key(key):
    a = crypto.hybrid_encrypt(key.public_key(), VALUE, b"apps/db")
    b = crypto.hybrid_encrypt(key.public_key(), VALUE, b"apps/db")
    assert a[2:514] != b[2:514]
    assert a[514:] != b[514:]  # same zero nonce, different keys: different ciphertext


@pytest.mark.parametrize(
    "sealed_for,opened_as",
    [
        (("apps", "db", STRICT), ("other", "db", STRICT)),  # relocated to another namespace
        (("apps", "db", STRICT), ("apps", "db2", STRICT)),  # renamed
        (("apps", "db", STRICT), ("apps", "db", NAMESPACE_WIDE)),
        (("apps", "db", STRICT), ("apps", "db", CLUSTER_WIDE)),
        (("apps", "db", NAMESPACE_WIDE), ("other", "db", NAMESPACE_WIDE)),
        (("apps", "db", NAMESPACE_WIDE), ("apps", "db", STRICT)),
        (("apps", "db", CLUSTER_WIDE), ("apps", "db", STRICT)),
    ],
)
def test_value_only_opens_where_its_scope_allows(key, sealed_for, opened_as):
    item = crypto.hybrid_encrypt(key.public_key(), VALUE, encryption_label(*sealed_for))
    with pytest.raises(SealError) as err:
        crypto.hybrid_decrypt(key, item, encryption_label(*opened_as))
    assert VALUE.decode(errors="ignore") not in str(err.value)


def test_namespace_wide_survives_rename_and_cluster_wide_survives_relocation(key):
    nw = crypto.hybrid_encrypt(key.public_key(), VALUE, encryption_label("apps", "db", NAMESPACE_WIDE))
    assert crypto.hybrid_decrypt(key, nw, encryption_label("apps", "renamed", NAMESPACE_WIDE)) == VALUE
    cw = crypto.hybrid_encrypt(key.public_key(), VALUE, encryption_label("apps", "db", CLUSTER_WIDE))
    assert crypto.hybrid_decrypt(key, cw, encryption_label("elsewhere", "x", CLUSTER_WIDE)) == VALUE


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b: b[:2] + bytes([b[2] ^ 1]) + b[3:], id="rsa-block"),
        pytest.param(lambda b: b[:520] + bytes([b[520] ^ 1]) + b[521:], id="gcm-ciphertext"),
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="gcm-tag"),
        pytest.param(lambda b: b[:-1], id="truncated-tag"),
        pytest.param(lambda b: b[:100], id="truncated-rsa"),
        pytest.param(lambda b: (256).to_bytes(2, "big") + b[2:], id="wrong-length-prefix"),
        pytest.param(lambda b: b[:1], id="one-byte"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b + b"x", id="appended"),
    ],
)
def test_tampered_items_fail_with_a_seal_error(key, tamper):
    item = crypto.hybrid_encrypt(key.public_key(), VALUE + b"-padding-to-reach-offset-520", b"apps/db")
    with pytest.raises(SealError):
        crypto.hybrid_decrypt(key, tamper(item), b"apps/db")


def test_value_sealed_for_another_key_fails(key):
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    item = crypto.hybrid_encrypt(other.public_key(), VALUE, b"apps/db")
    with pytest.raises(SealError, match="no key matches"):
        crypto.hybrid_decrypt(key, item, b"apps/db")


def test_oversized_plaintext_and_items_are_refused(key):
    with pytest.raises(SealError, match="at most"):
        crypto.hybrid_encrypt(key.public_key(), b"x" * (crypto.MAX_PLAINTEXT_BYTES + 1), b"")
    with pytest.raises(SealError, match="at most"):
        crypto.hybrid_decrypt(key, b"\x02\x00" + b"x" * crypto.MAX_ITEM_BYTES, b"")
    with pytest.raises(SealError, match="at most"):
        crypto.decode_item("A" * (crypto.MAX_ITEM_BASE64_CHARS + 4))


def test_small_or_non_rsa_keys_cannot_seal():
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    with pytest.raises(SealError, match="at least 2048"):
        crypto.hybrid_encrypt(rsa.generate_private_key(65537, 1024).public_key(), b"x", b"")
    with pytest.raises(SealError, match="not an RSA"):
        crypto.hybrid_encrypt(ec.generate_private_key(ec.SECP256R1()).public_key(), b"x", b"")


def test_encrypted_data_values_are_standard_padded_base64(key):
    text = crypto.seal_value(key.public_key(), VALUE, b"apps/db")
    assert base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    assert crypto.hybrid_decrypt(key, crypto.decode_item(text), b"apps/db") == VALUE
    assert crypto.decode_item(f"  {text}\n") == base64.b64decode(text)


def test_invalid_base64_names_the_item():
    with pytest.raises(SealError, match="'password' is not valid standard base64"):
        crypto.decode_item("not base64!!", item="password")
    with pytest.raises(SealError):
        crypto.decode_item("abc-_def")  # URL-safe alphabet is not the format
