"""What sealer tests share that is not a fixture: the secret value that must never leak, a live sealer in
a thread, the sealer CLI as a user runs it, SealedSecrets and signed bundles made the way the hub and
kubeseal make them."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import pathlib
import sys
import threading

from skerry import cli
from skerry.core import sealedsecret, tls
from skerry.core.bundle import Bundle
from skerry.sealer import crypto
from skerry.sealer.app import SealerApp
from skerry.sealer.config import SealerConfig

SECRET_VALUE = "hunter2-do-not-log-me"


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: tls.CertificateAuthority
    sealer: tls.TlsFiles
    agent: tls.TlsFiles
    operator: tls.TlsFiles
    foreign: tls.TlsFiles  # a client whose certificate comes from another CA


class LogCapture:
    def __init__(self):
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def events(self, event: str) -> list[dict]:
        return [r for r in self.records() if r.get("event") == event]


class ServerThread:
    """A SealerApp on 127.0.0.1:0 in its own event loop thread, for synchronous clients."""

    def __init__(self, config: SealerConfig):
        self.app = SealerApp(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sealer", daemon=True)
        self.port = 0

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.app.start(), self._loop).result(60)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(0), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def sealer_config(mtls: Pki, keys_dir: pathlib.Path, **kw) -> SealerConfig:
    return SealerConfig(
        listen="127.0.0.1:0",
        tls_ca=mtls.sealer.ca,
        tls_cert=mtls.sealer.cert,
        tls_key=mtls.sealer.key,
        keys_dir=keys_dir,
        grace_seconds=0,
        **kw,
    )


def run_cli(argv, capsys, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def sealed_secret(key, namespace="shop", name="db", scope="strict", domain="", hint=True, **values) -> dict:
    label = sealedsecret.encryption_label(namespace, name, scope)
    annotations = dict(sealedsecret.scope_annotations(scope))
    if hint:
        annotations[sealedsecret.ANNOTATION_KEY_ID] = key.key_id
    if domain:
        annotations[sealedsecret.ANNOTATION_DOMAIN] = domain
    return {
        "apiVersion": sealedsecret.API_VERSION,
        "kind": sealedsecret.KIND,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "encryptedData": {
                k: crypto.seal_value(key.public_key, v.encode(), label)
                for k, v in (values or {"password": SECRET_VALUE}).items()
            },
            "template": {"metadata": {"labels": {"app": "shop"}}},
        },
    }


class Released:
    """Bundles released and directed in a real trust repository, shown to the sealer as an agent shows them."""

    def __init__(self, tmp_path):
        from tests.e2e.trust_world import TrustWorld

        self.world = TrustWorld(tmp_path / "trust")
        self.sealer_state = tmp_path / "sealer-state"

    def trust(self):
        from skerry.sealer.bundle_trust import TufBundleTrust

        return TufBundleTrust(self.world.root, self.sealer_state)

    def __call__(self, cluster: str, objects, release: int = 1) -> tuple[bytes, bytes]:
        """``(evidence, bundle)`` of release ``release`` of ``objects`` for ``cluster``."""
        from tests.sealer.test_tuf_trust import evidence

        raw = Bundle(cluster, f"{release:040x}", "file:///repo", ("p",), "kustomize", "v5", tuple(objects)).encode()
        self.world.publish(cluster, "dev", raw, release=release)
        return evidence(self.world, cluster), raw
