"""The life of a sealing key: renewal, early rotation, refresh, retirement, encryption at rest, backup/restore."""

from __future__ import annotations

import datetime as _dt
import json
import os

import pytest
from cli.helpers import error_line, skerry  # tests/cli/helpers.py: the command as a user runs it

from skerry.core.clock import FixedClock
from skerry.core.errors import ConfigError, FailedPrecondition, InvalidInput, NotFound, SealError
from skerry.core.sealedsecret import encryption_label
from skerry.sealer import crypto
from skerry.sealer.keys import (
    KEK_MAGIC,
    MAX_BACKUP_BYTES,
    DirectoryBackend,
    EncryptedBackend,
    KeyRegistry,
    MemoryBackend,
    load_kek,
)

from .helpers import SECRET_VALUE

LABEL = encryption_label("apps", "db", "strict")
KEK = bytes(range(32))


def seal(key, value=SECRET_VALUE.encode()):  # noqa: B008 - a constant
    return crypto.hybrid_encrypt(key.public_key, value, LABEL)


def test_a_key_is_renewed_when_the_newest_is_30_days_old_and_old_values_stay_readable(keys_dir):
    clock = FixedClock(_dt.datetime.now(_dt.UTC))
    reg = KeyRegistry.from_directory(keys_dir, clock=clock, key_bits=2048)
    first = reg.open()
    old_item = seal(first)
    assert reg.renew_if_due("default") is None
    clock.advance(29 * 86400)
    assert reg.renew_if_due("default") is None
    clock.advance(2 * 86400)
    new = reg.renew_if_due("default")
    assert new is not None and reg.sealing_key().key_id == new.key_id
    assert [k.key_id for k in reg.keys()] == [new.key_id, first.key_id]
    assert reg.unseal("default", old_item, LABEL) == (SECRET_VALUE.encode(), first.key_id)
    assert reg.renew_if_due("default") is None, "renewed once per period, not on every check"


def test_restart_after_rotation_loses_no_key(keys_dir):
    reg = KeyRegistry.from_directory(keys_dir, key_bits=2048)
    first = reg.open()
    second = reg.add_key()
    again = KeyRegistry.from_directory(keys_dir)
    assert again.open().key_id == second.key_id
    assert [k.key_id for k in again.keys()] == [second.key_id, first.key_id]


def test_refresh_sees_keys_rotated_and_retired_by_another_process(keys_dir):
    serving = KeyRegistry.from_directory(keys_dir)
    first = serving.open()
    admin = KeyRegistry.from_directory(keys_dir, key_bits=2048)
    new = admin.add_key()
    assert serving.sealing_key().key_id == first.key_id
    serving.refresh("default")
    assert serving.sealing_key().key_id == new.key_id
    admin.retire("default", first.key_id)
    serving.refresh("default")
    assert [k.key_id for k in serving.keys()] == [new.key_id]
    with pytest.raises(SealError):
        serving.unseal("default", seal(first), LABEL)


def test_the_sealing_key_cannot_be_retired_and_unknown_keys_are_not_found(registry):
    with pytest.raises(FailedPrecondition, match="rotate before retiring"):
        registry.retire("default", registry.sealing_key().key_id)
    with pytest.raises(NotFound):
        registry.retire("default", "0" * 64)
    with pytest.raises(InvalidInput):
        DirectoryBackend(registry_root := "/nonexistent").delete("default", "../etc")  # noqa: F841


def test_keys_encrypted_at_rest_never_touch_disk_in_clear(tmp_path):
    reg = KeyRegistry.from_directory(tmp_path / "keys", kek=KEK, key_bits=2048)
    key = reg.open()
    blob = (tmp_path / "keys" / "default" / f"{key.key_id}.key").read_bytes()
    assert blob.startswith(KEK_MAGIC) and b"PRIVATE KEY" not in blob
    item = seal(key)
    again = KeyRegistry.from_directory(tmp_path / "keys", kek=KEK)
    again.open()
    assert again.unseal("default", item, LABEL)[0] == SECRET_VALUE.encode()


def test_encrypted_keys_need_the_right_kek_and_their_own_domain(tmp_path):
    root = tmp_path / "keys"
    key = KeyRegistry.from_directory(root, kek=KEK, key_bits=2048).open()
    with pytest.raises(ConfigError, match="encrypted at rest; configure the key-encryption key"):
        KeyRegistry.from_directory(root).open()
    with pytest.raises(ConfigError, match="wrong key-encryption key"):
        KeyRegistry.from_directory(root, kek=bytes(32)).open()
    # A key file copied into another jurisdiction's domain does not load there.
    (root / "eu-west").mkdir(mode=0o700)
    for suffix in (".key", ".crt"):
        (root / "eu-west" / f"{key.key_id}{suffix}").write_bytes((root / "default" / f"{key.key_id}{suffix}").read_bytes())
    with pytest.raises(ConfigError, match="another domain or key id"):
        KeyRegistry.from_directory(root, kek=KEK).open("eu-west")


def test_plaintext_keys_still_load_under_a_kek_with_a_warning(keys_dir, logs):
    reg = KeyRegistry(EncryptedBackend(DirectoryBackend(keys_dir), KEK))
    reg.open()
    assert logs.events("private key is not encrypted at rest; it is re-encrypted on the next write")


def test_kek_format_is_exactly_32_bytes_from_a_file_or_base64(tmp_path):
    import base64

    f = tmp_path / "kek"
    f.write_bytes(KEK)
    assert load_kek(path=f) == KEK
    assert load_kek(base64_text=base64.b64encode(KEK).decode()) == KEK
    f.write_bytes(KEK + b"\n")
    with pytest.raises(ConfigError, match="exactly 32 bytes, not 33"):
        load_kek(path=f)
    with pytest.raises(ConfigError, match="not valid base64"):
        load_kek(base64_text="!!")


@pytest.mark.parametrize("kek", [None, KEK], ids=["clear", "encrypted"])
def test_backup_and_restore_round_trip_into_an_empty_sealer(registry, tmp_path, kek):
    registry.add_key()
    old, new = registry.keys()[1], registry.keys()[0]
    items = [seal(old), seal(new)]
    doc = json.loads(json.dumps(registry.backup_document(kek=kek)))
    if kek:
        assert "PRIVATE KEY" not in json.dumps(doc)
    fresh = KeyRegistry.from_directory(tmp_path / "restored")
    assert fresh.restore_document(doc, kek=kek) == {"default": [new.key_id, old.key_id]}
    assert fresh.open().key_id == new.key_id
    assert [fresh.unseal("default", i, LABEL)[1] for i in items] == [old.key_id, new.key_id]
    assert fresh.restore_document(doc, kek=kek) == {}, "restoring twice adds nothing"


def test_a_tampered_backup_restores_nothing(registry):
    doc = registry.backup_document()
    doc["domains"]["default"][0]["keyId"] = "1" * 64
    target = KeyRegistry(MemoryBackend())
    with pytest.raises(ConfigError, match="stored as key id"):
        target.restore_document(doc)
    assert target.stored_keys("default") == ()
    with pytest.raises(ConfigError, match="encrypted; give its key-encryption key"):
        target.restore_document(registry.backup_document(kek=KEK))
    with pytest.raises(InvalidInput):
        target.restore_document({"kind": "Something"})


def test_retired_key_files_are_gone_from_disk(registry, keys_dir):
    first = registry.sealing_key()
    registry.add_key()
    registry.retire("default", first.key_id)
    assert not any(p.name.startswith(first.key_id) for p in os.scandir(keys_dir / "default"))


def test_restoring_an_oversized_backup_is_one_line_naming_the_file_and_the_limit(tmp_path):
    big = tmp_path / "backup.json"
    big.write_bytes(b" " * (MAX_BACKUP_BYTES + 1))
    proc = skerry("sealer", "keys", "--keys-dir", str(tmp_path / "keys"), "restore", str(big))
    assert proc.returncode == 1
    line = error_line(proc)
    assert str(big) in line and str(MAX_BACKUP_BYTES) in line
