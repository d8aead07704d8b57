"""The real hub as a TUF repository: CI release signing, stock python-tuf clients, signed agent reports.

One stack (hub in trust mode holding only the *dev* release key, agents for
oslo-dev and oslo-prod) serves the module. Prod needs 2 of 3 release
signatures, given by ``skerry keys sign`` (which renders the bundle itself). The example fleet's
namespaces are renamed (``trusthub-*``): "nothing of prod is applied yet" must not read another
module's ``shop-prod``.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import grpc
import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import report as report_format
from skerry.core import tls, trust
from skerry.testing.devstack import Stack, example_fleet, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

PROD_NS = "trusthub-prod"


@pytest.fixture(scope="module")
def stack(kubeconfig, tmp_path_factory):
    work = tmp_path_factory.mktemp("trusthub")
    s = Stack(work, kubeconfig, interval=1.0, auto_release=("dev",))
    try:
        s.sealer_address = "127.0.0.1:9"
        s.seed_repo(example_fleet(work / "fleet-src", "trusthub-"))
        for rel in ("overlays/prod/sealed-db-credentials.yaml", "overlays/dev/sealed-db-credentials.yaml"):
            p = s.repo / rel
            if p.exists():  # no sealer in this stack
                p.unlink()
                kust = p.parent / "kustomization.yaml"
                kust.write_text("\n".join(line for line in kust.read_text().splitlines()
                                          if "sealed-db-credentials" not in line) + "\n")
        s.commit("no sealed secrets")
        s.start_hub()
        s.start_agent("oslo-dev")
        s.start_agent("oslo-prod")
        yield s
    finally:
        s.stop()


def ops(stack: Stack) -> tls.TlsFiles:
    return stack.identity("ci", tls.ROLE_OPERATOR)


def sign(stack: Stack, cluster: str, key, engine: str = "auto") -> subprocess.CompletedProcess:
    files = ops(stack)
    return subprocess.run(
        [sys.executable, "-m", "skerry", "keys", "sign", "--hub", stack.hub_address, "--tls-ca", str(files.ca),
         "--tls-cert", str(files.cert), "--tls-key", str(files.key), "--key", str(key), "--repo", str(stack.repo),
         "--cluster", cluster, "--engine", engine], capture_output=True, text=True)


def test_dev_is_released_by_the_hub_and_prod_waits_for_release_signatures(stack):
    v = wait_for(lambda: stack.cluster_view("oslo-dev", "ci").get("desired_digest") and stack.cluster_view("oslo-dev", "ci"), 30, "dev")
    stack.wait_applied("oslo-dev", digest=v["desired_digest"])
    prod = wait_for(lambda: "awaits signatures" in stack.cluster_view("oslo-prod", "ci").get("render_error", "")
                    and stack.cluster_view("oslo-prod", "ci"), 30, "prod to await signatures")
    assert not prod.get("desired_digest")
    assert stack.kubectl("get", "deploy", "web", "-n", PROD_NS, "--ignore-not-found", "-o", "name",
                         check=False) == ""


def test_one_prod_signature_is_not_enough_and_two_promote(stack):
    keys = stack.release_keys("prod")
    first = sign(stack, "oslo-prod", keys[0])
    assert first.returncode == 0, first.stderr
    assert "collected: 1 of 2" in first.stdout
    assert not stack.cluster_view("oslo-prod", "ci").get("desired_digest")
    again = sign(stack, "oslo-prod", keys[0])  # the same key twice still counts once
    assert "1 of 2" in again.stdout, again.stdout + again.stderr
    # the second CI job renders with the kustomize binary (kubectl kustomize), the hub in-process:
    # the same objects, the same bundle, the release goes through
    second = sign(stack, "oslo-prod", keys[2], engine="binary")
    assert second.returncode == 0, second.stderr
    assert "published: 2 of 2" in second.stdout
    v = wait_for(lambda: stack.cluster_view("oslo-prod", "ci").get("desired_digest") and stack.cluster_view("oslo-prod", "ci"), 30, "prod")
    stack.wait_applied("oslo-prod", digest=v["desired_digest"])
    assert stack.kubectl("get", "deploy", "web", "-n", PROD_NS, "-o", "jsonpath={.spec.replicas}") == "3"


class FetchAdapter(FetcherInterface):
    """``TrustService.Fetch`` as a stock python-tuf fetcher: ``skerry:/<path>``; NOT_FOUND is a 404."""

    def __init__(self, channel: grpc.Channel):
        self.stub = trust_pb2_grpc.TrustServiceStub(channel)

    def _fetch(self, url: str):
        try:
            return iter([c.data for c in self.stub.Fetch(
                trust_pb2.FetchRequest(path=url.removeprefix("skerry:/")), timeout=10)])
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise DownloadHTTPError(e.details(), 404) from e
            raise


def test_a_stock_updater_refreshes_and_downloads_a_clusters_bundle_over_the_hub_api(stack, tmp_path):
    files = stack.identity("oslo-dev", tls.ROLE_AGENT)
    (tmp_path / "md").mkdir()
    with grpc.secure_channel(stack.hub_address, tls.channel_credentials(files)) as channel:
        updater = Updater(  # python-tuf's default configuration: targets by their hash-prefixed names
            metadata_dir=str(tmp_path / "md"), metadata_base_url="skerry:/metadata/", target_dir=str(tmp_path),
            target_base_url="skerry:/targets/", fetcher=FetchAdapter(channel), bootstrap=stack.trust_root.read_bytes(),
        )
        updater.refresh()
        digest = wait_for(lambda: stack.cluster_view("oslo-dev", "ci").get("desired_digest"), 30, "dev's bundle")
        target = trust.release_path("dev", "oslo-dev", digest.split(":")[1])
        info = updater.get_targetinfo(target)  # the director's bin lists it first; release-dev the same target
        assert info is not None and info.hashes == {"sha256": digest.split(":")[1]}
        path = updater.download_target(info, str(tmp_path / "bundle.json"))
    doc = json.loads(pathlib.Path(path).read_bytes())
    assert doc["cluster"] in ("oslo-dev", "") and doc["source"]["revision"] == info.custom["revision"]


def test_fetch_refuses_paths_outside_the_repository_and_reports_missing_files_as_not_found(stack):
    with grpc.secure_channel(stack.hub_address, tls.channel_credentials(ops(stack))) as ch:
        stub = trust_pb2_grpc.TrustServiceStub(ch)
        with pytest.raises(grpc.RpcError) as bad:
            list(stub.Fetch(trust_pb2.FetchRequest(path="targets/../../keys/director.key"), timeout=5))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as missing:
            list(stub.Fetch(trust_pb2.FetchRequest(path="metadata/999.root.json"), timeout=5))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    prod_image = stack.cluster_view("oslo-prod", "ci")["desired_digest"].split(":")[1]
    with grpc.secure_channel(stack.hub_address, tls.channel_credentials(stack.identity("oslo-dev", tls.ROLE_AGENT))) as ch:
        with pytest.raises(grpc.RpcError) as other:
            list(trust_pb2_grpc.TrustServiceStub(ch).Fetch(
                trust_pb2.FetchRequest(path=f"targets/releases/prod/oslo-prod/{prod_image}.json"), timeout=5))
        assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for name in (f"releases/prod/oslo-prod/{prod_image}.{prod_image}.json",):  # under its hashed name
            with pytest.raises(grpc.RpcError) as hashed:
                list(trust_pb2_grpc.TrustServiceStub(ch).Fetch(trust_pb2.FetchRequest(path=f"targets/{name}"), timeout=5))
            assert hashed.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_agents_send_signed_reports_and_a_replayed_or_forged_one_is_refused(stack):
    def attested():
        with grpc.secure_channel(stack.hub_address, tls.channel_credentials(ops(stack))) as ch:
            try:
                return trust_pb2_grpc.TrustServiceStub(ch).GetAttestation(
                    trust_pb2.GetAttestationRequest(cluster="oslo-dev"), timeout=5)
            except grpc.RpcError:
                return None

    signed = wait_for(attested, 30, "a signed report of oslo-dev")
    doc = report_format.verify(signed.report, signed.signature, signed.certificate)
    assert doc["cluster"] == "oslo-dev" and doc["applied_digest"].startswith("sha256:") and doc["ready"] is True
    agent = stack.identity("oslo-dev", tls.ROLE_AGENT)
    with grpc.secure_channel(stack.hub_address, tls.channel_credentials(agent)) as ch:
        stub = trust_pb2_grpc.TrustServiceStub(ch)
        with pytest.raises(grpc.RpcError) as replay:
            stub.SubmitSignedReport(signed, timeout=5)
        assert "ReplayedReport" in replay.value.details() or "already used" in replay.value.details()
        # forged: a fresh nonce, but the report signed by another agent's key
        nonce = stub.IssueNonce(trust_pb2.IssueNonceRequest(cluster="oslo-dev"), timeout=5)
        other = stack.identity("oslo-prod", tls.ROLE_AGENT)
        forged = {**doc, "nonce": nonce.nonce, "counter": nonce.counter, "ready": True}
        data, sig = report_format.sign(forged, other.key.read_bytes())
        with pytest.raises(grpc.RpcError) as bad:
            stub.SubmitSignedReport(trust_pb2.SignedReport(report=data, signature=sig,
                                                           certificate=agent.cert.read_bytes()), timeout=5)
        assert bad.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "does not verify" in bad.value.details()


def test_keys_status_shows_every_role_and_its_horizon(stack):
    out = stack.keys("status", "--trust-dir", str(stack.trust_dir), "-o", "json")
    roles = {r["role"]: r for r in json.loads(out)}
    assert {"root", "targets", "snapshot", "timestamp", "director", "release-dev", "release-prod"} <= set(roles)
    assert roles["release-prod"]["threshold"] == 2 and len(roles["release-prod"]["keys"]) == 3
    assert roles["timestamp"]["expires_in_hours"] > 0


def test_explain_follows_an_object_to_its_bundle_signatures_and_commit(stack):
    v = stack.cluster_view("oslo-prod", "ci")
    out = subprocess.run(
        [sys.executable, "-m", "skerry", "explain", "deployment/web", "-n", PROD_NS, "--kubeconfig",
         str(stack.kubeconfig), "--state-dir", str(stack.workdir / "agents" / "oslo-prod"), "-o", "json"],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    chain = json.loads(out.stdout)
    assert chain["bundle_digest"] == v["desired_digest"]
    prov = chain["provenance"]
    assert prov["release_role"]["role"].startswith("releases-prod-") and prov["release_role"]["threshold"] == 2
    assert len(prov["release_role"]["signed_by"]) == 2 and prov["director"]["signed_by"]
    assert chain["source"]["revision"] == v["desired_revision"] and chain["render"]["engine"] == "kustomize"
    text = subprocess.run(
        [sys.executable, "-m", "skerry", "explain", "deployment/web", "-n", PROD_NS, "--kubeconfig",
         str(stack.kubeconfig), "--state-dir", str(stack.workdir / "agents" / "oslo-prod")],
        capture_output=True, text=True).stdout
    assert "released   releases-prod-" in text and v["desired_revision"] in text
