"""The key registry: generation, persistence, permissions, newest-seals / all-unseal."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from skerry.core.clock import FixedClock
from skerry.core.errors import ConfigError, NotFound, SealError
from skerry.sealer import crypto
from skerry.sealer.keys import DirectoryBackend, KeyRegistry, normalize_domain


def _files(keys_dir):
    return sorted(p.name for p in (keys_dir / "default").iterdir() if not p.name.startswith("."))


def test_first_open_generates_one_rsa_4096_key_with_a_self_signed_certificate(pristine_keys_dir, sealing_key):
    assert sealing_key.private_key.key_size == 4096
    cert = sealing_key.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sealed-secret"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "skerry"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == _dt.timedelta(days=3650)
    cert.verify_directly_issued_by(cert)
    assert _files(pristine_keys_dir) == [f"{sealing_key.key_id}.crt", f"{sealing_key.key_id}.key"]


def test_key_id_is_the_sha256_of_the_der_subject_public_key_info(sealing_key):
    cert = x509.load_pem_x509_certificate(sealing_key.cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert sealing_key.key_id == hashlib.sha256(spki).hexdigest()


def test_private_keys_are_0600_and_key_directories_0700(registry, keys_dir):
    new = registry.add_key()
    key_file = keys_dir / "default" / f"{new.key_id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((keys_dir / "default").stat().st_mode) == 0o700
    fresh = keys_dir.parent / "fresh"
    KeyRegistry(DirectoryBackend(fresh), key_bits=2048).open()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (fresh / "default").glob("*.key"))


def test_restart_on_the_same_directory_keeps_every_key(registry, keys_dir):
    first = registry.sealing_key()
    second = registry.add_key()
    item = crypto.hybrid_encrypt(first.public_key, b"old", b"apps/db")

    restarted = KeyRegistry.from_directory(keys_dir)
    assert restarted.open().key_id == second.key_id
    assert [k.key_id for k in restarted.keys()] == [second.key_id, first.key_id]
    assert restarted.unseal("default", item, b"apps/db") == (b"old", first.key_id)
    assert len(_files(keys_dir)) == 4


def test_newest_key_seals_and_every_retained_key_unseals(registry):
    old = registry.sealing_key()
    old_item = crypto.hybrid_encrypt(old.public_key, b"before", b"ns/a")
    new = registry.add_key()
    assert registry.sealing_key().key_id == new.key_id
    new_item = crypto.hybrid_encrypt(new.public_key, b"after", b"ns/a")
    assert registry.unseal("default", old_item, b"ns/a") == (b"before", old.key_id)
    assert registry.unseal("default", new_item, b"ns/a") == (b"after", new.key_id)


def test_keys_made_in_the_same_second_still_order_newest_first(keys_dir):
    clock = FixedClock(_dt.datetime(2031, 5, 1, tzinfo=_dt.UTC))
    reg = KeyRegistry.from_directory(keys_dir, clock=clock, key_bits=2048)
    reg.open()
    a = reg.add_key()
    b = reg.add_key()
    assert b.created > a.created
    reopened = KeyRegistry.from_directory(keys_dir)
    assert reopened.open().key_id == b.key_id


def test_hinted_key_is_tried_first(registry, monkeypatch):
    old = registry.sealing_key()
    registry.add_key()
    tried: list[str] = []
    real = crypto.hybrid_decrypt

    def spy(private_key, data, label):
        tried.append(next(k.key_id for k in registry.keys() if k.private_key is private_key))
        return real(private_key, data, label)

    monkeypatch.setattr(crypto, "hybrid_decrypt", spy)
    item = crypto.hybrid_encrypt(old.public_key, b"v", b"")
    registry.unseal("default", item, b"")
    assert tried == [k.key_id for k in registry.keys()]  # newest first, then the old one opens it
    tried.clear()
    registry.unseal("default", item, b"", hint=old.key_id)
    assert tried == [old.key_id]


def test_no_matching_key_is_a_seal_error(registry):
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(65537, 2048)
    item = crypto.hybrid_encrypt(stranger.public_key(), b"v", b"")
    with pytest.raises(SealError, match="no key matches"):
        registry.unseal("default", item, b"")


def test_unknown_or_invalid_domains_are_refused(registry):
    with pytest.raises(NotFound, match="no-oslo"):
        registry.sealing_key("no-oslo")
    with pytest.raises(ConfigError, match="invalid key domain"):
        registry.keys("../etc")
    assert normalize_domain("") == "default"


def test_domains_are_separate_subdirectories(registry, keys_dir):
    oslo = registry.open("no-oslo")
    assert registry.domains == ("default", "no-oslo")
    assert (keys_dir / "no-oslo" / f"{oslo.key_id}.key").exists()
    item = crypto.hybrid_encrypt(oslo.public_key, b"v", b"")
    with pytest.raises(SealError):
        registry.unseal("default", item, b"")
    assert registry.unseal("no-oslo", item, b"")[0] == b"v"


def test_a_certificate_that_does_not_match_its_key_stops_the_load(registry, keys_dir):
    first = registry.sealing_key()
    second = registry.add_key()
    d = keys_dir / "default"
    (d / f"{first.key_id}.crt").write_bytes((d / f"{second.key_id}.crt").read_bytes())
    with pytest.raises(ConfigError, match="does not belong to the private key"):
        KeyRegistry.from_directory(keys_dir).open()


def test_a_key_stored_under_the_wrong_id_stops_the_load(keys_dir, sealing_key):
    d = keys_dir / "default"
    wrong = "0" * 64
    for ext in ("key", "crt"):
        os.rename(d / f"{sealing_key.key_id}.{ext}", d / f"{wrong}.{ext}")
    with pytest.raises(ConfigError, match="fingerprint"):
        KeyRegistry.from_directory(keys_dir).open()


def test_a_half_written_key_is_ignored_and_the_rest_loads(keys_dir, sealing_key, logs):
    d = keys_dir / "default"
    (d / f"{'a' * 64}.key").write_bytes(b"orphan")
    reg = KeyRegistry.from_directory(keys_dir)
    assert reg.open().key_id == sealing_key.key_id
    assert logs.events("ignoring private key without certificate")


def test_group_readable_private_keys_are_warned_about(keys_dir, sealing_key, logs):
    (keys_dir / "default" / f"{sealing_key.key_id}.key").chmod(0o644)
    KeyRegistry.from_directory(keys_dir).open()
    assert logs.events("private key is readable by group or others")


def test_keys_smaller_than_2048_bits_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="2048"):
        KeyRegistry.from_directory(tmp_path, key_bits=1024).open()
