"""``ReconcileResult`` -> ``skerry.api.v1.ClusterStatus``: the report the hub shows."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from importlib import metadata

from skerry.agent.reconcile.model import Condition, ObjectRef, ObjectResult, ReconcileResult
from skerry.api.v1 import common_pb2, hub_pb2


def agent_version() -> str:
    try:
        return metadata.version("skerry")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def ref_proto(ref: ObjectRef) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(
        group=ref.group, version=ref.version, kind=ref.kind, namespace=ref.namespace, name=ref.name
    )


def condition_proto(c: Condition) -> common_pb2.Condition:
    return common_pb2.Condition(type=c.type, status=c.status, reason=c.reason, message=c.message)


def object_proto(r: ObjectResult) -> hub_pb2.ObjectStatus:
    return hub_pb2.ObjectStatus(ref=ref_proto(r.ref), action=r.action, message=r.message)


def to_proto(
    result: ReconcileResult,
    *,
    extra_conditions: Iterable[Condition] = (),
    observed: _dt.datetime | None = None,
    version: str | None = None,
) -> hub_pb2.ClusterStatus:
    """The status proto for ``result``; ``extra_conditions`` replace same-typed ones (e.g. ``Verified``)."""
    result = result.with_conditions(extra_conditions)
    observed = observed or _dt.datetime.now(_dt.UTC)
    return hub_pb2.ClusterStatus(
        cluster=result.cluster,
        applied_version=result.release,
        applied_number=result.number,
        applied_digest=result.digest,
        revision=result.revision,
        conditions=[condition_proto(c) for c in result.conditions],
        objects=[object_proto(r) for r in result.objects],
        agent_version=version if version is not None else agent_version(),
        observed_unix_ms=int(observed.timestamp() * 1000),
    )
