"""A stand-in for the kubelet, which envtest does not have: a Deployment's pod as local processes.

What it does is what a kubelet does with the live objects, read from the real API server: each
volume becomes a directory (a Secret's or ConfigMap's keys as files, a claim or emptyDir empty),
the container's environment comes from ``env`` and ``envFrom``, ``$(VAR)`` in its args is expanded,
init containers run to completion first, and the container runs with the image's entry point
(``skerry``). What it cannot do is mount at the container's paths or bind its ports: each mount
path is rewritten to the volume's directory and each ``HOST:PORT`` whose port is in ``ports`` to a
loopback port (the same for every pod, so agents find the hub), any other ``0.0.0.0:PORT`` to a
free one. Nothing else of the manifests is changed.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import subprocess
import sys

from skerry.testing.devstack import Service
from skerry.testing.envtest.process import free_ports

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9.-]+):(?P<port>\d+)$")


def kubectl_json(kubeconfig: pathlib.Path, *args: str) -> dict:
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class LocalPod:
    def __init__(self, kubeconfig: pathlib.Path, namespace: str, deployment: str, workdir: pathlib.Path,
                 ports: dict[int, int]):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workdir = workdir
        self.ports = ports
        dep = kubectl_json(kubeconfig, "get", "deployment", deployment, "-n", namespace)
        self.pod = dep["spec"]["template"]["spec"]
        self.volumes = {v["name"]: self._materialize(v) for v in self.pod.get("volumes", [])}
        self.empty_dirs = {v["name"] for v in self.pod.get("volumes", []) if "emptyDir" in v}

    def _get(self, kind: str, name: str) -> dict | None:
        out = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "get", kind, name, "-n",
                              self.namespace, "-o", "json"], capture_output=True, text=True)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def _materialize(self, volume: dict) -> pathlib.Path:
        path = self.workdir / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            obj = self._get("secret", volume["secret"]["secretName"])
            assert obj or volume["secret"].get("optional"), f"Secret {volume['secret']['secretName']} is missing"
            for key, value in ((obj or {}).get("data") or {}).items():
                (path / key).write_bytes(base64.b64decode(value))
                os.chmod(path / key, volume["secret"].get("defaultMode", 0o644))
        elif "configMap" in volume:
            obj = self._get("configmap", volume["configMap"]["name"])
            assert obj or volume["configMap"].get("optional"), f"ConfigMap {volume['configMap']['name']} is missing"
            for key, value in ((obj or {}).get("data") or {}).items():
                (path / key).write_text(value)
        elif "persistentVolumeClaim" in volume:
            assert self._get("pvc", volume["persistentVolumeClaim"]["claimName"]), "claim missing"
        return path

    def container(self, name: str) -> dict:
        return next(c for c in self.pod.get("initContainers", []) + self.pod["containers"] if c["name"] == name)

    def environment(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            cm = self._get("configmap", source["configMapRef"]["name"])
            assert cm, f"ConfigMap {source['configMapRef']['name']} is missing"
            env.update(cm.get("data") or {})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["configMapKeyRef"]
                env[item["name"]] = (self._get("configmap", ref["name"]) or {})["data"][ref["key"]]
        return {k: self._local(v) for k, v in env.items()}

    def args(self, container: dict, env: dict[str, str]) -> list[str]:
        return [self._local(_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a)) for a in container["args"]]

    def _local(self, value: str) -> str:
        mounts = {}
        for c in self.pod.get("initContainers", []) + self.pod["containers"]:
            for mount in c.get("volumeMounts", []):
                mounts[mount["mountPath"]] = self.volumes[mount["name"]]
        scratch = {m for m, d in mounts.items() if d.name in self.empty_dirs}
        for mount_path in sorted(mounts, key=len, reverse=True):
            # an emptyDir (/tmp) only as itself: a host path below /tmp is the test's, not the pod's
            if value == mount_path or (value.startswith(mount_path + "/") and mount_path not in scratch):
                return str(mounts[mount_path]) + value[len(mount_path):]
        m = _ADDRESS.match(value)
        if m and int(m["port"]) in self.ports:
            return f"127.0.0.1:{self.ports[int(m['port'])]}"
        if m and m["host"] == "0.0.0.0":
            return f"127.0.0.1:{free_ports(1)[0]}"
        return value

    def run_init(self, extra_env: dict[str, str] | None = None) -> None:
        for c in self.pod.get("initContainers", []):
            env = self.environment(c)
            out = subprocess.run([sys.executable, "-m", "skerry", *self.args(c, env)], capture_output=True, text=True,
                                 env={**os.environ, **env, **(extra_env or {})}, timeout=120)
            assert out.returncode == 0, f"init container {c['name']}: {out.stderr}"

    def start(self, name: str, *extra: str, extra_env: dict[str, str] | None = None) -> Service:
        c = self.container(name)
        env = self.environment(c)
        return Service(f"{self.namespace}-{name}-{self.workdir.name}", [*self.args(c, env), *extra], self.workdir,
                       env={**env, **(extra_env or {})}).start()
