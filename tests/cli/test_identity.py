"""Operator identity: certificates from the hub's CA, contexts, and where each client setting comes from."""

from __future__ import annotations

import json
import pathlib
import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from skerry.cli import contexts
from skerry.core.tls import ROLE_OPERATOR, identity_from_pem

from .helpers import error_line, running_hub, skerry

FLAGS = {"hub": None, "tls_ca": None, "tls_cert": None, "tls_key": None}


def write_config(home: pathlib.Path, current: str, *named: str) -> None:
    config = contexts.Config(current=current, contexts=tuple(
        contexts.Context(name=n, hub=f"{n}.example:7440", tls_ca=f"/{n}/ca", tls_cert=f"/{n}/crt", tls_key=f"/{n}/key")
        for n in named))
    contexts.save(contexts.config_path({"XDG_CONFIG_HOME": str(home)}), config)


def test_each_setting_comes_from_the_flag_then_the_variable_then_the_current_context(tmp_path):
    write_config(tmp_path, "prod", "prod", "dev")
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    only_context = contexts.resolve_hub(FLAGS, env)
    assert (only_context.address, str(only_context.tls_key)) == ("prod.example:7440", "/prod/key")
    assert set(only_context.sources.values()) == {"context prod"}

    env |= {"SKERRY_HUB": "env-hub:1", "SKERRY_TLS_CERT": "/env/crt"}
    mixed = contexts.resolve_hub({**FLAGS, "hub": "flag-hub:2"}, env)
    assert mixed.address == "flag-hub:2" and mixed.sources["hub"] == "flag --hub"
    assert str(mixed.tls_cert) == "/env/crt" and mixed.sources["tls-cert"] == "$SKERRY_TLS_CERT"
    assert str(mixed.tls_ca) == "/prod/ca" and mixed.sources["tls-ca"] == "context prod"

    picked = contexts.resolve_hub(FLAGS, {**env, "SKERRY_CONTEXT": "dev"})
    assert str(picked.tls_ca) == "/dev/ca" and picked.address == "env-hub:1"


def test_nothing_configured_names_every_way_to_say_it(tmp_path):
    with pytest.raises(contexts.ContextError) as e:
        contexts.resolve_hub(FLAGS, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert "--hub --tls-ca --tls-cert --tls-key" in str(e.value) and "$SKERRY_HUB" in str(e.value)
    assert "skerry login" in str(e.value)
    write_config(tmp_path, "gone", "prod")
    with pytest.raises(contexts.ContextError, match="context 'gone'"):
        contexts.resolve_hub(FLAGS, {"XDG_CONFIG_HOME": str(tmp_path)})


def test_the_config_file_honours_xdg_config_home_else_home():
    assert contexts.config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == pathlib.Path("/x/skerry/config.yaml")
    assert contexts.config_path({"HOME": "/h"}) == pathlib.Path("/h/.config/skerry/config.yaml")


def test_a_broken_config_file_is_one_line_naming_it(tmp_path):
    path = contexts.config_path({"XDG_CONFIG_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_text("contexts: {not: a list}\n")
    proc = skerry("status", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert proc.returncode == 1 and str(path) in error_line(proc)


def test_an_oversized_contexts_file_is_refused_naming_it_and_the_limit(tmp_path):
    path = contexts.config_path({"XDG_CONFIG_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_bytes(b"#" * (contexts.MAX_CONFIG_BYTES + 1))
    with pytest.raises(contexts.ContextError) as e:
        contexts.load(path)
    assert str(path) in str(e.value) and str(contexts.MAX_CONFIG_BYTES) in str(e.value)
    assert contexts.load(tmp_path / "never-written.yaml") == contexts.Config()  # no file: no contexts yet


def test_login_refuses_an_oversized_certificate_naming_it_and_the_limit(tmp_path):
    from skerry.cli.identity import MAX_PEM_BYTES

    big = tmp_path / "big.crt"
    big.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * MAX_PEM_BYTES)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = skerry("login", "hub.example:7440", "--no-check", "--tls-ca", str(big), "--tls-cert", str(big),
                  "--tls-key", str(big), env=env)
    assert proc.returncode == 2
    line = error_line(proc)
    assert str(big) in line and str(MAX_PEM_BYTES) in line
    assert not contexts.config_path(env).exists()


def test_operator_add_issues_a_client_certificate_from_the_hubs_ca(tmp_path):
    state = tmp_path / "hub-state"
    proc = skerry("operator", "add", "alice", "--state-dir", str(state), "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    crt, key = (tmp_path / "out" / "alice.crt"), (tmp_path / "out" / "alice.key")
    ident = identity_from_pem(crt.read_bytes())
    assert ident.name == "alice" and ident.roles == {ROLE_OPERATOR}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    ca = x509.load_pem_x509_certificate((state / "enrollment" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 29 < lifetime.days <= 30


def _csr(tmp_path: pathlib.Path, cn: str) -> pathlib.Path:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    path = tmp_path / f"{cn}.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


def test_operator_add_signs_a_csr_whose_name_matches_and_refuses_another(tmp_path):
    state, out = str(tmp_path / "hub-state"), str(tmp_path / "out")
    proc = skerry("operator", "add", "bob", "--csr", str(_csr(tmp_path, "bob")), "--state-dir", state, "--out-dir", out)
    assert proc.returncode == 0, proc.stderr
    assert identity_from_pem((tmp_path / "out" / "bob.crt").read_bytes()).name == "bob"
    assert not (tmp_path / "out" / "bob.key").exists()  # the key stays with bob
    proc = skerry("operator", "add", "carol", "--csr", str(_csr(tmp_path, "mallory")), "--state-dir", state,
                  "--out-dir", out)
    assert proc.returncode == 1 and "CSR names operator 'mallory'" in error_line(proc)
    assert skerry("operator", "add", "dave", "--role", "agent", "--state-dir", state).returncode == 2
    proc = skerry("operator", "add", "eve", "--lifetime", "9000h", "--state-dir", state, "--out-dir", out)
    assert proc.returncode == 1 and "lifetime" in error_line(proc)


def test_context_list_use_and_delete(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    write_config(tmp_path, "prod", "prod", "dev")
    listed = skerry("context", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [ln.split() for ln in listed.stdout.splitlines()] == [
        ["CURRENT", "NAME", "HUB"], ["*", "prod", "prod.example:7440"], ["-", "dev", "dev.example:7440"]]
    assert skerry("context", "use", "dev", env=env).returncode == 0
    doc = json.loads(skerry("context", "list", "-o", "json", env=env).stdout)
    assert [c["name"] for c in doc["items"] if c["current"] == "*"] == ["dev"]
    assert skerry("context", "use", "nope", env=env).returncode == 1
    assert skerry("context", "delete", "prod", env=env).returncode == 0
    assert [c["name"] for c in yaml.safe_load(contexts.config_path(env).read_text())["contexts"]] == ["dev"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("operator-hub"), interval=1.0) as stack:
        yield stack


def test_operator_add_then_login_then_status_and_freight_with_no_tls_flag(hub, tmp_path, monkeypatch):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    for var in ("SKERRY_HUB", "SKERRY_TLS_CA", "SKERRY_TLS_CERT", "SKERRY_TLS_KEY", "SKERRY_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    added = skerry("operator", "add", "alice", "--state-dir", str(hub.workdir / "hub-state"),
                   "--out-dir", str(tmp_path / "me"))
    assert added.returncode == 0, added.stderr
    login = skerry("login", hub.hub_address, "--name", "local", "--tls-ca", str(hub.pki_dir / "ca.crt"),
                   "--tls-cert", str(tmp_path / "me" / "alice.crt"), "--tls-key", str(tmp_path / "me" / "alice.key"),
                   env=env)
    assert login.returncode == 0, login.stderr
    stored = yaml.safe_load(contexts.config_path(env).read_text())
    assert stored["current-context"] == "local"
    assert stat.S_IMODE(pathlib.Path(stored["contexts"][0]["tls-key"]).stat().st_mode) == 0o600

    status = skerry("status", env=env)
    assert status.returncode == 0, status.stderr
    rows = [ln.split() for ln in status.stdout.splitlines()]
    assert rows[0][:3] == ["CLUSTER", "DESIRED", "APPLIED"]
    assert {r[0] for r in rows[1:]} == {"oslo-dev", "oslo-prod"}
    freight = skerry("freight", "web", "--env", "dev", "-o", "yaml", env=env)
    assert freight.returncode == 0, freight.stderr
    assert yaml.safe_load(freight.stdout)["app"] == "web"
    table = skerry("freight", "web", env=env)
    assert table.returncode == 0, table.stderr
    rows = [ln.split() for ln in table.stdout.splitlines()]
    assert rows[0] == ["ENV", "REVISION", "HEALTHY", "IMAGES", "CLUSTERS"]
    assert [r[0] for r in rows[1:]] == ["dev", "prod"]
    assert rows[1][-1] == "oslo-dev:pending"  # no agent runs here
    envs = skerry("environments", env=env)
    assert envs.returncode == 0, envs.stderr
    by_env = {ln.split()[0]: ln for ln in envs.stdout.splitlines()[1:]}
    assert "10m" in by_env["prod"] and "1 of 2" in by_env["prod"] and "5m" in by_env["dev"]
    # a flag still wins over the context: another address is tried, and named
    refused = skerry("status", "--hub", "127.0.0.1:1", env=env)
    assert refused.returncode == 1 and "127.0.0.1:1" in error_line(refused)


def test_login_checks_the_credentials_with_the_hub_before_storing_them(hub, tmp_path):
    from skerry.core.tls import CertificateAuthority, write_keypair

    stranger = CertificateAuthority.create("not-the-hubs").issue("mallory", role=ROLE_OPERATOR)
    crt, key = write_keypair(tmp_path, "mallory", stranger)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = skerry("login", hub.hub_address, "--tls-ca", str(hub.pki_dir / "ca.crt"), "--tls-cert", str(crt),
                  "--tls-key", str(key), env=env)
    assert proc.returncode == 1, proc.stderr
    assert hub.hub_address in error_line(proc)
    assert not contexts.config_path(env).exists()
