"""``skerry seal`` does what kubeseal does, against a live sealer over mutual TLS (and its HTTP cert endpoint)."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from skerry.core import sealedsecret
from skerry.core.errors import PermissionDenied, SealError
from skerry.sealer import crypto
from skerry.sealer.keys import KeyRegistry

from .bitnami_reference import reference_open
from .helpers import SECRET_VALUE, Released, ServerThread, run_cli, sealed_secret, sealer_config


def tls_args(files) -> list[str]:
    return ["--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]


SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "shop"}},
    "type": "Opaque",
    "stringData": {"password": SECRET_VALUE},
}


class LiveSealer:
    def __init__(self, server: ServerThread, keys, hub: Released, registry):
        self.server, self.keys, self.hub, self.registry = server, keys, hub, registry

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def cert_url(self) -> str:
        return f"http://127.0.0.1:{self.server.app.cert_port}/v1/cert.pem"


# How long a live sealer may take to notice a key rotated or retired by the CLI (it looks every 0.2 s;
# loading RSA-4096 keys on a machine shared by several test runs took over 10 s).
KEYS_RELOAD_BOUND = 60.0


def start_live(mtls, pristine_keys_dir, root, refresh=60.0):
    keys = root / "keys"
    shutil.copytree(pristine_keys_dir, keys)
    hub = Released(root)  # the hub's trust repository: what it releases, the sealer verifies
    domain_map = root / "domains.yaml"
    domain_map.write_text("clusters:\n  cluster-a: [default, no-oslo]\n  '*': [default]\n")
    config = sealer_config(
        mtls,
        keys,
        domains=("default", "no-oslo"),
        trust_root=hub.world.root,
        cluster_domains=domain_map,
        cert_listen="127.0.0.1:0",
        keys_refresh_seconds=refresh,
    )
    server = ServerThread(config)
    # 2048-bit keys for the extra domain keep the test quick; the default domain's key is 4096.
    server.app.registry = server.app.gate._registry = KeyRegistry.from_directory(keys, key_bits=2048)
    return server, keys, hub


@pytest.fixture(scope="module")
def live(mtls, pristine_keys_dir, tmp_path_factory):
    server, keys, hub = start_live(mtls, pristine_keys_dir, tmp_path_factory.mktemp("parity"))
    with server:
        yield LiveSealer(server, keys, hub, server.app.registry)


def test_certificate_is_served_over_plain_http_and_nothing_else(live):
    with urllib.request.urlopen(live.cert_url, timeout=5) as resp:
        assert resp.read() == live.registry.sealing_key().cert_pem
        assert resp.headers["X-Skerry-Key-Id"] == live.registry.sealing_key().key_id
    with urllib.request.urlopen(live.cert_url + "?domain=no-oslo", timeout=5) as resp:
        assert resp.read() == live.registry.sealing_key("no-oslo").cert_pem
    for url, code in ((live.cert_url.replace("cert.pem", "verify"), 404), (live.cert_url + "?domain=mars", 404)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=5)
        err.value.close()  # an HTTPError holds the response (and its socket) open
        assert err.value.code == code
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(live.cert_url, data=b"x", method="POST"), timeout=5)
    err.value.close()
    assert err.value.code == 405


def test_seal_with_a_certificate_url_and_fetch_cert_from_it(live, capsys, monkeypatch):
    code, out, err = run_cli(["seal", "--fetch-cert", "--cert", live.cert_url], capsys)
    assert (code, err) == (0, "") and out.encode() == live.registry.sealing_key().cert_pem
    code, out, err = run_cli(["seal", "--cert", live.cert_url], capsys, json.dumps(SECRET), monkeypatch)
    assert code == 0, err
    sealed = yaml.safe_load(out)
    item = crypto.decode_item(sealed["spec"]["encryptedData"]["password"])
    assert live.registry.unseal("default", item, b"shop/db")[0] == SECRET_VALUE.encode()


def test_seal_for_several_domains_gives_one_sealed_secret_per_region(live, mtls, capsys, monkeypatch):
    code, out, err = run_cli(
        ["seal", "--sealer", live.address, *tls_args(mtls.operator), "--domain", "default,no-oslo"],
        capsys, json.dumps(SECRET), monkeypatch,
    )
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    assert [d["metadata"]["annotations"][sealedsecret.ANNOTATION_DOMAIN] for d in docs] == ["default", "no-oslo"]
    for doc in docs:
        domain = doc["metadata"]["annotations"][sealedsecret.ANNOTATION_DOMAIN]
        assert doc["metadata"]["annotations"][sealedsecret.ANNOTATION_KEY_ID] == live.registry.sealing_key(domain).key_id
        item = crypto.decode_item(doc["spec"]["encryptedData"]["password"])
        assert live.registry.unseal(domain, item, b"shop/db")[0] == SECRET_VALUE.encode()
        other = "no-oslo" if domain == "default" else "default"
        with pytest.raises(SealError):
            live.registry.unseal(other, item, b"shop/db")


def test_cert_files_name_their_domain(live, capsys, monkeypatch, tmp_path):
    paths = []
    for d in ("default", "no-oslo"):
        p = tmp_path / f"{d}.crt"
        p.write_bytes(live.registry.sealing_key(d).cert_pem)
        paths += ["--cert", str(p)]
    code, out, err = run_cli(["seal", *paths, "--domain", "no-oslo"], capsys, json.dumps(SECRET), monkeypatch)
    assert code == 0, err
    assert yaml.safe_load(out)["metadata"]["annotations"][sealedsecret.ANNOTATION_DOMAIN] == "no-oslo"
    code, _, err = run_cli(["seal", *paths[:2], "--domain", "eu-west"], capsys, json.dumps(SECRET), monkeypatch)
    assert code == 1 and "no --cert given for domain(s) eu-west" in err


def agent_unsealer(live, files):
    from skerry.agent.secrets import GrpcUnsealer

    return GrpcUnsealer(live.address, files)


def test_agent_unseals_through_its_signed_bundle_only(live, mtls):
    from skerry.agent.secrets import bundle_secrets, secret_from_sealed

    key = live.registry.sealing_key()
    obj = sealed_secret(key, password=SECRET_VALUE)
    meta, raw = live.hub("cluster-a", [obj])
    unsealer = agent_unsealer(live, mtls.agent)
    try:
        with bundle_secrets(unsealer, meta, raw):
            secret = secret_from_sealed(obj, unsealer)
            assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE
            assert secret["metadata"]["labels"] == {"app": "shop"}
            with pytest.raises(SealError, match="has no SealedSecret shop/elsewhere"):
                secret_from_sealed({**obj, "metadata": {"name": "elsewhere", "namespace": "shop"}}, unsealer)
        assert unsealer._batch is None, "plaintext is dropped when the reconcile ends"
        # Outside a bundle the direct path is refused by this sealer.
        with pytest.raises(PermissionDenied, match="only SealedSecrets of a hub-signed bundle"):
            secret_from_sealed(obj, unsealer)
        # A bundle released for another cluster is refused for every secret in it: its bytes are a path of
        # cluster-a (the caller's certificate) that neither the evidence nor the director holds.
        # Which check names it depends on the director bin the path hashes into (the bundle's digest varies
        # run to run): a bin the evidence lacks fails the TUF lookup, a bin it holds does not list the path.
        meta, raw = live.hub("cluster-b", [obj], release=2)
        with bundle_secrets(unsealer, meta, raw):
            with pytest.raises(PermissionDenied, match="bundle unseal was refused too: .*(evidence of cluster-a "
                               r"refused|the director does not name releases/dev/cluster-a/[0-9a-f]{64}\.json for "
                               "cluster-a)"):
                secret_from_sealed(obj, unsealer)
    finally:
        unsealer.close()


def test_validate_and_re_encrypt_go_through_the_sealer_for_operators(live, mtls, capsys, monkeypatch, tmp_path):
    key = live.registry.sealing_key()
    good = sealed_secret(key, password=SECRET_VALUE)
    code, _, err = run_cli(
        ["seal", "--validate", "--sealer", live.address, *tls_args(mtls.operator)], capsys, json.dumps(good), monkeypatch
    )
    assert code == 0 and "shop/db: valid" in err
    bad = json.loads(json.dumps(good))
    bad["metadata"]["name"] = "renamed"
    code, _, err = run_cli(
        ["seal", "--validate", "--sealer", live.address, *tls_args(mtls.operator)], capsys, json.dumps(bad), monkeypatch
    )
    assert code == 1 and "wrong scope, namespace or name" in err
    code, _, err = run_cli(
        ["seal", "--validate", "--sealer", live.address, *tls_args(mtls.agent)], capsys, json.dumps(good), monkeypatch
    )
    assert code == 1 and "needs role skerry:operator" in err


def test_raw_values_unseal_in_each_scope(live, capsys, monkeypatch, tmp_path):
    cert = tmp_path / "c.crt"
    cert.write_bytes(live.registry.sealing_key().cert_pem)
    value = tmp_path / "value"
    value.write_bytes(b"raw \x00 bytes")
    for scope, args, label in (
        ("strict", ["--name", "db", "--namespace", "shop"], b"shop/db"),
        ("namespace-wide", ["--namespace", "shop"], b"shop"),
        ("cluster-wide", [], b""),
    ):
        code, out, err = run_cli(
            ["seal", "--raw", "--scope", scope, "--cert", str(cert), "--from-file", str(value), *args], capsys
        )
        assert code == 0, err
        assert live.registry.unseal("default", crypto.decode_item(out.strip()), label)[0] == b"raw \x00 bytes"
    code, _, err = run_cli(["seal", "--raw", "--cert", str(cert), "--from-file", str(value)], capsys)
    assert code == 1 and "strict scope needs --namespace and --name" in err


def test_merge_into_adds_and_replaces_items_in_place(live, capsys, monkeypatch, tmp_path):
    cert = tmp_path / "c.crt"
    cert.write_bytes(live.registry.sealing_key().cert_pem)
    target = tmp_path / "sealed.yaml"
    code, out, _ = run_cli(["seal", "--cert", str(cert)], capsys, json.dumps(SECRET), monkeypatch)
    target.write_text(out)
    extra = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ignored"},
             "stringData": {"password": "new", "token": "t"}}
    code, out, err = run_cli(["seal", "--cert", str(cert), "--merge-into", str(target)], capsys, json.dumps(extra), monkeypatch)
    assert (code, out) == (0, ""), err
    merged = yaml.safe_load(target.read_text())
    assert merged["metadata"]["name"] == "db" and sorted(merged["spec"]["encryptedData"]) == ["password", "token"]
    opened = {k: live.registry.unseal("default", crypto.decode_item(v), b"shop/db")[0]
              for k, v in merged["spec"]["encryptedData"].items()}
    assert opened == {"password": b"new", "token": b"t"}


def test_recovery_unseal_offline_from_a_key_directory_or_backup_matches_the_independent_reference(
    live, capsys, monkeypatch, tmp_path
):
    cert = tmp_path / "c.crt"
    key = live.registry.sealing_key()
    cert.write_bytes(key.cert_pem)
    code, sealed_text, _ = run_cli(["seal", "--cert", str(cert)], capsys, json.dumps(SECRET), monkeypatch)
    sealed = yaml.safe_load(sealed_text)
    # The independent implementation opens what skerry seal wrote, given the private key.
    item = base64.b64decode(sealed["spec"]["encryptedData"]["password"])
    assert reference_open(key.private_key, item, b"shop/db") == SECRET_VALUE.encode()
    pem = tmp_path / "k.pem"
    pem.write_bytes(key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    backup = tmp_path / "backup.json"
    assert run_cli(["sealer", "keys", "--keys-dir", str(live.keys), "backup", "-f", str(backup), "--all-domains"], capsys)[0] == 0
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    for source in (pem, live.keys, backup):
        code, out, err = run_cli(
            ["seal", "--recovery-unseal", "--recovery-private-key", str(source), "-o", "json"], capsys, sealed_text, monkeypatch
        )
        assert code == 0, err
        secret = json.loads(out)
        assert secret["kind"] == "Secret" and secret["metadata"]["labels"] == {"app": "shop"}
        assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE


@pytest.fixture
def rotating(mtls, pristine_keys_dir, tmp_path):
    server, keys, hub = start_live(mtls, pristine_keys_dir, tmp_path, refresh=0.2)
    with server:
        yield LiveSealer(server, keys, hub, server.app.registry)


def test_rotate_re_encrypt_a_repo_then_retire_the_old_key(rotating, mtls, capsys, monkeypatch, tmp_path):
    import time

    live = rotating
    old = live.registry.sealing_key()
    repo = tmp_path / "repo" / "overlays" / "prod"
    repo.mkdir(parents=True)
    cert = tmp_path / "old.crt"
    cert.write_bytes(old.cert_pem)
    code, out, _ = run_cli(["seal", "--cert", str(cert)], capsys, json.dumps(SECRET), monkeypatch)
    (repo / "sealed-db.yaml").write_text(out)
    (repo / "deploy.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    keys_cli = ["sealer", "keys", "--keys-dir", str(live.keys)]

    code, new_id, err = run_cli([*keys_cli, "rotate", "--compromised", old.key_id], capsys)
    assert code == 0 and "re-encrypt, then retire" in err
    new_id = new_id.strip()
    # An event wait: the sealer re-reads storage every 0.2 s; the bound only matters on a loaded machine.
    deadline = time.monotonic() + KEYS_RELOAD_BOUND
    while live.registry.sealing_key().key_id != new_id and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.registry.sealing_key().key_id == new_id, "the running sealer picked up the new key"

    code, _, err = run_cli([*keys_cli, "retire", old.key_id, "--repo", str(tmp_path / "repo")], capsys)
    assert code == 1 and "still open only with key" in err and "sealed-db.yaml: shop/db" in err

    code, _, err = run_cli(
        ["seal", "--re-encrypt", "--in-place", str(tmp_path / "repo"), "--sealer", live.address, *tls_args(mtls.operator)],
        capsys,
    )
    assert code == 0, err
    assert "1 file(s) re-encrypted, 0 failed" in err
    resealed = yaml.safe_load((repo / "sealed-db.yaml").read_text())
    assert resealed["metadata"]["annotations"][sealedsecret.ANNOTATION_KEY_ID] == new_id

    code, _, err = run_cli([*keys_cli, "retire", old.key_id, "--repo", str(tmp_path / "repo")], capsys)
    assert code == 0, err
    deadline = time.monotonic() + KEYS_RELOAD_BOUND
    while len(live.registry.keys()) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [k.key_id for k in live.registry.keys()] == [new_id]

    # The re-encrypted secret still unseals for its agent; the old sealed form no longer does.
    unsealer = agent_unsealer(live, mtls.agent)
    try:
        from skerry.agent.secrets import bundle_secrets, secret_from_sealed

        stale = yaml.safe_load(out)
        stale["metadata"]["name"] = "stale"
        stale_obj = sealed_secret(old, name="stale")
        meta, raw = live.hub("cluster-a", [resealed, stale_obj])
        with bundle_secrets(unsealer, meta, raw):
            secret = secret_from_sealed(resealed, unsealer)
            assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE
            with pytest.raises(SealError):
                secret_from_sealed(stale_obj, unsealer)
    finally:
        unsealer.close()


def test_a_sealer_that_trusts_no_hub_refuses_bundles_and_the_agent_falls_back(sealer, mtls, sealing_key, tmp_path):
    from skerry.agent.secrets import GrpcUnsealer, bundle_secrets, secret_from_sealed

    obj = sealed_secret(sealing_key, password=SECRET_VALUE)
    meta, raw = Released(tmp_path)("cluster-a", [obj])
    unsealer = GrpcUnsealer(sealer.address, mtls.agent)
    try:
        with bundle_secrets(unsealer, meta, raw):
            secret = secret_from_sealed(obj, unsealer)
        assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE
    finally:
        unsealer.close()
