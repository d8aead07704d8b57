"""deploy/: every overlay builds with ``kubectl kustomize`` and the real API server accepts every object.

Also the properties the manifests promise: probes that work against
mTLS-only services (never a kubelet gRPC probe), resource requests,
non-root read-only containers, a NetworkPolicy per component, the
restricted agent without cluster-wide writes, the CRD equal to the one the
agent applies, and Dockerfile targets that install only their extra.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest
import yaml

from skerry.agent.events import CRD
from skerry.install.manifests import for_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# Namespaces the manifests put objects in, created for real before the dry-run (a dry-run creates nothing).
NAMESPACES = ("skerry-system", "shop-dev")


# deploy/ targets Kubernetes >= 1.29; the tests' API server is 1.20 (skerry.testing.envtest builds Debian's
# sources). Two spellings there are newer than it, each named with the release that brought it: the dry-run
# sends an older server the nearest older spelling, so the rest of each object is still checked there, and
# test_the_manifests_use_the_current_spellings pins what deploy/ itself says. `skerry install` does the
# same for the cluster it installs into (skerry.install.manifests.for_server).


def server_minor(kubectl: list[str]) -> int:
    out = subprocess.run([*kubectl, "version", "-o", "json"], capture_output=True, text=True)
    return int(re.match(r"\d+", json.loads(out.stdout)["serverVersion"]["minor"]).group())


def build(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, f"kubectl kustomize deploy/overlays/{overlay}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_there_are_overlays_for_each_way_to_run_skerry():
    assert {"dev", "prod", "management", "workload", "workload-restricted", "ha"} <= set(OVERLAYS)


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
    minor = server_minor(kubectl)
    docs = [for_server(d, minor) for d in build(overlay)]
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
            if "command" in c:  # not the image's skerry entrypoint: a shell step (overlays/ha's key install)
                assert c["command"] == ["sh", "-ec"] and c["image"].startswith("skerry-"), c["name"]
                continue
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
    assert hub["spec"]["strategy"]["type"] == "Recreate" and hub["spec"]["replicas"] == 1
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOncePod"]  # one process on the SQLite file, not one node
    args = pod["containers"][0]["args"]
    assert args[args.index("--trust-dir") + 1].startswith("/var/lib/skerry/")
    ports = {p["name"]: p["port"] for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "skerry-hub"
             for p in d["spec"]["ports"]}
    assert ports["enroll"] == 7441


def test_the_manifests_use_the_current_spellings():
    """What the dry-run may translate for an older test server is what deploy/ says (Kubernetes >= 1.29)."""
    docs = [d for overlay in OVERLAYS for d in build(overlay)]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert pdbs and all(d["apiVersion"] == "policy/v1" for d in pdbs)
    hub_claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "skerry-hub-state"]
    assert hub_claims and all(d["spec"]["accessModes"] == ["ReadWriteOncePod"] for d in hub_claims)


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


def _hub(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "skerry-hub")


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_the_ha_overlay_runs_three_hubs_one_per_node_and_lets_one_go_at_a_time():
    docs = build("ha")
    hub = _hub(docs)
    labels = hub["spec"]["template"]["metadata"]["labels"]
    assert hub["spec"]["replicas"] == 3
    assert hub["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == 1 and _selects(pdbs[0]["spec"]["selector"], labels)
    assert pdbs[0]["spec"]["maxUnavailable"] == 1
    anti = hub["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t["topologyKey"] for t in required] == ["kubernetes.io/hostname"]
    assert _selects(required[0]["labelSelector"], labels)
    probe = hub["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_ha_hubs_share_postgresql_with_the_dsn_from_a_secret_and_keep_no_volume():
    from skerry.cli import build_parser
    from skerry.core.config import flag_values
    from skerry.hub.config import HubConfig

    docs = build("ha")
    hub = _hub(docs)
    pod = hub["spec"]["template"]["spec"]
    container = pod["containers"][0]
    repo = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("skerry-hub"))
    argv = [a.replace("$(SKERRY_HUB_REPO)", repo["data"]["repo"]) for a in container["args"]]
    args = build_parser().parse_args(argv)
    cfg = HubConfig.from_env({}, **flag_values(args, HubConfig))  # the hub's own checks, not only argparse
    assert cfg.state == "postgresql" and cfg.state_dsn is None
    dsn_file = cfg.state_dsn_file
    mount = next(m for m in container["volumeMounts"] if dsn_file.parent == pathlib.Path(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["items"] == [{"key": "uri", "path": dsn_file.name}]
    assert "SKERRY_HUB_STATE_DSN" not in {e["name"] for e in container.get("env", [])}  # no literal DSN
    # the example operator's Cluster makes exactly the Secret the hubs read (<cluster>-app, key uri)
    example = yaml.safe_load((DEPLOY / "overlays" / "ha" / "postgres" / "cluster.yaml").read_text())
    assert (example["apiVersion"], example["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    assert f"{example['metadata']['name']}-app" == volume["secret"]["secretName"]
    assert example["spec"]["instances"] >= 3
    # no hub volume: nothing ties a replica to a node, and no two replicas share a SQLite file
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert not any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"].startswith("skerry-hub")
                   for d in docs)
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "skerry-hub")
    assert any({"port": 5432, "protocol": "TCP"} in rule.get("ports", []) for rule in policy["spec"]["egress"])


def test_the_ha_hubs_install_the_shared_keys_from_secrets_owner_only(tmp_path):
    """The init container's script, run here on Secret files as fsGroup leaves them (0440): the hub then
    loads the agent CA it was given (no new one) and accepts the online keys (it refuses group-readable ones)."""
    from skerry.core.errors import ConfigError
    from skerry.hub.enrollment.authority import AgentAuthority
    from skerry.hub.trust.keys import generate_key, load_public, load_signer, public_path

    pod = _hub(build("ha"))["spec"]["template"]["spec"]
    init = next(c for c in pod["initContainers"] if c["name"] == "keys")
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert (secrets["enrollment"], secrets["trust-online"]) == ("skerry-hub-enrollment", "skerry-hub-trust-online")
    enrollment, trust, state = (tmp_path / "enrollment", tmp_path / "trust", tmp_path / "state")
    ca = AgentAuthority.load_or_create(tmp_path / "made")
    enrollment.mkdir()
    for name in ("ca.crt", "ca.key"):
        (enrollment / name).write_bytes((tmp_path / "made" / name).read_bytes())
    (enrollment / "token.key").write_bytes(b"k" * 32)
    trust.mkdir()
    signer_path = trust / "timestamp.key"
    generate_key(signer_path)
    for name in ("root.json", "config.json"):
        (trust / name).write_text("{}")
    for f in [*enrollment.iterdir(), *trust.iterdir()]:
        f.chmod(0o440)
    script = init["args"][0]
    for name, path in ((mounts["enrollment"], enrollment), (mounts["trust-online"], trust), (mounts["state"], state)):
        script = script.replace(name, str(path))
    out = subprocess.run(init["command"] + [script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

    installed = state / "enrollment"
    assert {f.name: f.stat().st_mode & 0o777 for f in installed.iterdir()} == {
        "ca.crt": 0o644, "ca.key": 0o600, "token.key": 0o600}
    assert AgentAuthority.load_or_create(installed).ca_pem == ca.ca_pem  # the shared CA, not a new one
    key = state / "trust" / "keys" / "timestamp.key"
    assert key.stat().st_mode & 0o777 == 0o600 and public_path(key).exists()
    with pytest.raises(ConfigError, match="readable by group"):
        load_signer(signer_path)  # as the Secret volume leaves it: refused
    assert load_signer(key).public_key.keyid == load_public(public_path(key)).keyid  # installed: accepted
    assert {f.name for f in (state / "trust").iterdir()} == {"root.json", "config.json", "keys"}
