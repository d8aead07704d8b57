"""A real, local Kubernetes control plane for tests and demos ("envtest").

``assets_dir()`` makes sure ``kube-apiserver``, ``etcd`` and
``kube-controller-manager`` binaries exist (running ``build.sh`` next to this
file, which builds them once from Debian's sources into
``~/.cache/skerry/envtest/bin``) and ``LocalCluster`` runs them on free
loopback ports with a throwaway PKI::

    from skerry.testing.envtest import LocalCluster

    with LocalCluster() as cluster:
        cluster.kubectl("get", "ns")
        print(cluster.kubeconfig)      # admin (system:masters) kubeconfig
        alice = cluster.user_kubeconfig("alice", ["dev"])   # RBAC-less user

There is no kubelet: pods are stored but never run. The controller manager
runs the namespace, garbage-collector, deployment, replicaset, serviceaccount
and serviceaccount-token controllers.

Modules, one verb each:

``assets``     find the binaries, or build them once with ``build.sh`` (package data)
``pki``        the throwaway CA, certificates and kubeconfigs (on :mod:`skerry.core.tls`)
``process``    spawn, wait for readiness, stop, sweep what a killed run left behind
``components`` the command line of each control-plane component (ports, PKI files)
``cluster``    ``LocalCluster``: the three together, plus admin clients (HTTP, kubectl)
``errors``     ``EnvtestError``
``__main__``   ``python -m skerry.testing.envtest build|run``
"""

from __future__ import annotations

from skerry.testing.envtest.assets import BUILD_SCRIPT, REQUIRED_BINARIES, assets_dir
from skerry.testing.envtest.cluster import LocalCluster
from skerry.testing.envtest.errors import EnvtestError

__all__ = [
    "EnvtestError",
    "LocalCluster",
    "assets_dir",
    "BUILD_SCRIPT",
    "REQUIRED_BINARIES",
]
