"""An agent in a workload cluster: ``skerry cluster add NAME --install --context WORKLOAD``.

What the agent's pod needs, taken from the management cluster an install made: a single-use
bootstrap token signed with the hub's token key (from ``skerry-hub-seed``; the hub checks it
without any record), the TUF root and the CA of the hub's certificate (``skerry-hub-trust``), and
where the hub, its enrollment listener and the sealer are (``skerry-install``). Then
``deploy/overlays/workload`` with this cluster's settings. The init container trades the token for
a certificate naming exactly this cluster.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from skerry.core.errors import ConfigError
from skerry.hub.enrollment.tokens import TokenClaims, TokenIssuer, check_cluster_name
from skerry.hub.seed import TOKEN_KEY
from skerry.install import material as m
from skerry.install.management import ADDRESSES, check_references
from skerry.install.manifests import AGENT_SETTINGS, WORKLOAD, Overlay

BOOTSTRAP_SECRET = "skerry-agent-bootstrap"  # deploy/base/agent/deployment.yaml mounts it at /bootstrap


@dataclasses.dataclass(frozen=True)
class Management:
    """What the management cluster's install left that an agent needs (live objects by name)."""

    seed: dict
    trust: dict
    addresses: dict

    @classmethod
    def from_live(cls, live: Mapping[str, dict]) -> Management:
        missing = [n for n in (m.SEED, m.TRUST, ADDRESSES) if n not in live]
        if missing:
            raise ConfigError(f"the management cluster has no {', '.join(missing)} in {m.NAMESPACE}: run skerry "
                              "install there first (or give --management-context)")
        return cls(live[m.SEED], live[m.TRUST], dict(live[ADDRESSES].get("data") or {}))

    def token(self, cluster: str, ttl: float) -> tuple[str, TokenClaims]:
        return TokenIssuer(m.secret_data(self.seed)[TOKEN_KEY]).issue(check_cluster_name(cluster), ttl)


def agent_objects(management: Management, cluster: str, environment: str, token: str,
                  deploy_dir: pathlib.Path, *, engine: str = "auto") -> list[dict]:
    data = management.trust.get("data") or {}
    settings = {
        "SKERRY_AGENT_CLUSTER": check_cluster_name(cluster),
        "SKERRY_AGENT_ENVIRONMENT": environment,
        "SKERRY_AGENT_HUB": management.addresses.get("hub", ""),
        "SKERRY_AGENT_ENROLL": management.addresses.get("enroll", ""),
        "SKERRY_AGENT_SEALER": management.addresses.get("sealer", ""),
    }
    empty = [k for k, v in settings.items() if not v]
    if empty:
        raise ConfigError(f"no value for {', '.join(empty)} (ConfigMap {m.NAMESPACE}/{ADDRESSES} of the management "
                          "cluster, or --environment)")
    objects = [
        m.secret(BOOTSTRAP_SECRET, m.NAMESPACE, {"token": token.encode()}),
        m.trust_configmap(m.NAMESPACE, data.get("root.json", "").encode(), data.get("hub-ca.crt", "").encode()),
        *Overlay(deploy_dir, WORKLOAD, {AGENT_SETTINGS: settings}).render(engine),
    ]
    check_references(objects)
    return objects
