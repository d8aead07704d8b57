"""Which cluster an operator command talks to: kubectl's order, never the pod it happens to run in."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from skerry.agent.kube import KubeClient
from skerry.core.errors import ConfigError

from .helpers import error_line, skerry


def kubeconfig(path: pathlib.Path, server: str, context: str = "main") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": c, "cluster": {"server": f"{server}/{c}"}} for c in ("main", "other")],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": c, "context": {"cluster": c, "user": "u"}} for c in ("main", "other")],
    }))
    return path


def host(client: KubeClient) -> str:
    return client.api_client.configuration.host


def test_the_flag_then_kubeconfig_variable_then_home_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"give --kubeconfig, set \$KUBECONFIG"):
        KubeClient.from_kubeconfig()
    kubeconfig(tmp_path / "home" / ".kube" / "config", "https://home.invalid")
    assert host(KubeClient.from_kubeconfig()) == "https://home.invalid/main"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "env.yaml", "https://env.invalid")))
    assert host(KubeClient.from_kubeconfig()) == "https://env.invalid/main"
    assert host(KubeClient.from_kubeconfig(None, "other")) == "https://env.invalid/other"
    flag = kubeconfig(tmp_path / "flag.yaml", "https://flag.invalid")
    assert host(KubeClient.from_kubeconfig(flag)) == "https://flag.invalid/main"


def test_an_operator_command_names_the_kubeconfig_it_could_not_use(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n")
    proc = skerry("suspend", "--cluster", "oslo", env={"KUBECONFIG": str(broken)})
    assert proc.returncode == 1 and str(broken) in error_line(proc)
