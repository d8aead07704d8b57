"""The unseal gate: who may get plaintext back, and the audit trail of every attempt.

``authorize_unseal`` is the policy: a pure function over the verified mTLS
identity and the request, so later rules (namespaces per cluster, key
domains per region, rate limits) slot in without touching the transport.
Today the rule is that only the ``skerry:agent`` role unseals.

``UnsealGate`` enforces it: authorise, validate, decrypt every item with the
registry, and write one audit record per attempt (who, where, scope, which
keys, outcome). Item names are logged; values, sealed or not, never are.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

import structlog

from skerry.core import sealedsecret
from skerry.core.errors import InvalidInput, PermissionDenied, SealError, SkerryError
from skerry.core.tls import ROLE_AGENT, Identity
from skerry.sealer import crypto
from skerry.sealer.keys import KeyRegistry, normalize_domain

audit_log = structlog.get_logger("skerry.sealer.audit")

# Kubernetes Secret data keys: [-._a-zA-Z0-9]+, at most 253 characters.
_ITEM_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_MAX_AUDITED_ITEMS = 100


def _clip(text: str, limit: int = 253) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@dataclasses.dataclass(frozen=True)
class UnsealAttempt:
    """One SealedSecret to unseal: where it will live and its base64 items."""

    namespace: str
    name: str
    scope: str
    domain: str
    encrypted_data: Mapping[str, str] = dataclasses.field(repr=False)

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(sorted(self.encrypted_data))


Policy = Callable[[Identity, UnsealAttempt], None]


def authorize_unseal(identity: Identity, request: UnsealAttempt) -> None:
    """Raise ``PermissionDenied`` unless ``identity`` may unseal ``request``."""
    if not identity.has_role(ROLE_AGENT):
        raise PermissionDenied(
            f"{identity} may not unseal {request.namespace}/{request.name}: only the {ROLE_AGENT} role unseals"
        )


def _validate(request: UnsealAttempt) -> str:
    """Check the request's shape; returns the scope (empty means strict)."""
    scope = request.scope or sealedsecret.STRICT
    if scope not in sealedsecret.SCOPES:
        raise InvalidInput(
            f"unknown scope {request.scope!r}; expected one of {', '.join(sealedsecret.SCOPES)}"
        )
    if not request.namespace or not request.name:
        raise InvalidInput("unseal needs the namespace and name the Secret will have")
    if not request.encrypted_data:
        raise InvalidInput(f"{request.namespace}/{request.name} has no encryptedData items")
    for item in request.encrypted_data:
        if not _ITEM_RE.match(item):
            raise InvalidInput(f"invalid encryptedData item name {item[:64]!r}")
    return scope


class UnsealGate:
    """Authorises, decrypts and audits; the only path from sealed bytes to plaintext."""

    def __init__(self, registry: KeyRegistry, *, policy: Policy = authorize_unseal):
        self._registry = registry
        self._policy = policy

    def unseal(self, identity: Identity, request: UnsealAttempt) -> dict[str, bytes]:
        """Plaintext per item, or a ``SkerryError``; every outcome is audited. CPU-bound: run in a thread."""
        items = request.items
        record = {  # request fields are clipped: the record is written before they are validated
            "identity": str(identity),
            "fingerprint": identity.fingerprint,
            "namespace": _clip(request.namespace),
            "name": _clip(request.name),
            "scope": _clip(request.scope or sealedsecret.STRICT),
            "domain": _clip(request.domain or ""),
            "items": [_clip(i) for i in items[:_MAX_AUDITED_ITEMS]],
            "item_count": len(items),
        }
        key_ids: set[str] = set()
        try:
            self._policy(identity, request)
            scope = _validate(request)
            domain = normalize_domain(request.domain)
            record["domain"] = domain
            label = sealedsecret.encryption_label(request.namespace, request.name, scope)
            out: dict[str, bytes] = {}
            for item in request.items:
                raw = crypto.decode_item(request.encrypted_data[item], item=item)
                try:
                    out[item], key_id = self._registry.unseal(domain, raw, label)
                except SealError as e:
                    raise SealError(f"item {item!r} of {request.namespace}/{request.name}: {e}") from e
                key_ids.add(key_id)
        except SkerryError as e:
            outcome = "denied" if isinstance(e, PermissionDenied) else "failed"
            audit_log.warning(
                "unseal", outcome=outcome, reason=e.reason, error=str(e), key_ids=sorted(key_ids), **record
            )
            raise
        audit_log.info("unseal", outcome="allowed", key_ids=sorted(key_ids), **record)
        return out
