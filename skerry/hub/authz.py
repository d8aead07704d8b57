"""Who may call which hub RPC: the tables of the hub's two gRPC servers.

Identity is the verified mTLS client certificate (``skerry.core.tls``: role =
O, principal = CN; agents are enrolled by the hub-run CA or issued by the
operator's); every call of a revoked agent certificate is refused first
(``skerry.core.authz``). Then, per RPC:

==============================  ===================================================================
HubService.WatchBundles         the agent of ``request.cluster``
HubService.ReportStatus         the agent of ``request.status.cluster``
HubService.GetFleetStatus       operators; an agent for its own cluster (empty = its own)
HubService.Sync                 operators (``skerry fetch``: fetch Git now)
EnrollmentService.Enroll        anyone: the single-use token is the credential
EnrollmentService.Renew         agents (the certificate is renewed for the cluster it names)
EnrollmentService.WatchRevocations  sealers (``skerry:sealer``)
TrustService.Fetch              agents and operators; a bundle blob only to its own cluster's agent
TrustService.GetReleaseProposal operators (CI signers)
TrustService.SubmitRelease      operators (CI signers)
TrustService.IssueNonce         the agent of ``request.cluster``
TrustService.SubmitSignedReport agents (the report must be of the caller's own cluster: ``attest``)
TrustService.GetAttestation     operators, and the agent of ``request.cluster``
PromotionService.* (reads)      operators
PromotionService.Promote        promoters (``promotion.promoters`` in skerry.yaml, any operator if
                                absent); an approver of ``to_env`` who only approves
PromotionService.Rollback       promoters
==============================  ===================================================================

The enrollment listener (server TLS only: enrolling agents have no
certificate yet) serves EnrollmentService with the same rules, so only
``Enroll`` succeeds there. Approvers per environment, soak, freezes and
bundle-scoped checks are the domains' own gates, not authorisation.
"""

from __future__ import annotations

from collections.abc import Callable

from skerry.api.v1 import enrollment_pb2, hub_pb2, promotion_pb2, trust_pb2
from skerry.core import errors, trust
from skerry.core.authz import OPERATOR, PUBLIC, AgentOf, Caller, Refusal, Role, Rule
from skerry.core.tls import ROLE_AGENT, ROLE_OPERATOR, ROLE_SEALER, Identity


def _method(module, service: str, rpc: str) -> str:
    full = module.DESCRIPTOR.services_by_name[service].full_name
    return f"/{full}/{rpc}"


class OwnTargets(Rule):
    """Agents and operators read TUF metadata (paths and hashes only); a bundle blob only its cluster's agent."""

    def check(self, who: Identity, request, method: str) -> None:
        if who.has_role(ROLE_OPERATOR):
            return
        if not who.has_role(ROLE_AGENT):
            raise errors.PermissionDenied(f"{who} may not fetch trust metadata: it needs role {ROLE_AGENT} or {ROLE_OPERATOR}")
        owner = trust.target_cluster(request.path)  # any name a bundle file is served under
        if owner is not None and owner != who.name:
            raise errors.PermissionDenied(f"{who} may not fetch the bundle of cluster {owner!r}")

    def __str__(self) -> str:
        return "agents (own bundle blobs) and operators"


class Promoters(Rule):
    """Operators named in skerry.yaml ``promotion.promoters`` (any operator if the list is absent).

    With ``approver_env_field``, an approver of that environment may call to approve only
    (``request.approve``); the promotion then records the approval and commits nothing.
    """

    def __init__(self, policy: Callable[[], object], *, approver_env_field: str = ""):
        self._policy = policy  # -> skerry.hub.promotion_policy.PromotionPolicy in force (Unavailable if none)
        self._approver_env_field = approver_env_field

    def check(self, who: Identity, request, method: str) -> None:
        OPERATOR.check(who, request, method)
        policy = self._policy()
        promoters = policy.promoters
        if promoters is None or who.name in promoters:
            return
        if self._approver_env_field and request.approve:
            env = getattr(request, self._approver_env_field)
            if who.name in policy.rules(env).approvers:
                return
        raise errors.PermissionDenied(
            f"{who} may not call {method.rsplit('/', 1)[-1]}: {who.name!r} is not in skerry.yaml promotion.promoters"
        )

    def __str__(self) -> str:
        return "promoters" + (f" (or approvers of request.{self._approver_env_field})" if self._approver_env_field else "")


def enrollment_rules() -> dict[str, Rule]:
    svc = "EnrollmentService"
    return {
        _method(enrollment_pb2, svc, "Enroll"): PUBLIC,
        _method(enrollment_pb2, svc, "Renew"): Role(ROLE_AGENT),
        _method(enrollment_pb2, svc, "WatchRevocations"): Role(ROLE_SEALER),
    }


def hub_rules(promotion_policy: Callable[[], object]) -> dict[str, Rule]:
    """The hub API server's table; ``promotion_policy`` returns the fleet's promotion policy in force."""
    hub, tr, pr = "HubService", "TrustService", "PromotionService"
    promoters = Promoters(promotion_policy)
    return {
        _method(hub_pb2, hub, "WatchBundles"): AgentOf("cluster"),
        _method(hub_pb2, hub, "ReportStatus"): AgentOf("status.cluster"),
        _method(hub_pb2, hub, "GetFleetStatus"): AgentOf("cluster", roles=(ROLE_OPERATOR,), own_if_empty=True),
        _method(hub_pb2, hub, "Sync"): OPERATOR,
        **enrollment_rules(),
        _method(trust_pb2, tr, "Fetch"): OwnTargets(),
        _method(trust_pb2, tr, "GetReleaseProposal"): OPERATOR,
        _method(trust_pb2, tr, "SubmitRelease"): OPERATOR,
        _method(trust_pb2, tr, "IssueNonce"): AgentOf("cluster"),
        _method(trust_pb2, tr, "SubmitSignedReport"): Role(ROLE_AGENT),
        _method(trust_pb2, tr, "GetAttestation"): AgentOf("cluster", roles=(ROLE_OPERATOR,)),
        _method(promotion_pb2, pr, "ListEnvironments"): OPERATOR,
        _method(promotion_pb2, pr, "GetFreight"): OPERATOR,
        _method(promotion_pb2, pr, "Diff"): OPERATOR,
        _method(promotion_pb2, pr, "WatchPromotion"): OPERATOR,
        _method(promotion_pb2, pr, "Promote"): Promoters(promotion_policy, approver_env_field="to_env"),
        _method(promotion_pb2, pr, "Rollback"): promoters,
    }


def audit_promotion_refusals(record: Callable[..., object]) -> Refusal:
    """An ``on_refused`` hook writing refused PromotionService calls to the promotion audit log."""
    prefix = "/" + promotion_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name + "/"

    def on_refused(method: str, caller: Caller, error: errors.SkerryError) -> None:
        if method.startswith(prefix):
            record(str(caller), method[len(prefix):], "denied", reason=str(error))

    return on_refused
