"""A live Skerry (sealer, hub with metrics and dashboard, three agents) on the session's real API server.

The fleet is examples/fleet with its clusters and namespaces renamed
(``opsdash-*``), so it never shares objects or inventories with the
end-to-end tests' stack on the same API server: bergen-dev and tromso-dev
(dev, two regions) and bergen-prod.
"""

from __future__ import annotations

import json
import pathlib
import secrets as pysecrets

import pytest

from skerry.testing.devstack import Stack, example_fleet

CLUSTERS = ("bergen-dev", "tromso-dev", "bergen-prod")
FLEET = """apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev, prod]
clusters:
  - name: bergen-dev
    labels: {region: no-bergen, env: dev}
  - name: tromso-dev
    labels: {region: no-tromso, env: dev}
  - name: bergen-prod
    labels: {region: no-bergen, env: prod}
paths:
  - path: overlays/dev
    selector: {matchLabels: {env: dev}}
  - path: overlays/prod
    selector: {matchLabels: {env: prod}}
"""
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db-credentials", "namespace": "opsdash-prod"},
    "type": "Opaque",
    "stringData": {"password": pysecrets.token_urlsafe(16)},
}


def _fleet_source(tmp: pathlib.Path) -> pathlib.Path:
    src = example_fleet(tmp / "fleet-src", "opsdash-")
    (src / "skerry.yaml").write_text(FLEET)
    return src


@pytest.fixture(scope="session")
def sealed_password() -> str:
    """The plaintext inside the fleet's one SealedSecret: no service may ever log it."""
    return SECRET["stringData"]["password"]


@pytest.fixture(scope="module")
def live(kubeconfig, tmp_path_factory):
    work = tmp_path_factory.mktemp("opsstack")
    token = pysecrets.token_urlsafe(24)
    token_file = work / "dashboard.token"
    token_file.write_text(token + "\n")
    env = {
        "SKERRY_HUB_METRICS_LISTEN": "127.0.0.1:0",
        "SKERRY_HUB_DASHBOARD_LISTEN": "127.0.0.1:0",
        "SKERRY_HUB_DASHBOARD_TOKEN_FILE": str(token_file),
        "SKERRY_AGENT_METRICS_LISTEN": "127.0.0.1:0",
        "SKERRY_SEALER_METRICS_LISTEN": "127.0.0.1:0",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        s = Stack(work, kubeconfig, interval=1.0)
        try:
            s.start_sealer()
            s.seed_repo(_fleet_source(work), seal={"overlays/prod/sealed-db-credentials.yaml": SECRET})
            s.start_hub()
            for cluster in CLUSTERS:
                s.start_agent(cluster)
            for cluster in CLUSTERS:
                s.wait_applied(cluster, timeout=90)
            hub_ready = json.loads(s.hub.ready_file.read_text())
            s.dashboard_url = f"https://127.0.0.1:{hub_ready['dashboard_port']}"
            s.hub_metrics_port = hub_ready["metrics_port"]
            s.sealer_metrics_port = json.loads(s.sealer.ready_file.read_text())["metrics_port"]
            s.dashboard_token = token
            s.hub_cert = s.pki_dir / "hub-hub.crt"
            yield s
        finally:
            s.stop()
