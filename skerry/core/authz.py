"""Who may call which RPC: one interceptor per server, fed one declared table.

Every Skerry gRPC server (hub API, enrollment listener, sealer) is built by
``skerry.core.rpc.GrpcServer``, which refuses to start without a table
(``{full method name: Rule}``) covering every RPC it serves. For each call
``AuthzInterceptor``:

1. reads the verified mTLS peer certificate (role = its O, principal = its CN;
   ``skerry.core.tls``) into a ``Caller``;
2. refuses a revoked agent certificate (``Revocations.check_caller``), on every
   RPC, public ones included;
3. applies the method's ``Rule`` to the caller and the request (a method with
   no rule is refused: fail closed);
4. hands the ``Caller`` to the servicer through a context variable
   (``caller()``): servicers hold no authorisation code.

A refusal is a ``SkerryError`` (``Unauthenticated`` without a certificate,
``PermissionDenied`` otherwise) that ``ErrorInterceptor`` maps to its status;
``on_refused`` lets a service audit it (the sealer's unseal audit, the
promotion audit log). Rules that need service state (a fleet's promoter
list, a TUF target's cluster) are written in the service's own table module
as ``Rule`` subclasses.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as _dt
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Protocol

import grpc
from cryptography import x509
from google.protobuf import descriptor_pool

from skerry.core import errors
from skerry.core.tls import ROLE_AGENT, ROLE_OPERATOR, Identity, identity_from_pem

# Certificates parsed once per process (LRU): one per agent of a 10,000-cluster fleet plus headroom.
MAX_CACHED_CERTIFICATES = 20_000
# Depth of a dotted request field a rule may read ("status.cluster"): requests are shallow.
MAX_FIELD_DEPTH = 4
# Methods GrpcServer itself registers: probes and reflection need no client identity.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_METHODS = (
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
)


@dataclasses.dataclass(frozen=True)
class Caller:
    """The authenticated other end of one call; ``identity`` is None only on public RPCs without a certificate."""

    identity: Identity | None
    not_before: _dt.datetime | None = None

    @property
    def cluster(self) -> str:
        """The cluster an agent caller speaks for ("" for anyone else): its own view, when a request names none."""
        ident = self.identity
        return ident.name if ident is not None and ident.has_role(ROLE_AGENT) else ""

    def __str__(self) -> str:
        return str(self.identity) if self.identity is not None else "an unauthenticated caller"


@functools.lru_cache(maxsize=MAX_CACHED_CERTIFICATES)
def caller_from_pem(pem: bytes) -> Caller:
    return Caller(identity_from_pem(pem), x509.load_pem_x509_certificate(pem).not_valid_before_utc)


def peer_caller(context) -> Caller:
    """The caller of a server call from its verified TLS peer certificate (no certificate: identity None)."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert")
    if not pems:
        return Caller(None)
    return caller_from_pem(bytes(pems[0]))


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("skerry_rpc_caller", default=None)


def caller() -> Caller:
    """The caller of the RPC being served, as ``AuthzInterceptor`` authenticated it."""
    current = _CALLER.get()
    if current is None:
        # a servicer reached without the interceptor: refuse rather than serve an unknown caller
        raise errors.Unauthenticated("no authenticated caller (this server has no authorisation interceptor)")
    return current


def identity() -> Identity:
    """The authenticated caller's identity (``Unauthenticated`` on a public call without a certificate)."""
    ident = caller().identity
    if ident is None:
        raise errors.Unauthenticated("no verified client certificate on this connection (mutual TLS required)")
    return ident


class Revocations(Protocol):
    def check_caller(self, caller: Caller) -> None: ...  # raises PermissionDenied if revoked


# --- rules ------------------------------------------------------------------------------------


class Rule:
    """What one RPC needs. ``certificate``: a verified client certificate is required at all."""

    certificate = True

    def check(self, who: Identity, request, method: str) -> None:
        raise NotImplementedError

    def __str__(self) -> str:
        return type(self).__name__


class Public(Rule):
    """Anyone, with or without a certificate (a presented certificate is still checked for revocation)."""

    certificate = False

    def check(self, who, request, method):
        return None


class Authenticated(Rule):
    """Any verified client certificate, whatever its role."""

    def check(self, who, request, method):
        return None

    def __str__(self) -> str:
        return "any verified certificate"


class Role(Rule):
    """A caller holding any of ``roles``."""

    def __init__(self, *roles: str):
        self.roles = roles

    def check(self, who, request, method):
        if not any(who.has_role(r) for r in self.roles):
            raise errors.PermissionDenied(f"{who} may not call {_short(method)}: it needs role {' or '.join(self.roles)}")

    def __str__(self) -> str:
        return f"role {' or '.join(self.roles)}"


class AgentOf(Rule):
    """The agent of the cluster the request names in ``field`` (dotted: ``status.cluster``).

    ``roles`` may call for any cluster; ``own_if_empty`` lets an agent leave the field empty, meaning
    its own cluster (the servicer reads ``caller().cluster`` then).
    """

    def __init__(self, field: str, *, roles: tuple[str, ...] = (), own_if_empty: bool = False):
        if field.count(".") >= MAX_FIELD_DEPTH:
            raise ValueError(f"request field {field!r} is deeper than {MAX_FIELD_DEPTH}")
        self.field, self.roles, self.own_if_empty = field, roles, own_if_empty

    def check(self, who, request, method):
        if any(who.has_role(r) for r in self.roles):
            return
        cluster = request_field(request, self.field)
        if not cluster and self.own_if_empty and who.has_role(ROLE_AGENT):
            return
        if not cluster:
            raise errors.InvalidInput(f"{self.field} is required")
        if not who.has_role(ROLE_AGENT) or who.name != cluster:
            also = f" or role {' or '.join(self.roles)}" if self.roles else ""
            raise errors.PermissionDenied(
                f"{who} may not call {_short(method)} for cluster {cluster!r}: only its agent "
                f"({ROLE_AGENT} named {cluster!r}){also} may"
            )

    def __str__(self) -> str:
        return f"agent of request.{self.field}" + (f" or role {' or '.join(self.roles)}" if self.roles else "")


OPERATOR = Role(ROLE_OPERATOR)
PUBLIC = Public()
AUTHENTICATED = Authenticated()


def request_field(request, path: str) -> str:
    value = request
    for part in path.split("."):
        value = getattr(value, part, "")
    return value if isinstance(value, str) else ""


def _short(method: str) -> str:
    return method.rsplit("/", 1)[-1]


# --- the interceptor ----------------------------------------------------------------------------

Refusal = Callable[[str, Caller, errors.SkerryError], None]


class AuthzInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, checks revocation and applies the method's rule before any servicer code runs."""

    def __init__(
        self,
        rules: Mapping[str, Rule],
        *,
        revocations: Revocations | None = None,
        on_refused: Refusal | None = None,
    ):
        self.rules = dict(rules)
        self._revocations = revocations
        self._on_refused = on_refused

    def authorize(self, method: str, context, request) -> Caller:
        """The caller, or the refusal (a ``SkerryError``) of this call."""
        who = peer_caller(context)
        try:
            rule = self.rules.get(method)
            if rule is None:
                raise errors.PermissionDenied(f"{_short(method)} has no authorisation rule on this server; refused")
            if who.identity is None:
                if rule.certificate:
                    raise errors.Unauthenticated(
                        f"{_short(method)} needs a verified client certificate (mutual TLS); none was presented"
                    )
                return who
            if self._revocations is not None:
                self._revocations.check_caller(who)
            rule.check(who.identity, request, method)
        except errors.SkerryError as e:
            if self._on_refused is not None:
                self._on_refused(method, who, e)
            raise
        return who

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind, make in _HANDLER_KINDS:
            inner = getattr(handler, kind)
            if inner is not None:
                # client-streaming requests (reflection) are not read here: their rules see no request
                guarded = self._guard(method, inner, with_request=kind.startswith("unary_"),
                                      streaming=kind.endswith("_stream"))
                return make(guarded, handler.request_deserializer, handler.response_serializer)
        return handler

    def _guard(self, method: str, inner, *, with_request: bool, streaming: bool):
        """``inner`` behind authorisation (the request is read by rules of unary-request methods only)."""
        authorize = self.authorize

        async def unary(request, context):
            _CALLER.set(authorize(method, context, request if with_request else None))
            return await inner(request, context)

        async def stream(request, context):
            _CALLER.set(authorize(method, context, request if with_request else None))
            result = inner(request, context)
            if not inspect.isasyncgen(result):
                await result  # a handler that writes through its context
                return
            async for item in result:
                yield item
                del item  # an idle stream must not pin its last message

        def unary_stream(request, context):
            # No frame of its own: ErrorInterceptor, always outermost in GrpcServer, iterates what this
            # returns, and a server stream of 10,000 idle agents should not hold one more generator each.
            _CALLER.set(authorize(method, context, request))
            return inner(request, context)

        if not streaming:
            return unary
        return unary_stream if with_request else stream


_HANDLER_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def server_rules(rules: Mapping[str, Rule]) -> dict[str, Rule]:
    """``rules`` plus what every GrpcServer serves itself: health probes and reflection, public."""
    out: dict[str, Rule] = {f"{HEALTH_PREFIX}{m}": PUBLIC for m in ("Check", "Watch")}
    out.update({m: PUBLIC for m in REFLECTION_METHODS})
    out.update(rules)
    return out


def uncovered(rules: Mapping[str, Rule], service_names) -> list[str]:
    """Methods of the named services (from the protobuf descriptor pool) that have no rule."""
    pool = descriptor_pool.Default()
    missing = []
    for name in service_names:
        try:
            service = pool.FindServiceByName(name)
        except KeyError:
            continue  # not a protobuf service this process knows (nothing to serve either)
        missing += [f"/{name}/{m.name}" for m in service.methods if f"/{name}/{m.name}" not in rules]
    return missing
