"""``PromotionService`` over gRPC: proto <-> domain translation only; the logic is ``service.Promoter``."""

from __future__ import annotations

import datetime as _dt

from skerry.api.v1 import promotion_pb2 as pb
from skerry.api.v1 import promotion_pb2_grpc
from skerry.core.authz import identity
from skerry.core.errors import InvalidInput
from skerry.hub.promotion import freight as fr
from skerry.hub.promotion import targets
from skerry.hub.promotion.gates import ClusterHealth, Gate
from skerry.hub.promotion.records import Record
from skerry.hub.promotion.service import Freight, Promoter

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PromotionService"].full_name
MAX_NAME = 253  # app, environment and revision names from the caller


def _ms(when: _dt.datetime | None) -> int:
    return int(when.timestamp() * 1000) if when is not None else 0


def _need(value: str, what: str) -> str:
    if not value:
        raise InvalidInput(f"{what} is required")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{what} is longer than {MAX_NAME} characters")
    return value


def image_to_proto(i: fr.Image) -> pb.Image:
    return pb.Image(name=i.name, new_name=i.new_name, new_tag=i.new_tag, digest=i.digest, reference=i.reference)


def health_to_proto(c: ClusterHealth) -> pb.ClusterHealth:
    return pb.ClusterHealth(
        cluster=c.cluster, desired_digest=c.desired_digest, desired_revision=c.desired_revision,
        applied_digest=c.applied_digest, ready=c.ready, reason=c.reason,
        healthy_since_unix_ms=_ms(c.healthy_since), reported=c.reported, signed=c.signed,
        desired_release=c.desired_release, applied_release=c.applied_release,
    )


def freight_to_proto(f: Freight) -> pb.Freight:
    return pb.Freight(
        app=f.app, env=f.env, overlay=f.overlay, images=[image_to_proto(i) for i in f.images],
        revision=f.revision, clusters=[health_to_proto(c) for c in f.clusters], healthy=f.healthy,
    )


def gate_to_proto(g: Gate) -> pb.Gate:
    return pb.Gate(name=g.name, passed=g.passed, message=g.message)


def change_to_proto(c: fr.ImageChange) -> pb.ImageChange:
    return pb.ImageChange(name=c.name, before=c.before, after=c.after)


def record_to_proto(r: Record) -> pb.Promotion:
    return pb.Promotion(
        id=r.id, app=r.app, from_env=r.from_env, to_env=r.to_env, kind=r.kind, state=r.state,
        commit=r.commit, branch=r.branch, gates=[gate_to_proto(g) for g in r.gates],
        changes=[change_to_proto(c) for c in r.changes],
        clusters=[
            pb.ClusterProgress(cluster=c.cluster, state=c.state, target_digest=c.target_digest,
                               applied_digest=c.applied_digest, message=c.message,
                               target_release=c.target_release, applied_release=c.applied_release)
            for c in r.clusters
        ],
        approved_by=r.approved_by, requested_by=r.requested_by, message=r.message,
        rollback_commit=r.rollback_commit, updated_unix_ms=_ms(r.updated),
    )


class PromotionServicer(promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(self, promoter: Promoter):
        self._p = promoter

    async def ListEnvironments(self, request, context):
        fleet, policy = await self._p.list_environments(identity())
        envs = []
        for name in fleet.environments:
            rules = policy.rules(name)
            envs.append(pb.Environment(
                name=name, clusters=targets.clusters_of(fleet, name),
                rules=pb.Rules(soak_seconds=rules.soak_seconds, approvals=rules.approvals,
                               approvers=list(rules.approvers), auto_rollback=rules.auto_rollback,
                               freezes=[f.describe() for f in rules.freezes]),
            ))
        revision = getattr(self._p.fleet_view, "revision", "")
        return pb.ListEnvironmentsResponse(environments=envs, apps=sorted(policy.apps), revision=revision)

    async def GetFreight(self, request, context):
        who = identity()
        f = await self._p.get_freight(who, _need(request.app, "app"), _need(request.env, "env"))
        return freight_to_proto(f)

    async def Diff(self, request, context):
        who = identity()
        src, dst, changes, gates = await self._p.diff(
            who, _need(request.app, "app"), _need(request.from_env, "from_env"), _need(request.to_env, "to_env")
        )
        return pb.DiffResponse(
            from_freight=freight_to_proto(src), to_freight=freight_to_proto(dst),
            changes=[change_to_proto(c) for c in changes], gates=[gate_to_proto(g) for g in gates],
        )

    async def Promote(self, request, context):
        who = identity()
        rec = await self._p.promote(
            who, _need(request.app, "app"), _need(request.from_env, "from_env"), _need(request.to_env, "to_env"),
            approve=request.approve, branch=request.branch, dry_run=request.dry_run,
        )
        return record_to_proto(rec)

    async def Rollback(self, request, context):
        who = identity()
        rec = await self._p.rollback(
            who, _need(request.app, "app"), _need(request.env, "env"), _need(request.to_revision, "to_revision")
        )
        return record_to_proto(rec)

    async def WatchPromotion(self, request, context):
        who = identity()
        async for rec in self._p.watch(who, _need(request.id, "id")):
            yield record_to_proto(rec)
