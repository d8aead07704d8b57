"""deploy/: every overlay builds with ``kubectl kustomize`` and the real API server accepts every object.

Also the properties the manifests promise: probes that work against
mTLS-only services (never a kubelet gRPC probe), resource requests,
non-root read-only containers, a NetworkPolicy per component, the
restricted agent without cluster-wide writes, the CRD equal to the one the
agent applies, and Dockerfile targets that install only their extra.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
import yaml

from skerry.agent.events import CRD

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# Namespaces the manifests put objects in, created for real before the dry-run (a dry-run creates nothing).
NAMESPACES = ("skerry-system", "shop-dev")


def build(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, f"kubectl kustomize deploy/overlays/{overlay}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_there_are_overlays_for_each_way_to_run_skerry():
    assert {"dev", "prod", "management", "workload", "workload-restricted"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_its_workloads_are_probed_bounded_and_unprivileged(overlay):
    docs = build(overlay)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert deployments
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            name = f"{dep['metadata']['name']}/{c['name']}"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], name
            assert c["resources"]["limits"]["memory"], name
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in c, f"{name} has no {probe}"
                assert "grpc" not in c[probe], f"{name}: the kubelet's gRPC probe has no TLS; the port is mTLS only"
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert any(
            all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items()) for p in policies
        ), f"no NetworkPolicy selects {dep['metadata']['name']}"
    for d in docs:
        if d["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"].get("namespace"), f"{d['kind']} {d['metadata']['name']} has no namespace"


@pytest.mark.kube
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_side_dry_run_accepts_every_object(overlay, kubeconfig, tmp_path):
    kubectl = ["kubectl", "--kubeconfig", str(kubeconfig)]
    for ns in NAMESPACES:
        subprocess.run([*kubectl, "create", "namespace", ns], capture_output=True)  # exists already: fine
    docs = build(overlay)
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    out = subprocess.run(
        [*kubectl, "apply", "--server-side", "--dry-run=server", "--field-manager=skerry-deploy-test",
         "-f", str(rendered)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, f"deploy/overlays/{overlay} refused by the API server:\n{out.stderr}"
    accepted = [line for line in out.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(docs), out.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_command_line_is_one_skerry_accepts(overlay):
    """Each container's args, with $(VAR) taken from its env/ConfigMaps, parse with the real CLI parser."""
    from skerry.cli import build_parser

    docs = build(overlay)
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    parsed = 0
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            env = {e["name"]: e.get("value", "x") for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                env.update(maps[src["configMapRef"]["name"]])
            args = [re.sub(r"\$\((\w+)\)", lambda m, env=env: env[m.group(1)], a) for a in c["args"]]
            try:
                build_parser().parse_args(args)
            except SystemExit as e:
                raise AssertionError(f"{overlay}: {dep['metadata']['name']}/{c['name']} args rejected: {args}") from e
            parsed += 1
    assert parsed


def test_the_hub_keeps_its_ca_revocations_and_trust_repository_on_a_persistent_volume():
    docs = build("management")
    hub = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "skerry-hub")
    pod = hub["spec"]["template"]["spec"]
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    claim = state["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim for d in docs)
    assert hub["spec"]["strategy"]["type"] == "Recreate"
    args = pod["containers"][0]["args"]
    assert args[args.index("--trust-dir") + 1].startswith("/var/lib/skerry/")
    ports = {p["name"]: p["port"] for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "skerry-hub"
             for p in d["spec"]["ports"]}
    assert ports["enroll"] == 7441


def test_the_deployed_crd_is_the_one_the_agent_applies():
    deployed = yaml.safe_load((DEPLOY / "base" / "agent" / "crd.yaml").read_text())
    assert deployed == CRD


def test_restricted_agent_has_no_cluster_wide_write_access():
    docs = build("workload-restricted")
    bindings = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert [b["metadata"]["name"] for b in bindings] == ["skerry-agent-crd-read"]
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "skerry-agent")
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] and "*" not in rule["resources"], rule
    scoped = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == "skerry-agent"]
    assert scoped and all(d["metadata"]["namespace"] == "shop-dev" for d in scoped)
    full = build("workload")
    assert any(d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "skerry-agent" for d in full)


def test_each_dockerfile_target_installs_only_its_own_extra():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text, flags=re.M | re.S))
    for service in ("hub", "agent", "sealer"):
        installs = re.findall(r"pip install -c constraints\.txt '\.\[(\w+)\]'", stages[service])
        assert installs == [service], (service, installs)
        assert re.search(r"^USER \d+", stages[service], flags=re.M), f"{service} image runs as root"
        for install in re.findall(r"pip install [^&\n]*", stages[service]):
            assert "-c constraints.txt" in install, f"{service}: {install!r} ignores the constraints file"


def test_the_sealer_learns_revocations_from_the_hub_not_from_its_disk():
    from skerry.cli import build_parser

    docs = build("management")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    sealer = deployments["skerry-sealer"]["spec"]["template"]["spec"]
    args = build_parser().parse_args(sealer["containers"][0]["args"])
    host, _, port = args.hub.rpartition(":")
    hub_ports = {p["port"] for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == host
                 for p in d["spec"]["ports"]}
    assert int(port) in hub_ports, f"--hub {args.hub} is no port of a Service"
    hub_claims = {v["persistentVolumeClaim"]["claimName"]
                  for v in deployments["skerry-hub"]["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}
    assert not hub_claims & {v.get("persistentVolumeClaim", {}).get("claimName") for v in sealer["volumes"]}
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "skerry-sealer")
    assert any(
        {"port": int(port), "protocol": "TCP"} in rule.get("ports", [])
        and any(t.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "skerry-hub"}
                for t in rule.get("to", []))
        for rule in policy["spec"]["egress"]
    ), "the sealer's NetworkPolicy must let it reach the hub's gRPC port"
