"""Against a running stack (real processes, real API server): metrics, BundleStatus + Events, the dashboard.

Tests run in file order on one module-scoped stack (``conftest.live``):
scrapes after the first applies, the in-cluster status, then the dashboard
in headless Chromium while a commit lands with one agent down (drift), the
agent comes back (in sync again) and a removal prunes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import shutil
import ssl
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from skerry.testing.devstack import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def scrape(port: int) -> dict[str, list]:
    """Family name -> samples, from a real /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(samples: dict, name: str, **labels) -> float:
    matching = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert matching, f"no sample {name}{labels} in {sorted(samples)[:200]}"
    return sum(matching)


def maybe(samples: dict, name: str, **labels) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def agent_metrics_port(live, cluster: str) -> int:
    return int(live.agents[cluster].status()["metrics_port"])


# --- metrics ---------------------------------------------------------------------------------


def test_hub_metrics_show_renders_publishes_streams_health_and_expiry(live):
    m = wait_for(lambda: (s := scrape(live.hub_metrics_port))
                 and value(s, "skerry_hub_agents_connected") == 3 and s, 30, "three agents connected")
    assert value(m, "skerry_hub_renders_total", result="ok") >= 2
    assert value(m, "skerry_hub_render_duration_seconds_count") >= 2
    assert value(m, "skerry_hub_render_duration_seconds_sum") > 0
    assert "skerry_hub_render_errors_total" in m
    for cluster in ("bergen-dev", "tromso-dev", "bergen-prod"):
        assert value(m, "skerry_hub_bundles_published_total", cluster=cluster) >= 1
        assert value(m, "skerry_hub_bundle_release", cluster=cluster) > 0
        horizon = value(m, "skerry_hub_metadata_expiry_seconds", cluster=cluster)
        # the nearest expiry of the cluster's trust metadata (timestamp and director: 1 d)
        assert 3600 < horizon <= 86400, horizon
    assert value(m, "skerry_hub_streams_open") >= 3
    assert value(m, "skerry_grpc_server_streams_open", method="/skerry.api.v1.HubService/WatchBundles") >= 3
    assert value(m, "skerry_grpc_server_handled_total", method="/skerry.api.v1.HubService/ReportStatus",
                 code="OK") >= 3
    assert value(m, "skerry_hub_syncs_total") >= 1
    # health per bundle comes from the agents' reports, a moment after their applies
    m = wait_for(lambda: (s := scrape(live.hub_metrics_port))
                 and all(value(s, "skerry_hub_cluster_ready", cluster=c) == 1 for c in live.agents) and s,
                 30, "every cluster reported Ready")
    for cluster in live.agents:
        assert value(m, "skerry_hub_cluster_in_sync", cluster=cluster) == 1


def test_agent_metrics_show_reconciles_applies_and_bundle(live):
    m = scrape(agent_metrics_port(live, "bergen-prod"))
    assert value(m, "skerry_agent_reconciles_total", result="ready") >= 1
    assert value(m, "skerry_agent_reconcile_duration_seconds_count") >= 1
    assert value(m, "skerry_agent_objects_total", action="created") >= 4  # ns, deploy, svc, secret
    assert value(m, "skerry_agent_applies_total", result="ok") >= 4
    assert value(m, "skerry_agent_apply_duration_seconds_count") >= 4
    assert "skerry_agent_prune_duration_seconds_count" in m
    assert "skerry_agent_drift_corrected_total" in m
    assert value(m, "skerry_agent_bundles_verified_total") >= 1
    assert value(m, "skerry_agent_ready", cluster="bergen-prod") == 1
    assert value(m, "skerry_agent_applied_release", cluster="bergen-prod") > 0
    assert 3600 < value(m, "skerry_agent_metadata_expiry_seconds", cluster="bergen-prod") <= 7 * 86400


def test_sealer_metrics_show_unseals_latency_and_key_age(live):
    m = scrape(live.sealer_metrics_port)
    assert value(m, "skerry_sealer_unseals_total", outcome="allowed") >= 1
    assert value(m, "skerry_sealer_unseal_duration_seconds_count") >= 1
    assert value(m, "skerry_sealer_unsealed_items_total") >= 1
    ages = [s.value for s in m["skerry_sealer_key_age_seconds"]]
    assert ages and all(0 <= a < 3600 for a in ages)
    assert value(m, "skerry_sealer_keys", domain="default") == 1


def test_ops_port_answers_health_and_readiness(live):
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{live.hub_metrics_port}{path}", timeout=5) as resp:
            assert resp.status == 200


def test_request_log_lines_are_json_with_cluster_digest_and_duration_and_no_secret(live, sealed_password):
    lines = [json.loads(line) for line in live.hub.log_path.read_text().splitlines() if line.startswith("{")]
    requests = [rec for rec in lines if rec.get("event") == "request"]
    reports = [r for r in requests if r["method"].endswith("/ReportStatus")]
    assert reports, "no request line for ReportStatus"
    assert {"cluster", "digest", "duration_ms", "code", "peer"} <= set(reports[-1])
    agent_lines = [json.loads(line) for line in live.agents["bergen-prod"].log_path.read_text().splitlines()
                   if line.startswith("{")]
    reconciles = [r for r in agent_lines if r.get("event") == "reconcile"]
    assert reconciles and {"cluster", "digest", "duration_ms", "release"} <= set(reconciles[-1])
    for svc in (live.hub, live.sealer, *live.agents.values()):
        assert sealed_password not in svc.log_path.read_text(), f"{svc.name} logged the secret"


# --- in-cluster status -----------------------------------------------------------------------


def test_agent_keeps_a_bundlestatus_with_kstatus_conditions_and_events(live):
    ns = "skerry-bergen-prod"
    obj = json.loads(live.kubectl("get", "bundlestatus", "bergen-prod", "-n", ns, "-o", "json"))
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["Reconciling"]["status"] == "False"
    assert conds["Stalled"]["status"] == "False"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["release"] == live.agents["bergen-prod"].status()["applied_release"]
    assert obj["status"]["releaseName"] == live.agents["bergen-prod"].status()["applied_name"] == "r1"
    table = live.kubectl("get", "bundlestatuses.skerry.io", "-n", ns).splitlines()
    assert table[0].split()[:3] == ["NAME", "READY", "REASON"] and "RELEASE" in table[0]
    row = dict(zip(table[0].split(), table[1].split(), strict=False))
    assert (row["READY"], row["RELEASE"]) == ("True", "r1")
    events = json.loads(live.kubectl("get", "events", "-n", ns, "-o", "json"))["items"]
    applied = [e for e in events if e["reason"] == "Applied" and e["involvedObject"]["kind"] == "BundleStatus"]
    assert applied and "created" in applied[0]["message"]


# --- the dashboard in headless Chromium ------------------------------------------------------


def _spki_hash(cert_path: pathlib.Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(live, tmp_path_factory):
    if not (pathlib.Path(CHROMIUM).exists() and pathlib.Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are needed (scripts/bootstrap.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 # trust exactly the hub's key (its certificate comes from the test CA)
                 f"--ignore-certificate-errors-spki-list={_spki_hash(live.hub_cert)}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def text(driver, testid: str) -> str:
    """The rendered text of one element, read in one script call (the page re-renders on every event)."""
    return driver.execute_script(
        "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`); return e ? e.innerText : '';",
        testid,
    ) or ""


def wait_text(driver, testid: str, predicate, what: str, timeout: float = 60.0) -> str:
    return wait_for(lambda: (t := text(driver, testid)) and predicate(t) and t, timeout, what)


def shot(driver, tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_dashboard_refuses_without_operator_credentials(live):
    ctx = ssl.create_default_context(cafile=str(live.pki_dir / "ca.crt"))
    for path in ("/", "/api/fleet", "/api/stream", f"/login?token={'x' * 30}"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(live.dashboard_url + path, context=ctx, timeout=5)
        assert err.value.code == 401


def test_dashboard_shows_clusters_health_drift_and_updates_when_a_commit_lands(live, browser, tmp_path):
    browser.get(f"{live.dashboard_url}/login?token={live.dashboard_token}")
    wait_text(browser, "live", lambda t: t == "live", "the event stream to connect", 20)
    # Health is what runs, apart from Ready: the local API server has no kubelet, so web's pods never run
    # and it stays Progressing (within --health-timeout); a cluster of your own runs them: Healthy.
    running = "Healthy" if os.environ.get("SKERRY_TEST_KUBECONFIG") else "Progressing"
    for cluster in live.agents:
        wait_text(browser, f"sync-{cluster}", lambda t: t == "Synced", f"{cluster} Synced")
        assert text(browser, f"health-{cluster}") == running
    assert text(browser, "group-no-bergen-dev") and text(browser, "group-no-tromso-dev")
    assert text(browser, "group-no-bergen-prod")
    first_revision = text(browser, "desired-tromso-dev")
    assert first_revision.startswith("r1 ") and text(browser, "applied-tromso-dev").startswith("r1 ")
    shot(browser, tmp_path, "1-all-synced")

    # A commit lands while tromso-dev's agent is down: dev's desired bundle moves, tromso-dev stays behind.
    live.agents["tromso-dev"].stop()
    kust = live.repo / "overlays/dev/kustomization.yaml"
    kust.write_text(kust.read_text().replace("  - ../../base\n", "  - ../../base\n  - settings.yaml\n"))
    (live.repo / "overlays/dev/settings.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-settings\ndata:\n  greeting: hei\n"
    )
    commit = live.commit("dev: add web-settings")
    wait_text(browser, "desired-tromso-dev", lambda t: commit[:8] in t, "the new desired revision")
    drift = wait_text(browser, "drift-tromso-dev", lambda t: "desired is" in t, "drift on tromso-dev")
    assert "applied release r1 " in drift and "desired is r2 " in drift
    assert text(browser, "desired-tromso-dev").startswith("r2 ")
    wait_text(browser, "sync-tromso-dev", lambda t: t == "OutOfSync", "tromso-dev OutOfSync")
    wait_text(browser, "offline-tromso-dev", lambda t: "not connected" in t, "tromso-dev shown offline")
    wait_text(browser, "applied-bergen-dev", lambda t: commit[:8] in t, "bergen-dev applying the commit")
    assert text(browser, "sync-bergen-dev") == "Synced"
    assert text(browser, "desired-tromso-dev") != first_revision
    shot(browser, tmp_path, "2-drift")

    # Per cluster: its objects and their status.
    browser.execute_script('document.querySelector(\'[data-testid="cluster-bergen-dev"]\').click()')
    objects = wait_text(browser, "objects-bergen-dev", lambda t: "web-settings" in t, "bergen-dev's objects")
    assert "Deployment" in objects and "created" in objects
    freight = text(browser, "app-(repository root)")
    assert "bergen-dev" in freight and "bergen-prod" in freight and commit[:8] in freight
    assert "No promotions yet" in text(browser, "promotions")  # the hub's promoter is there; nothing promoted
    shot(browser, tmp_path, "3-cluster-detail")

    # The agent comes back: in sync again, live.
    live.start_agent("tromso-dev")
    wait_text(browser, "sync-tromso-dev", lambda t: t == "Synced", "tromso-dev Synced again", 90)
    assert text(browser, "drift-tromso-dev") == ""
    wait_for(lambda: text(browser, "offline-tromso-dev") == "", 20, "tromso-dev shown connected")
    shot(browser, tmp_path, "4-back-in-sync")


def test_a_removal_is_pruned_and_counted(live):
    (live.repo / "overlays/dev/settings.yaml").unlink()
    kust = live.repo / "overlays/dev/kustomization.yaml"
    kust.write_text(kust.read_text().replace("  - settings.yaml\n", ""))
    live.commit("dev: drop web-settings")
    port = agent_metrics_port(live, "bergen-dev")
    wait_for(lambda: maybe(scrape(port), "skerry_agent_objects_total", action="pruned") >= 1, 60,
             "a prune on bergen-dev")
    # both dev clusters share the one API server here: whichever agent got there first did the delete
    deletes = sum(maybe(scrape(agent_metrics_port(live, c)), "skerry_agent_prune_duration_seconds_count")
                  for c in ("bergen-dev", "tromso-dev"))
    assert deletes >= 1
    events = json.loads(live.kubectl("get", "events", "-n", "skerry-bergen-dev", "-o", "json"))["items"]
    assert any(e["reason"] == "Pruned" and "web-settings" in e["message"] for e in events)
