"""``skerry hub seed`` (the hub pod's init container): the install's material onto a new state volume,
never over what the hub already has, and a hostile archive is refused before anything is written."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import pytest

from skerry.core.errors import ConfigError
from skerry.core.tls import CertificateAuthority
from skerry.hub.seed import pack_trust, seed_state


def make_seed(directory, trust_files=None):
    trust = directory / "trust-src"
    (trust / "keys").mkdir(parents=True)
    for name, data in (trust_files or {"root.json": b'{"v": 1}', "keys/director.key": b"k"}).items():
        (trust / name).write_bytes(data)
    ca = CertificateAuthority.create("seed-ca")
    seed = directory / "seed"
    seed.mkdir()
    (seed / "enrollment-ca.crt").write_bytes(ca.cert_pem)
    (seed / "enrollment-ca.key").write_bytes(ca.key_pem)
    (seed / "token.key").write_bytes(b"t" * 32)
    (seed / "trust.tar.gz").write_bytes(pack_trust(trust))
    return seed


def test_a_new_state_directory_gets_the_seed_and_a_second_seed_changes_nothing(tmp_path):
    state = tmp_path / "state"
    first = seed_state(make_seed(tmp_path / "a"), state)
    assert len(first.copied) == 3 and not first.differs
    assert (state / "trust/root.json").read_bytes() == b'{"v": 1}'
    assert (state / "trust/keys/director.key").read_bytes() == b"k"
    assert (state / "enrollment/ca.key").stat().st_mode & 0o777 == 0o600
    ca_before = (state / "enrollment/ca.crt").read_bytes()
    (state / "trust/root.json").write_bytes(b'{"v": 2}')  # the hub moved on

    other = make_seed(tmp_path / "b", {"root.json": b'{"v": 9}'})
    second = seed_state(other, state)
    assert not second.copied
    assert second.differs == (str(state / "enrollment/ca.crt"),)  # same token key: nothing to say
    assert (state / "enrollment/ca.crt").read_bytes() == ca_before
    assert (state / "trust/root.json").read_bytes() == b'{"v": 2}'


def _archive(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.type = (len(data), kind) if kind == tarfile.REGTYPE else (0, kind)
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.mark.parametrize("archive", [_archive("../escaped"), _archive("/abs/escaped"),
                                     _archive("root.json", kind=tarfile.SYMTYPE)],
                         ids=["dot-dot", "absolute", "symlink"])
def test_a_hostile_trust_archive_is_refused_and_writes_nothing_outside(tmp_path, archive):
    seed = make_seed(tmp_path / "a")
    (seed / "trust.tar.gz").write_bytes(archive)
    state = tmp_path / "state"
    with pytest.raises(ConfigError) as e:
        seed_state(seed, state)
    assert e.value.reason == "BadSeed"
    assert not (state / "trust").exists() and not (tmp_path / "escaped").exists()


def test_the_command_says_which_seed_file_is_missing_in_one_line(tmp_path):
    seed = make_seed(tmp_path / "a")
    (seed / "token.key").unlink()
    out = subprocess.run([sys.executable, "-m", "skerry", "hub", "seed", "--from", str(seed), "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "token.key: missing from the seed" in out.stderr
