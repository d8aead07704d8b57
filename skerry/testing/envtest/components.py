"""The command line of each control-plane component: what runs, on which ports, trusting which PKI files.

Kept apart from :mod:`.cluster` (which decides when each runs) so the flags can be read in one place.
"""

from __future__ import annotations

import os
import pathlib
import platform

from skerry.testing.envtest import process

#: Controllers started in kube-controller-manager.
CONTROLLERS = (
    "namespace",
    "garbagecollector",
    "deployment",
    "replicaset",
    "serviceaccount",
    "serviceaccount-token",
)




def etcd_argv(etcd: pathlib.Path, data_dir: pathlib.Path, client_url: str, peer_url: str) -> list[str]:
    """A single-member etcd on loopback (fsync off when this etcd can: the data is throwaway)."""
    argv = [
        str(etcd),
        "--name=envtest",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=envtest={peer_url}",
        "--initial-cluster-state=new",
    ]
    if process.supports_flag(etcd, "--unsafe-no-fsync"):
        argv.append("--unsafe-no-fsync")
    return argv


def apiserver_argv(
    binary: pathlib.Path,
    *,
    etcd_url: str,
    port: int,
    workdir: pathlib.Path,
    pki_dir: pathlib.Path,
    service_cluster_ip_range: str,
    service_account_issuer: str,
) -> list[str]:
    """kube-apiserver on 127.0.0.1 with RBAC, client certificates from the cluster CA, no kubelet."""
    sa_key = pki_dir / "sa.key"
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        "--insecure-port=0",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
        f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
        f"--client-ca-file={pki_dir / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={pki_dir / 'sa.pub'}",
        f"--service-account-signing-key-file={sa_key}",
        f"--service-account-issuer={service_account_issuer}",
        f"--service-cluster-ip-range={service_cluster_ip_range}",
        "--endpoint-reconciler-type=none",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_argv(binary: pathlib.Path, kubeconfig: pathlib.Path, pki_dir: pathlib.Path) -> list[str]:
    """kube-controller-manager running :data:`CONTROLLERS` as one identity, no leader election."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={pki_dir / 'sa.key'}",
        f"--root-ca-file={pki_dir / 'ca.crt'}",
        "--use-service-account-credentials=false",
        "--leader-elect=false",
        "--secure-port=0",
        "--port=0",
        "--profiling=false",
    ]


def environment() -> dict[str, str]:
    """Our environment minus what would point a component elsewhere (``ETCD_*``, ``KUBECONFIG``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):  # this etcd refuses other architectures unless told
        env["ETCD_UNSUPPORTED_ARCH"] = {"aarch64": "arm64"}.get(machine, machine)
    return env
