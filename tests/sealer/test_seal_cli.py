"""``skerry seal`` and ``skerry sealer serve`` as a user runs them."""

from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import yaml

from skerry.cli import seal as seal_cli
from skerry.cli import sealer as sealer_cli
from skerry.core import sealedsecret
from skerry.sealer import crypto
from skerry.testing.devstack import Stack

from .helpers import SECRET_VALUE, run_cli

REPO = pathlib.Path(__file__).resolve().parents[2]

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "db-credentials",
        "namespace": "shop-prod",
        "labels": {"app": "shop"},
        "annotations": {
            "team": "payments",
            # kubectl's copy of the whole object, plaintext included: must never reach the output.
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                {"stringData": {"password": SECRET_VALUE}}
            ),
        },
    },
    "type": "kubernetes.io/basic-auth",
    "data": {
        "username": base64.b64encode(b"shop").decode(),
        "password": base64.b64encode(b"overridden").decode(),
    },
    "stringData": {"password": SECRET_VALUE, "url": "postgres://db:5432/shop"},
}
EXPECTED = {"username": b"shop", "password": SECRET_VALUE.encode(), "url": b"postgres://db:5432/shop"}


def unseal_all(registry, sealed: dict) -> dict[str, bytes]:
    """What the agent would get back: the label comes from the SealedSecret's own metadata."""
    meta = sealed["metadata"]
    scope = sealedsecret.scope_from_annotations(meta.get("annotations"))
    label = sealedsecret.encryption_label(meta.get("namespace", ""), meta["name"], scope)
    return {
        k: registry.unseal("default", crypto.decode_item(v), label)[0]
        for k, v in sealed["spec"]["encryptedData"].items()
    }


@pytest.fixture
def cert_file(sealing_key, tmp_path) -> pathlib.Path:
    path = tmp_path / "sealer.crt"
    path.write_bytes(sealing_key.cert_pem)
    return path


def test_yaml_secret_with_data_and_string_data_round_trips(shared_registry, cert_file, tmp_path, capsys):
    src = tmp_path / "secret.yaml"
    src.write_text(yaml.safe_dump(SECRET))
    code, out, err = run_cli(["seal", "-f", str(src), "--cert", str(cert_file)], capsys)
    assert (code, err) == (0, "")
    sealed = yaml.safe_load(out)
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1" and sealed["kind"] == "SealedSecret"
    key = shared_registry.sealing_key()
    assert sealed["metadata"] == {
        "name": "db-credentials",
        "namespace": "shop-prod",
        # Skerry's hints on the SealedSecret (never on the template, so never on the Secret).
        "annotations": {sealedsecret.ANNOTATION_KEY_ID: key.key_id, sealedsecret.ANNOTATION_DOMAIN: "default"},
    }
    assert sorted(sealed["spec"]["encryptedData"]) == ["password", "url", "username"]
    assert sealed["spec"]["template"] == {
        "metadata": {
            "name": "db-credentials",
            "namespace": "shop-prod",
            "labels": {"app": "shop"},
            "annotations": {"team": "payments"},
        },
        "type": "kubernetes.io/basic-auth",
    }
    assert unseal_all(shared_registry, sealed) == EXPECTED
    assert SECRET_VALUE not in out


def test_json_from_stdin_to_json_output(shared_registry, cert_file, capsys, monkeypatch):
    code, out, err = run_cli(
        ["seal", "--cert", str(cert_file), "--format", "json"],
        capsys,
        json.dumps(SECRET, indent="\t"),
        monkeypatch,
    )
    assert (code, err) == (0, "")
    sealed = json.loads(out)
    assert unseal_all(shared_registry, sealed) == EXPECTED


def test_scope_comes_from_the_secrets_annotations(shared_registry, cert_file, capsys, monkeypatch):
    secret = json.loads(json.dumps(SECRET))
    secret["metadata"]["annotations"][sealedsecret.ANNOTATION_NAMESPACE_WIDE] = "true"
    code, out, _ = run_cli(["seal", "--cert", str(cert_file)], capsys, yaml.safe_dump(secret), monkeypatch)
    sealed = yaml.safe_load(out)
    assert sealed["metadata"]["annotations"][sealedsecret.ANNOTATION_NAMESPACE_WIDE] == "true"
    assert sealedsecret.ANNOTATION_CLUSTER_WIDE not in sealed["metadata"]["annotations"]
    assert (
        sealed["spec"]["template"]["metadata"]["annotations"][sealedsecret.ANNOTATION_NAMESPACE_WIDE]
        == "true"
    )
    label = sealedsecret.encryption_label("shop-prod", "", sealedsecret.NAMESPACE_WIDE)
    item = crypto.decode_item(sealed["spec"]["encryptedData"]["password"])
    assert shared_registry.unseal("default", item, label)[0] == SECRET_VALUE.encode()


def test_scope_flag_overrides_the_annotations(shared_registry, cert_file, capsys, monkeypatch):
    secret = json.loads(json.dumps(SECRET))
    secret["metadata"]["annotations"][sealedsecret.ANNOTATION_NAMESPACE_WIDE] = "true"
    code, out, _ = run_cli(
        ["seal", "--cert", str(cert_file), "--scope", "cluster-wide"], capsys, json.dumps(secret), monkeypatch
    )
    sealed = yaml.safe_load(out)
    assert sealed["metadata"]["annotations"][sealedsecret.ANNOTATION_CLUSTER_WIDE] == "true"
    assert sealedsecret.ANNOTATION_NAMESPACE_WIDE not in sealed["metadata"]["annotations"]
    tmpl = sealed["spec"]["template"]["metadata"]["annotations"]
    assert (
        sealedsecret.ANNOTATION_NAMESPACE_WIDE not in tmpl
        and tmpl[sealedsecret.ANNOTATION_CLUSTER_WIDE] == "true"
    )
    item = crypto.decode_item(sealed["spec"]["encryptedData"]["url"])
    assert shared_registry.unseal("default", item, b"")[0] == EXPECTED["url"]


def test_namespace_flag_fills_a_missing_namespace(shared_registry, cert_file, capsys, monkeypatch):
    secret = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    code, out, err = run_cli(
        ["seal", "--cert", str(cert_file), "-n", "team-a"], capsys, json.dumps(secret), monkeypatch
    )
    assert code == 0, err
    sealed = yaml.safe_load(out)
    assert sealed["metadata"]["namespace"] == "team-a"
    assert sealed["spec"]["template"]["type"] == "Opaque"
    assert unseal_all(shared_registry, sealed) == {"k": b"v"}


def test_fetch_cert_and_seal_through_a_live_sealer(sealer, mtls, capsys, monkeypatch):
    tls_args = Stack.tls_args(mtls.operator)
    code, out, err = run_cli(["seal", "--fetch-cert", "--sealer", sealer.address, *tls_args], capsys)
    assert (code, err) == (0, "")
    assert out.encode() == sealer.app.registry.sealing_key().cert_pem
    code, out, err = run_cli(
        ["seal", "--sealer", sealer.address, *tls_args], capsys, json.dumps(SECRET), monkeypatch
    )
    assert (code, err) == (0, "")
    assert unseal_all(sealer.app.registry, yaml.safe_load(out)) == EXPECTED


def _bad_yaml() -> str:
    return f"kind: Secret\nstringData:\n  password: {SECRET_VALUE}: oops\n"


@pytest.mark.parametrize(
    "argv,stdin,expected",
    [
        (["-f", "/nonexistent/secret.yaml"], None, "cannot read /nonexistent/secret.yaml"),
        ([], _bad_yaml(), "stdin: invalid YAML: line 3 column 34: mapping values are not allowed"),
        ([], "kind: ConfigMap\napiVersion: v1\n", "expected apiVersion v1, kind Secret"),
        ([], "kind: Secret\nmetadata: {name: x}\nstringData: {k: v}\n", "needs metadata.namespace"),
        (
            [],
            "kind: Secret\nmetadata: {name: x, namespace: y}\nstringData: {port: 5432}\n",
            "'port' must be a string",
        ),
        (
            [],
            "kind: Secret\nmetadata: {name: x, namespace: y}\ndata: {k: '***'}\n",
            "data item 'k' is not valid base64",
        ),
        ([], "kind: Secret\nmetadata: {name: x, namespace: y}\n", "no data or stringData"),
        ([], "---\nkind: Secret\n---\nkind: Secret\n", "exactly one Secret, found 2"),
        (["--scope", "strict", "-n", "other"], json.dumps(SECRET), "--namespace says 'other'"),
    ],
)
def test_bad_input_is_one_line_naming_the_source_and_no_value(
    cert_file, capsys, monkeypatch, argv, stdin, expected
):
    code, out, err = run_cli(["seal", "--cert", str(cert_file), *argv], capsys, stdin, monkeypatch)
    assert code == 1 and out == ""
    assert err.startswith("skerry seal: error: ") and err.count("\n") == 1
    assert expected in err
    assert SECRET_VALUE not in err


def test_missing_certificate_source_is_explained(capsys, tmp_path):
    code, _, err = run_cli(["seal"], capsys)
    assert code == 1 and "--cert FILE|URL or --sealer HOST:PORT" in err
    code, _, err = run_cli(["seal", "--sealer", "127.0.0.1:1"], capsys)
    assert code == 1 and "--sealer needs mutual TLS: also give --tls-ca --tls-cert --tls-key" in err
    bogus = tmp_path / "bogus.crt"
    bogus.write_text("not a certificate")
    code, _, err = run_cli(["seal", "--cert", str(bogus)], capsys)
    assert code == 1 and f"{bogus}: not a PEM X.509 certificate" in err


def test_unreachable_or_untrusting_sealer_is_one_line_naming_the_peer(sealer, mtls, capsys):
    files = mtls.foreign
    argv = ["seal", "--fetch-cert", *Stack.tls_args(files)]
    code, _, err = run_cli([*argv, "--sealer", sealer.address, "--timeout", "5"], capsys)
    assert code == 1
    assert (
        err.startswith(f"skerry seal: error: cannot reach sealer {sealer.address}") and err.count("\n") == 1
    )


def test_add_commands_registers_seal_and_sealer_serve():
    parser = argparse.ArgumentParser(prog="skerry")
    sub = parser.add_subparsers(dest="command")
    seal_cli.add_commands(sub)
    sealer_cli.add_commands(sub)
    args = parser.parse_args(["seal", "--cert", "c.pem", "--format", "json"])
    assert args.func is seal_cli.seal_command and args.format == "json"
    args = parser.parse_args(["sealer", "serve", "--listen", "127.0.0.1:0"])
    assert args.func is sealer_cli.serve_command and args.listen == "127.0.0.1:0"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def test_module_entry_point_seals_and_help_is_quick(shared_registry, cert_file):
    started = time.monotonic()
    helped = subprocess.run(
        [sys.executable, "-m", "skerry", "seal", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert helped.returncode == 0 and "--fetch-cert" in helped.stdout
    assert time.monotonic() - started < 10
    proc = subprocess.run(
        [sys.executable, "-m", "skerry", "seal", "--cert", str(cert_file)],
        input=yaml.safe_dump(SECRET),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert unseal_all(shared_registry, yaml.safe_load(proc.stdout)) == EXPECTED


def test_sealer_serve_runs_until_sigterm(mtls, keys_dir, tmp_path):
    ready = tmp_path / "ready.json"
    env = {**_env(), "SKERRY_SEALER_TLS_CA": str(mtls.sealer.ca)}  # flags and environment combine
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skerry",
            "sealer",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(mtls.sealer.cert),
            "--tls-key",
            str(mtls.sealer.key),
            "--keys-dir",
            str(keys_dir),
            "--ready-file",
            str(ready),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "sealer did not become ready"
            time.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        files = mtls.agent
        fetched = subprocess.run(
            [
                sys.executable,
                "-m",
                "skerry",
                "seal",
                "--fetch-cert",
                "--sealer",
                f"127.0.0.1:{port}",
                *Stack.tls_args(files),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
        assert fetched.returncode == 0, fetched.stderr
        assert "BEGIN CERTIFICATE" in fetched.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not ready.exists()


def test_sealer_serve_without_tls_is_one_line(tmp_path):
    env = {k: v for k, v in _env().items() if not k.startswith("SKERRY_SEALER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "skerry", "sealer", "serve", "--keys-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("skerry sealer serve: error: the sealer only serves mutual TLS")
    assert proc.stderr.count("\n") == 1


def test_anchors_in_the_input_are_not_copied_into_the_sealed_secret(cert_file, tmp_path, capsys):
    manifest = tmp_path / "secret.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\n"
        "  annotations: &shared {team: payments, owner: ops}\n  labels: *shared\n"
        "stringData: {password: hunter2}\n"
    )
    code, out, err = run_cli(["seal", "--cert", str(cert_file), "-f", str(manifest)], capsys)
    assert (code, err) == (0, "")
    assert "&" not in out and "*" not in out
    sealed = yaml.safe_load(out)
    assert sealed["spec"]["template"]["metadata"]["labels"] == {"team": "payments", "owner": "ops"}


def test_an_alias_bomb_in_kind_is_one_short_line(cert_file, capsys, monkeypatch):
    from tests.hostile.hostile_inputs import kind_bomb

    code, out, err = run_cli(["seal", "--cert", str(cert_file)], capsys, kind_bomb().decode(), monkeypatch)
    assert code == 1 and out == "" and err.count("\n") == 1 and len(err) < 1024
    assert "aliases expand" in err


def test_a_200_mb_manifest_is_refused_without_reading_it_whole(cert_file, tmp_path, capsys):
    import tracemalloc

    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB to read, nothing on disk
    tracemalloc.start()
    try:
        code, out, err = run_cli(["seal", "--cert", str(cert_file), "-f", str(huge)], capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 1 and "over the" in err and err.count("\n") == 1
    assert peak < 20 * 1024 * 1024


def test_a_200_mb_certificate_file_is_refused_without_reading_it_whole(tmp_path, capsys, monkeypatch):
    import tracemalloc

    huge = tmp_path / "huge.crt"
    with open(huge, "wb") as f:
        f.truncate(200 * 1024 * 1024)
    tracemalloc.start()
    try:
        code, out, err = run_cli(["seal", "--cert", str(huge)], capsys, stdin="kind: Secret\n", monkeypatch=monkeypatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 1 and "over the" in err and str(huge) in err and err.count("\n") == 1
    assert peak < 20 * 1024 * 1024
