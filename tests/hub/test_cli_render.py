"""``skerry render`` with many paths: identical output through either engine, a progress bar on a
terminal only, and refusals the hub makes (remote bases, invalid objects) as one-line errors."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from skerry.hub.render import inprocess

from .helpers import HARNESS, GitRepo, assert_one_line_error, kubectl_kustomize, skerry

APPS = 30  # over the CLI's PROGRESS_MIN_PATHS


@pytest.fixture
def many(tmp_path) -> GitRepo:
    files = {}
    paths = []
    for i in range(APPS):
        files[f"apps/a{i}/kustomization.yaml"] = "resources: [cm.yaml]\nnamePrefix: p-\n"
        files[f"apps/a{i}/cm.yaml"] = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a{i}}}\n"
        paths.append(f"apps/a{i}")
    fleet = {
        "apiVersion": "skerry.io/v1alpha1",
        "kind": "Fleet",
        "clusters": [{"name": "big", "paths": paths}],
    }
    files["skerry.yaml"] = json.dumps(fleet)
    repo = GitRepo(tmp_path / "many")
    repo.commit("many", files)
    return repo


@pytest.mark.skipif(not inprocess.available(), reason="pykustomize is not installed")
def test_render_dir_is_identical_through_both_engines(many):
    outs = {e: skerry("render", "--engine", e, str(many.path / "apps/a3")) for e in ("inprocess", "binary")}
    assert outs["inprocess"].returncode == 0, outs["inprocess"].stderr
    assert outs["inprocess"].stdout == outs["binary"].stdout
    import yaml

    assert [d for d in yaml.safe_load_all(outs["inprocess"].stdout) if d] == kubectl_kustomize(
        many.path / "apps/a3"
    )


def test_no_progress_bar_when_stderr_is_not_a_terminal(many):
    proc = skerry("render", "--repo", str(many.path), "--cluster", "big")
    assert proc.returncode == 0 and proc.stderr == b""
    assert len(json.loads(proc.stdout)["objects"]) == APPS


def test_progress_bar_on_a_terminal(many):
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", HARNESS, "render", "--repo", str(many.path), "--cluster", "big"],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"rendering" in seen and f"/{APPS}".encode() in seen
    assert json.loads(proc.stdout)["cluster"] == "big"


def test_remote_base_is_one_line_error_naming_the_file(many):
    many.commit("remote", {"apps/a1/kustomization.yaml": "resources: ['https://github.com/x/y//z?ref=v1']\n"})
    proc = skerry("render", "--repo", str(many.path), "--cluster", "big")
    assert_one_line_error(proc, "skerry render", "apps/a1/kustomization.yaml: resources[0]", "remote bases")


def test_invalid_object_is_one_line_error_naming_path_and_object(many):
    many.commit(
        "bad", {"apps/a2/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a2}\ndata: [1]\n"}
    )
    proc = skerry("render", "--repo", str(many.path), "--cluster", "big")
    assert_one_line_error(proc, "skerry render", "apps/a2: object #0 (ConfigMap p-a2)", "data")


def test_render_dir_refuses_a_remote_base_through_a_local_base(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base/kustomization.yaml").write_text("resources: ['https://github.com/x/y//z?ref=v1']\n")
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay/kustomization.yaml").write_text("resources: [../base]\n")
    proc = skerry("render", str(tmp_path / "overlay"))
    assert_one_line_error(proc, "skerry render", "base/kustomization.yaml: resources[0]", "remote bases")
