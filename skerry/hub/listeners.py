"""The hub's gRPC listeners, built from its settings and parts: why a module of their own.

``app.py`` wires the hub's parts together; how each listener is put up (which credentials, which
rule table, which interceptors and options) is a concern of its own and reads better in one place:

* ``hub_server``: the hub's listener (``--listen``): mutual TLS trusting the operator's CA and the
  hub-run agent CA, the hub's RPC table (``skerry.hub.authz``) in the one authorisation interceptor,
  refused promotion calls audited, agents' connections retired at their maximum age;
* ``enroll_server``: the enrollment listener (``--enroll-listen``), server-authenticated TLS only,
  since enrolling agents have no client certificate yet;
* ``enrollment_service``: EnrollmentService as (register, name), served on both.
"""

from __future__ import annotations

from skerry.api.v1 import enrollment_pb2_grpc, hub_pb2_grpc
from skerry.core import rpc
from skerry.core.tls import server_credentials
from skerry.hub.authz import audit_promotion_refusals, enrollment_rules, hub_rules
from skerry.hub.enrollment.service import SERVICE_NAME as ENROLLMENT_SERVICE
from skerry.hub.servicer import SERVICE_NAME as HUB_SERVICE


def hub_server(cfg, tls_files, servicer, enrollment, promoter, ops, services: list[tuple]) -> rpc.GrpcServer:
    """The hub's gRPC server: HubService (``servicer``) and ``services`` as (register, name) pairs, behind
    mutual TLS, the interceptor table and the ops interceptor (``ops``: ``skerry.hub.ops.HubOps``)."""
    hub = (lambda server: hub_pb2_grpc.add_HubServiceServicer_to_server(servicer, server), HUB_SERVICE)
    services = [hub, *services]
    return rpc.GrpcServer(
        cfg.listen, server_credentials(tls_files, extra_roots=enrollment.authority.ca_pem),
        register=[register for register, _ in services], service_names=[name for _, name in services],
        rules=hub_rules(promoter.policy), revocations=enrollment.revocations,
        on_refused=audit_promotion_refusals(promoter.audit.record_refusal_off_loop),  # (a state write)
        limiter=rpc.RateLimiter(), interceptors=[ops.interceptor],
        count_refusal=ops.metrics.refused.count,
        # agents' connections retire at their maximum age: a scale-out of replicas rebalances
        options=rpc.server_options(max_connection_age=cfg.max_connection_age),
        drain_seconds=cfg.drain,
    )


def enroll_server(cfg, tls_files, register, revocations, count_refusal=None) -> rpc.GrpcServer | None:
    """The enrollment listener (``--enroll-listen``), or None: server-authenticated TLS only, since
    enrolling agents have no client certificate yet."""
    if cfg.enroll_listen is None:
        return None
    return rpc.GrpcServer(cfg.enroll_listen, server_credentials(tls_files, require_client_auth=False),
                          register=[register], service_names=[ENROLLMENT_SERVICE], rules=enrollment_rules(),
                          revocations=revocations, limiter=rpc.RateLimiter(), count_refusal=count_refusal)


def enrollment_service(servicer) -> tuple:
    """EnrollmentService as (register, name): on the hub's listener and on the enrollment listener."""
    return (lambda server: enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(servicer, server),
            ENROLLMENT_SERVICE)
