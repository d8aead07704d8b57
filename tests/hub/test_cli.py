"""``skerry render`` and ``skerry hub serve`` as a user runs them: real processes, one-line errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import yaml

from skerry.cli.hub import add_commands
from skerry.hub.source.git import GitSource
from skerry.hub.sync import build_revision

from .helpers import BROKEN_PROD, HARNESS, assert_one_line_error, kubectl_kustomize, skerry


def test_render_dir_prints_what_kustomize_build_prints(fleet_repo):
    proc = skerry("render", str(fleet_repo.path / "overlays/prod"))
    assert proc.returncode == 0, proc.stderr
    assert [d for d in yaml.safe_load_all(proc.stdout) if d] == kubectl_kustomize(
        fleet_repo.path / "overlays/prod"
    )


def test_render_dir_as_json_is_a_list(fleet_repo):
    proc = skerry("render", "platform/monitoring", "-o", "json", cwd=fleet_repo.path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "List"
    assert [o["metadata"]["name"] for o in doc["items"]] == ["monitoring", "node-agent", "node-agent"]


def test_render_cluster_prints_exactly_the_bundle_the_hub_signs(fleet_repo, tmp_path, engine):
    proc = skerry("render", "--repo", str(fleet_repo.path), "--cluster", "oslo-prod")
    assert proc.returncode == 0, proc.stderr
    source = GitSource(str(fleet_repo.path), cache_dir=tmp_path / "hub-state")
    outcome = build_revision(source, source.fetch(), engine)
    assert proc.stdout == outcome.bundles["oslo-prod"].data


def test_render_cluster_at_an_older_revision(fleet_repo):
    old = fleet_repo.head()
    fleet_repo.commit("break", BROKEN_PROD)
    proc = skerry("render", "--repo", str(fleet_repo.path), "--cluster", "oslo-prod", "--revision", old[:12])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source"]["revision"] == old


def test_render_cluster_as_yaml(fleet_repo):
    proc = skerry("render", "--repo", str(fleet_repo.path), "--cluster", "oslo-dev", "-o", "yaml")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    assert doc["kind"] == "Bundle" and doc["cluster"] == "oslo-dev"


def test_broken_overlay_is_one_error_line_naming_the_path(fleet_repo):
    fleet_repo.write(BROKEN_PROD)
    proc = skerry("render", str(fleet_repo.path / "overlays/prod"))
    assert_one_line_error(proc, "skerry render", "overlays/prod", "missing.yaml")
    assert proc.returncode == 1 and proc.stdout == b""


def test_broken_cluster_is_one_error_line_naming_the_path(fleet_repo):
    fleet_repo.commit("break", BROKEN_PROD)
    proc = skerry("render", "--repo", str(fleet_repo.path), "--cluster", "oslo-prod")
    assert_one_line_error(proc, "skerry render", "overlays/prod/kustomization.yaml", "missing.yaml")
    assert proc.returncode == 1


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--cluster", "ghost"], ["'ghost' is not in skerry.yaml"]),
        (["--cluster", "oslo-dev", "--revision", "nope"], ["unknown revision 'nope'"]),
        (["--cluster", "oslo-dev", "--branch", "release"], ["couldn't find remote ref refs/heads/release"]),
    ],
)
def test_render_cluster_errors_are_one_line(fleet_repo, args, needles):
    proc = skerry("render", "--repo", str(fleet_repo.path), *args)
    assert_one_line_error(proc, "skerry render", *needles)


def test_render_missing_directory_and_bad_arguments(tmp_path):
    assert_one_line_error(skerry("render", str(tmp_path / "nope")), "skerry render", "no such directory")
    bad = skerry("render", str(tmp_path), "--repo", "x")
    assert_one_line_error(bad, "skerry render", "not both")
    assert bad.returncode == 2
    assert_one_line_error(skerry("render"), "skerry render", "give DIR")


def test_render_broken_fleet_names_skerry_yaml(fleet_repo):
    fleet_repo.commit(
        "typo", {"skerry.yaml": "apiVersion: skerry.io/v1alpha1\nkind: Fleet\nclusters: [{name: A}]\n"}
    )
    proc = skerry("render", "--repo", str(fleet_repo.path), "--cluster", "oslo-dev")
    assert_one_line_error(proc, "skerry render", "skerry.yaml: clusters[0].name")


def test_hub_serve_has_a_flag_for_every_setting():
    parser = argparse.ArgumentParser(prog="skerry")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        (
            "hub serve --repo r --branch b --interval 5m --listen 0.0.0.0:1 --tls-ca ca --tls-cert c "
            "--tls-key k --trust-dir s --state-dir d --render-timeout 30s --ready-file f "
            "--log-level debug"
        ).split()
    )
    assert args.func.__name__ == "serve_command"
    assert (args.repo, args.branch, args.interval, args.listen, args.tls_ca, args.tls_cert, args.tls_key) == (
        "r",
        "b",
        "5m",
        "0.0.0.0:1",
        "ca",
        "c",
        "k",
    )
    assert (
        args.trust_dir,
        args.state_dir,
        args.render_timeout,
        args.ready_file,
        args.log_level,
    ) == ("s", "d", "30s", "f", "debug")


def test_hub_serve_without_tls_is_one_error_line(fleet_repo, tmp_path):
    proc = skerry("hub", "serve", "--repo", str(fleet_repo.path), "--state-dir", str(tmp_path))
    assert_one_line_error(proc, "skerry hub serve", "mutual TLS")


def test_hub_serve_runs_until_sigterm(fleet_repo, tmp_path, pki, dev_trust):
    import signal
    import time

    from skerry.core.tls import ROLE_HUB

    tls = pki.server("hub", ROLE_HUB)
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HARNESS,
            "hub",
            "serve",
            "--repo",
            str(fleet_repo.path),
            "--listen",
            "127.0.0.1:0",
            "--tls-ca",
            str(tls.ca),
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
            "--state-dir",
            str(tmp_path / "state"),
            "--trust-dir",
            str(dev_trust.dir),
            "--release-keys",
            ",".join(f"{env}={key}" for env, key in dev_trust.release_keys),
            "--ready-file",
            str(ready),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no ready file"
        info = json.loads(ready.read_text())
        assert info["port"] > 0 and info["trust_root"] == str(dev_trust.root)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
