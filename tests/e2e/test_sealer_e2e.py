"""The sealer in the whole loop, with real processes: bundle-scoped unseal, regions, scope, prune, no plaintext at rest.

The sealer holds two key domains; its operator's cluster-domain map gives
the prod cluster the ``no-oslo`` region and the dev cluster only
``default``. Each agent gets exactly the Secrets its own signed bundle
holds, in the scope they were sealed for: the sealer trusts the hub
repository's root.json and re-verifies the director + release metadata the
agent shows it.

The example fleet is renamed (clusters and namespaces) so this module shares
nothing with the other end-to-end tests on the session's API server.
"""

from __future__ import annotations

import base64
import json
import pathlib
import re
import secrets as pysecrets

import pytest
import yaml

from skerry.core import sealedsecret, tls
from skerry.testing.devstack import Service, Stack, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

PROD, DEV = "sx-oslo-prod", "sx-oslo-dev"  # clusters
PROD_NS, DEV_NS = "sx-shop-prod", "sx-shop-dev"
RENAMES = {"oslo-prod": PROD, "oslo-dev": DEV, "shop-prod": PROD_NS, "shop-dev": DEV_NS}
PASSWORD = pysecrets.token_urlsafe(16)
REGIONAL = pysecrets.token_urlsafe(16)


def secret(name: str, namespace: str, type_: str = "Opaque", **string_data) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "shop", "tier": "db"},
                     "annotations": {"owner": "payments"}},
        "type": type_,
        "stringData": string_data,
    }


class BundleScopedStack(Stack):
    """The devstack, with the sealer trusting the hub's TUF root, mapping clusters to regions."""

    def start_sealer(self) -> Service:
        trust_args = ["--trust-root", str(self.init_trust())]
        domains = self.workdir / "cluster-domains.yaml"
        domains.write_text(f"clusters:\n  {PROD}: [default, no-oslo]\n  {DEV}: [default]\n")
        files = self.identity("sealer", tls.ROLE_SEALER, server=True)
        self.sealer = Service(
            "sealer",
            ["sealer", "serve", "--listen", "127.0.0.1:0", "--keys-dir", str(self.workdir / "sealer-keys"),
             "--domain", "default,no-oslo", *trust_args, "--cluster-domains", str(domains),
             "--cert-listen", "127.0.0.1:0", *self.tls_args(files)],
            self.workdir,
        ).start()
        ready = self.sealer.ready()
        self.sealer_address = f"127.0.0.1:{ready['port']}"
        self.cert_url = f"http://127.0.0.1:{ready['cert_port']}/v1/cert.pem"
        return self.sealer

    def seal_for(self, manifest: dict, *args: str) -> str:
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-m", "skerry", "seal", "--cert", self.cert_url, *args],
                             input=json.dumps(manifest), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout


def add_resource(stack: Stack, overlay: str, filename: str, text: str) -> None:
    (stack.repo / overlay / filename).write_text(text)
    kustomization = stack.repo / overlay / "kustomization.yaml"
    body = kustomization.read_text()
    if f"  - {filename}\n" not in body:
        kustomization.write_text(body.replace("  - ../../base\n", f"  - ../../base\n  - {filename}\n", 1))


@pytest.fixture(scope="module")
def stack(kubeconfig, tmp_path_factory):
    s = BundleScopedStack(tmp_path_factory.mktemp("sealer"), kubeconfig, interval=1.0)
    try:
        s.start_sealer()
        s.seed_repo()
        for f in s.repo.rglob("*.yaml"):
            text = f.read_text()
            for old, new in RENAMES.items():
                text = re.sub(rf"\b{old}\b", new, text)
            f.write_text(text)
        prod_db = s.seal_for(secret("db-credentials", PROD_NS, "kubernetes.io/basic-auth", username="shop", password=PASSWORD))
        (s.repo / "overlays/prod/sealed-db-credentials.yaml").write_text(prod_db)
        add_resource(s, "overlays/prod", "sealed-regional.yaml",
                     s.seal_for(secret("regional", PROD_NS, token=REGIONAL), "--domain", "no-oslo"))
        # dev: the prod secret copied as is (relocated, strict scope), and a no-oslo secret dev may not use
        relocated = yaml.safe_load(prod_db)
        relocated["metadata"]["namespace"] = DEV_NS
        add_resource(s, "overlays/dev", "sealed-copied.yaml", yaml.safe_dump(relocated))
        add_resource(s, "overlays/dev", "sealed-regional.yaml",
                     s.seal_for(secret("regional", DEV_NS, token=REGIONAL), "--domain", "no-oslo"))
        add_resource(s, "overlays/dev", "sealed-dev.yaml",
                     s.seal_for(secret("dev-db", DEV_NS, password="dev-only")))
        s.commit("sealed secrets for both clusters")
        s.start_hub()
        for cluster in (DEV, PROD):
            s.start_agent(cluster)
        yield s
    finally:
        s.stop()


def get_secret(stack: Stack, namespace: str, name: str) -> dict | None:
    out = stack.kubectl("get", "secret", name, "-n", namespace, "--ignore-not-found", "-o", "json")
    return json.loads(out) if out else None


def applied_status(stack: Stack, cluster: str) -> dict:
    agent = stack.agents[cluster]
    return wait_for(lambda: (st := agent.status()) and st.get("applied_digest") and st, 60,
                    f"agent {cluster} to reconcile", agent)


def test_prod_gets_its_secrets_as_typed_labelled_secrets_including_its_region(stack):
    stack.wait_applied(PROD, timeout=90)
    db = get_secret(stack, PROD_NS, "db-credentials")
    assert base64.b64decode(db["data"]["password"]).decode() == PASSWORD
    assert db["type"] == "kubernetes.io/basic-auth"
    assert db["metadata"]["labels"]["app"] == "shop" and db["metadata"]["labels"]["tier"] == "db"
    assert db["metadata"]["annotations"]["owner"] == "payments"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in db["metadata"]["annotations"]
    assert PASSWORD not in json.dumps(db["metadata"])
    assert not any(k.startswith("sealer.skerry.io/") for k in db["metadata"]["annotations"])
    regional = get_secret(stack, PROD_NS, "regional")
    assert base64.b64decode(regional["data"]["token"]).decode() == REGIONAL


def test_dev_is_refused_the_other_region_and_the_relocated_copy_but_gets_the_rest(stack):
    st = applied_status(stack, DEV)
    assert not st["ready"]
    assert "2 of" in json.dumps(st["conditions"])
    # The condition names the first failure; the agent's log names each one.
    text = stack.agents[DEV].log_tail(200)
    assert "may not use key domain 'no-oslo'" in text
    assert f"{DEV_NS}/db-credentials" in text and "wrong scope, namespace or name" in text
    assert get_secret(stack, DEV_NS, "regional") is None
    assert get_secret(stack, DEV_NS, "db-credentials") is None
    dev_db = get_secret(stack, DEV_NS, "dev-db")
    assert base64.b64decode(dev_db["data"]["password"]).decode() == "dev-only"
    assert stack.kubectl("get", "deploy", "web", "-n", DEV_NS, "-o", "name") == "deployment.apps/web"


def test_every_unseal_is_audited_without_values(stack):
    log = (stack.workdir / "logs").rglob("sealer*")
    text = "".join(p.read_text(errors="replace") for p in log if p.is_file())
    assert '"unseal"' in text or "unseal" in text
    assert "DomainDenied" in text and DEV in text
    assert PASSWORD not in text and REGIONAL not in text


def test_a_sealed_secret_removed_from_git_is_pruned(stack):
    before = stack.agents[PROD].status()["applied_release"]
    (stack.repo / "overlays/prod/sealed-regional.yaml").unlink()
    k = stack.repo / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace("  - sealed-regional.yaml\n", ""))
    stack.commit("prod: drop the regional secret")
    stack.wait_applied(PROD, release_above=before, timeout=90)
    assert get_secret(stack, PROD_NS, "regional") is None
    assert get_secret(stack, PROD_NS, "db-credentials") is not None


def test_plaintext_never_reaches_the_repo_logs_or_agent_disk(stack):
    for needle in (PASSWORD.encode(), REGIONAL.encode()):
        for root in (stack.repo, stack.workdir / "logs", stack.workdir / "agents", stack.workdir / "hub-state"):
            for f in pathlib.Path(root).rglob("*"):
                if f.is_file():
                    assert needle not in f.read_bytes(), f"plaintext found in {f}"
    sealed = yaml.safe_load((stack.repo / "overlays/prod/sealed-db-credentials.yaml").read_text())
    assert sealed["metadata"]["annotations"][sealedsecret.ANNOTATION_KEY_ID]


def test_the_sealer_verified_each_cluster_itself_and_keeps_its_release_counter(stack):
    stack.wait_applied(PROD, timeout=90)
    state = stack.workdir / "tuf-state"
    for cluster in (PROD, DEV):
        release = json.loads((state / cluster / "release.json").read_text())
        assert release["release"] > 0 and release["digest"].startswith("sha256:")
        assert (state / cluster / "metadata" / f"release-{stack.environment_of(cluster)}.json").is_file()
