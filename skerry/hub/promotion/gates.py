"""Gates: may freight move from one environment into the next? Pure: data in, verdicts out.

Each gate is a verdict (name, passed, message); a gate that is not met names the cluster or rule
that blocks it. The inputs are the clusters' health as the hub sees it (``ClusterHealth``, built
from agents' reports: in TUF mode only reports the agent signed with a hub-issued nonce count,
``signature_required``; otherwise the mTLS-authenticated ``ReportStatus``).

Gates, in order:

* ``order``: ``to`` is the environment right after ``from`` in ``skerry.yaml`` (no skipping);
* ``clusters``: ``from`` has clusters, each reports its current bundle applied and Ready;
* ``soak``: each has been healthy on that bundle for ``from``'s soak time;
* ``freeze``: no freeze of ``to`` covers now;
* ``approvals``: ``to`` is protected: at least k of its n approvers approved this freight.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence

from skerry.hub.promotion_policy import EnvironmentRules


@dataclasses.dataclass(frozen=True)
class ClusterHealth:
    cluster: str
    desired_digest: str = ""  # the bundle the hub serves it now
    desired_revision: str = ""
    applied_digest: str = ""  # what the agent last reported applied ("" before any report)
    ready: bool = False
    reason: str = ""  # the Ready condition's reason/message when not ready
    healthy_since: _dt.datetime | None = None  # Ready on applied_digest continuously since
    reported: bool = False
    signed: bool = False  # applied/ready come from a report the agent signed with a hub nonce
    signature_required: bool = False  # TUF mode: an unsigned report does not count
    # The desired and the applied release as people read them (``r7``; display only, "" if none).
    desired_release: str = ""
    applied_release: str = ""

    @property
    def on_desired(self) -> bool:
        return bool(self.desired_digest) and self.applied_digest == self.desired_digest

    @property
    def healthy(self) -> bool:
        return self.reported and self.on_desired and self.ready and (self.signed or not self.signature_required)


@dataclasses.dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    message: str


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def cluster_problem(c: ClusterHealth) -> str | None:
    """Why a cluster is not healthy on its current bundle, or None."""
    if not c.desired_digest:
        return f"cluster {c.cluster} has no bundle (render error or not synced yet)"
    if c.signature_required and not c.signed:
        return (f"cluster {c.cluster} has sent no signed report (gates trust only reports its agent signed "
                "with a hub nonce)")
    if not c.reported:
        return f"cluster {c.cluster} has not reported (offline or not started)"
    if not c.on_desired:
        return f"cluster {c.cluster} has not applied its current bundle {c.desired_digest[:19]} yet"
    if not c.ready:
        return f"cluster {c.cluster} is not Ready ({c.reason or 'no reason given'})"
    return None


def evaluate(
    *,
    environments: Sequence[str],
    from_env: str,
    to_env: str,
    from_clusters: Sequence[ClusterHealth],
    from_rules: EnvironmentRules,
    to_rules: EnvironmentRules,
    approvals: Iterable[str],
    now: _dt.datetime,
) -> list[Gate]:
    """Every gate in order; a wrong order is the only gate then (nothing else is meaningful)."""
    order = _order(list(environments), from_env, to_env)
    if not order.passed:
        return [order]
    gates = [
        order,
        _clusters(from_env, from_clusters),
        _soak(from_env, from_clusters, from_rules.soak_seconds, now),
        _freeze(to_env, to_rules, now),
        _approvals(to_env, to_rules, approvals),
    ]
    return [g for g in gates if g is not None]


def _order(envs: list[str], from_env: str, to_env: str) -> Gate:
    if from_env not in envs or to_env not in envs:
        missing = from_env if from_env not in envs else to_env
        return Gate("order", False, f"environment {missing!r} is not in skerry.yaml environments {envs}")
    i, j = envs.index(from_env), envs.index(to_env)
    if j != i + 1:
        nxt = envs[i + 1] if i + 1 < len(envs) else None
        then = f": promote {from_env} -> {nxt} first" if nxt else f": {from_env} is the last environment"
        return Gate("order", False, f"{to_env} does not follow {from_env} in environments {envs}{then}")
    return Gate("order", True, f"{from_env} -> {to_env}")


def _clusters(from_env: str, from_clusters: Sequence[ClusterHealth]) -> Gate:
    if not from_clusters:
        return Gate("clusters", False, f"environment {from_env} has no clusters to prove the freight on")
    problems = [p for c in from_clusters if (p := cluster_problem(c))]
    if problems:
        return Gate("clusters", False, "; ".join(problems))
    names = ", ".join(c.cluster for c in from_clusters)
    return Gate("clusters", True, f"all of {from_env} applied and Ready: {names}")


def _soak(from_env: str, from_clusters: Sequence[ClusterHealth], soak: float, now: _dt.datetime) -> Gate | None:
    if not (soak > 0 and from_clusters):
        return None
    short = []
    for c in from_clusters:
        if not c.healthy or c.healthy_since is None:
            short.append(f"cluster {c.cluster} is not healthy yet (soak {_fmt(soak)})")
            continue
        held = (now - c.healthy_since).total_seconds()
        if held < soak:
            short.append(
                f"cluster {c.cluster} healthy for {_fmt(held)} of the {_fmt(soak)} soak ({_fmt(soak - held)} to go)"
            )
    return Gate("soak", not short, "; ".join(short) if short else f"every cluster of {from_env} soaked {_fmt(soak)}")


def _freeze(to_env: str, to_rules: EnvironmentRules, now: _dt.datetime) -> Gate | None:
    active = [f for f in to_rules.freezes if f.covers(now)]
    if active:
        return Gate("freeze", False, f"{to_env} is frozen now by " + ", ".join(f.describe() for f in active))
    if to_rules.freezes:
        return Gate("freeze", True, f"no freeze of {to_env} is active")
    return None


def _approvals(to_env: str, to_rules: EnvironmentRules, approvals: Iterable[str]) -> Gate | None:
    if not to_rules.protected:
        return None
    given = sorted(set(approvals) & set(to_rules.approvers))
    k = to_rules.approvals
    if len(given) >= k:
        return Gate("approvals", True, f"approved by {', '.join(given)} ({len(given)} of {k} needed)")
    others = sorted(set(to_rules.approvers) - set(given))
    return Gate(
        "approvals",
        False,
        f"{to_env} needs {k} approvals of {len(to_rules.approvers)}, has {len(given)}"
        + (f" ({', '.join(given)})" if given else "")
        + f"; ask one of: {', '.join(others)}",
    )


class HealthTracker:
    """When did each cluster start being healthy on the bundle it runs? Fed every accepted report.

    A cluster is healthy from the first report that says Ready on a digest until a report says
    otherwise or names another digest. Times come from the hub's clock (injected in tests).
    """

    def __init__(self) -> None:
        self._since: dict[str, tuple[str, _dt.datetime | None]] = {}

    def observe(self, cluster: str, applied_digest: str, ready: bool, at: _dt.datetime) -> None:
        held = self._since.get(cluster)
        if not ready:
            self._since[cluster] = (applied_digest, None)
        elif held is None or held[0] != applied_digest or held[1] is None:
            self._since[cluster] = (applied_digest, at)

    def healthy_since(self, cluster: str, digest: str) -> _dt.datetime | None:
        held = self._since.get(cluster)
        return held[1] if held is not None and held[0] == digest else None

    def since(self, cluster: str) -> tuple[str, _dt.datetime | None] | None:
        """``(digest, healthy since or None)`` as last observed, for the report journal."""
        return self._since.get(cluster)

    def restore(self, cluster: str, digest: str, since: _dt.datetime | None) -> None:
        """Take back a soak clock a previous process stored (``skerry.hub.reports``)."""
        self._since[cluster] = (digest, since)

    def snapshot(self) -> Mapping[str, tuple[str, _dt.datetime | None]]:
        return dict(self._since)
