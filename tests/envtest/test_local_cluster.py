"""The local control plane from skerry.testing.envtest really works.

One cluster per module (etcd + kube-apiserver + kube-controller-manager).
Binaries come from $KUBEBUILDER_ASSETS or the build cache; a cold build
takes ~5 minutes (run `python -m skerry.testing.envtest build` beforehand).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
import uuid

import pytest

from skerry.testing.envtest import EnvtestError, LocalCluster, assets_dir

pytestmark = [
    pytest.mark.kube,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("envtest"))
    c.start(timeout=120)
    try:
        yield c
    finally:
        c.stop()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _eventually(fn, timeout: float = 60.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def test_version_is_1_20_2(cluster):
    v = cluster.api_json("GET", "/version")
    assert v["gitVersion"] == "v1.20.2"
    assert (v["major"], v["minor"]) == ("1", "20")


def test_kubeconfig_works_with_kubectl(cluster):
    assert cluster.server.startswith("https://127.0.0.1:")
    out = cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(out)
    # the same file works through $KUBECONFIG too, without --kubeconfig
    import subprocess

    r = subprocess.run(
        ["kubectl", "get", "--raw", "/readyz"], env=cluster.env(), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_namespace_deletion_finishes(cluster):
    """Only the controller-manager's namespace controller empties and removes a namespace."""
    ns = _name("gone")
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("-n", ns, "create", "configmap", "cm1", "--from-literal=a=b")
    cluster.kubectl("delete", "namespace", ns, "--wait=false")

    def gone():
        r = cluster.kubectl("get", "namespace", ns, check=False)
        return r.returncode != 0 and "NotFound" in r.stderr

    _eventually(gone, timeout=60)
    status, _ = cluster.api_request("GET", f"/api/v1/namespaces/{ns}/configmaps/cm1")
    assert status == 404


def test_service_account_token_controller(cluster):
    sa = cluster.api_json("GET", "/api/v1/namespaces/default/serviceaccounts/default")
    assert sa["metadata"]["name"] == "default"
    _eventually(
        lambda: cluster.api_json("GET", "/api/v1/namespaces/default/serviceaccounts/default").get("secrets")
    )


def test_deployment_controllers_create_pods(cluster):
    ns = _name("deploy")
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("-n", ns, "create", "deployment", "web", "--image=example.invalid/web:1", "--replicas=2")

    def pods():
        items = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
        return len(items) == 2

    _eventually(pods, timeout=60)  # deployment -> replicaset -> pods (never scheduled: no kubelet)


def test_user_without_rbac_is_forbidden(cluster):
    ns = _name("rbac")
    cluster.kubectl("create", "namespace", ns)
    alice = cluster.user_kubeconfig("alice", ["skerry-devs"])

    r = cluster.kubectl("-n", ns, "get", "configmaps", kubeconfig=alice, check=False)
    assert r.returncode != 0
    assert "forbidden" in r.stderr.lower() and 'User "alice"' in r.stderr

    # grant the group read access in that namespace; alice now may read
    cluster.kubectl("-n", ns, "create", "role", "reader", "--verb=get,list", "--resource=configmaps")
    cluster.kubectl("-n", ns, "create", "rolebinding", "devs-read", "--role=reader", "--group=skerry-devs")
    _eventually(
        lambda: cluster.kubectl("-n", ns, "get", "configmaps", kubeconfig=alice, check=False).returncode == 0,
        timeout=10,
    )
    # ...but still not write, and not elsewhere
    r = cluster.kubectl("-n", ns, "create", "configmap", "x", kubeconfig=alice, check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr.lower()
    r = cluster.kubectl("-n", "default", "get", "configmaps", kubeconfig=alice, check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr.lower()

    # a user outside the group is still forbidden
    bob = cluster.user_kubeconfig("bob")
    r = cluster.kubectl("-n", ns, "get", "configmaps", kubeconfig=bob, check=False)
    assert r.returncode != 0 and 'User "bob"' in r.stderr


CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.envtest.skerry.dev}
    spec:
      group: envtest.skerry.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                properties:
                  size: {type: integer}
                  color: {type: string}
              status:
                type: object
                x-kubernetes-preserve-unknown-fields: true
    """
)


def test_crd_and_custom_resource(cluster):
    """Custom-resource writes crash an apiserver built with the stock vendored reflect2."""
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.envtest.skerry.dev", "--timeout=30s")
    ns = _name("crd")
    cluster.kubectl("create", "namespace", ns)
    cr = f"apiVersion: envtest.skerry.dev/v1\nkind: Widget\nmetadata: {{name: w1, namespace: {ns}}}\nspec: {{size: 3}}\n"

    # discovery of the new group can lag Established by a moment
    _eventually(
        lambda: cluster.kubectl("create", "-f", "-", input=cr, check=False).returncode == 0, timeout=20
    )
    got = cluster.api_json("GET", f"/apis/envtest.skerry.dev/v1/namespaces/{ns}/widgets/w1")
    assert got["spec"] == {"size": 3}
    cluster.kubectl("-n", ns, "patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"color":"red"}}')
    got = cluster.api_json("GET", f"/apis/envtest.skerry.dev/v1/namespaces/{ns}/widgets/w1")
    assert got["spec"] == {"size": 3, "color": "red"}
    # schema validation is enforced
    r = cluster.kubectl(
        "-n", ns, "patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":"big"}}', check=False
    )
    assert r.returncode != 0 and "Invalid" in r.stderr
    cluster.check_alive()


def test_server_side_apply(cluster):
    ns = _name("ssa")
    cluster.kubectl("create", "namespace", ns)
    cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c1, namespace: {ns}}}\ndata: {{a: '1'}}\n"
    cluster.kubectl("apply", "--server-side", "--field-manager=skerry-agent", "-f", "-", input=cm)
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=skerry-agent", "-f", "-", input=cm.replace("'1'", "'2'")
    )
    obj = cluster.api_json("GET", f"/api/v1/namespaces/{ns}/configmaps/c1")
    assert obj["data"] == {"a": "2"}
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("skerry-agent", "Apply") in managers

    # another manager touching the same field conflicts unless forced
    r = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=intruder",
        "-f",
        "-",
        input=cm.replace("'1'", "'3'"),
        check=False,
    )
    assert r.returncode != 0 and "conflict" in r.stderr.lower()
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=intruder",
        "--force-conflicts",
        "-f",
        "-",
        input=cm.replace("'1'", "'3'"),
    )
    assert cluster.api_json("GET", f"/api/v1/namespaces/{ns}/configmaps/c1")["data"] == {"a": "3"}


def test_assets_dir_without_build_finds_binaries():
    d = assets_dir(build=False)
    for b in ("kube-apiserver", "etcd"):
        assert os.access(d / b, os.X_OK)


def test_stop_kills_processes_and_removes_temp_workdir():
    c = LocalCluster(controller_manager=False)
    c.start()
    workdir = c.workdir
    pids = c.pids
    assert workdir.is_dir() and len(pids) == 2 and c.running
    c.stop()
    assert not workdir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    c.stop()  # idempotent


def test_bad_assets_dir_raises(tmp_path):
    with pytest.raises(EnvtestError):
        LocalCluster(tmp_path / "w", assets=tmp_path).start()
