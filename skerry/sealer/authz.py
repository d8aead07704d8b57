"""The sealer's authorisation: who may call each RPC, and the unseal gate with its audit trail.

``RULES`` is the sealer server's table (``skerry.core.authz``: identity from
the mTLS peer certificate, revoked agent certificates refused first, from the
list the hub feeds, ``skerry.sealer.revocations``):

* ``GetCertificate``: any verified certificate (the certificate is public);
* ``Unseal`` / ``UnsealBundle``: agents (``skerry:agent``); which secrets, for
  which cluster, is the gate's business below;
* ``ReEncrypt``: operators (``skerry:operator``).

``audit_refusals`` writes a refused call to the unseal audit trail like any
other denied attempt. The gate's own rules, each a small pure piece so they
are tested alone:

* ``ClusterDomains``: which key domains (regions) each cluster may use. It is
  the sealer operator's static configuration, never the hub's or the
  agent's word, so a hub cannot grant a cluster another jurisdiction's keys.
* rate limits (GHSA-jpp5-6cf2-prqh: unbounded unseal is a CPU denial of service), both token
  buckets per identity of ``skerry.core.rpc.RateLimiter``: calls per RPC (``RPC_RATES``, checked by
  the interceptor before anything else) and RSA decryptions (``decryption_limiter``, in the gate).
* Bundle scoping (``unseal_bundle`` with a ``trust.BundleTrust``): the
  namespace, name and scope of each SealedSecret come from the hub-signed
  bundle of the caller's own cluster. When the sealer trusts a hub key the
  per-secret ``unseal`` (whose namespace and name the caller states) is
  refused.

``UnsealGate`` enforces them: validate, decrypt every item with
the registry (hinted key first), and write one audit record per attempt
(who, where, scope, domain, which keys, outcome). Item names are logged;
values, sealed or not, never are.
"""

from __future__ import annotations

import bisect
import dataclasses
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import structlog

from skerry.api.v1 import sealer_pb2
from skerry.core import documents, sealedsecret
from skerry.core.authz import AUTHENTICATED, OPERATOR, Caller, Role, Rule
from skerry.core.errors import (
    ConfigError,
    InvalidInput,
    PermissionDenied,
    ResourceExhausted,
    SealError,
    SkerryError,
)
from skerry.core.files import read_bounded
from skerry.core.rpc import MAX_MESSAGE_BYTES, RateLimiter
from skerry.core.tls import ROLE_AGENT, Identity
from skerry.sealer import crypto
from skerry.sealer.bundle_trust import BundleSecret, BundleTrust
from skerry.sealer.keys import DEFAULT_DOMAIN, KeyRegistry, normalize_domain

audit_log = structlog.get_logger("skerry.sealer.audit")

# Kubernetes Secret data keys: [-._a-zA-Z0-9]+, at most 253 characters.
_ITEM_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_MAX_AUDITED_ITEMS = 100
# Items of one SealedSecret: a Secret is at most 1 MiB, so thousands of items are an attack.
MAX_ITEMS_PER_SECRET = 1000
# Token bucket per identity, in RSA decryptions: a burst covers a large bundle at agent start
# (hundreds of secrets), the sustained rate leaves most of a core (~750/s) for everyone else.
DEFAULT_RATE_PER_SECOND = 50.0
DEFAULT_RATE_BURST = 2000
# An UnsealBundle response holds results up to this many bytes (``page_bound``, reckoned before any
# decryption, so none is wasted): the message cap less room for framing. A bundle is at most 12 MiB of
# sealed values, whose plaintext is smaller, so only errors and names can make a bundle need two pages.
UNSEAL_PAGE_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024
# A result's error message is cut to this (it names the secret and the item; never a value).
MAX_RESULT_ERROR_CHARS = 1024
# Protobuf framing of a map entry (tags and lengths), of a result, and a key id's length with its own.
_ITEM_FRAMING = 16
_RESULT_FRAMING = 64 + 32  # + the reason
_KEY_ID_BYTES = 80
# The cluster-domain map is a small operator file.
MAX_DOMAIN_MAP_BYTES = 1024 * 1024
WILDCARD = "*"


_SERVICE = "/" + sealer_pb2.DESCRIPTOR.services_by_name["SealerService"].full_name + "/"
RULES: dict[str, Rule] = {
    _SERVICE + "GetCertificate": AUTHENTICATED,
    _SERVICE + "Unseal": Role(ROLE_AGENT),
    _SERVICE + "UnsealBundle": Role(ROLE_AGENT),
    _SERVICE + "ReEncrypt": OPERATOR,
}

# Calls per identity and RPC, (per second, burst), checked by the server's interceptor before
# authorisation, bundle verification or any decryption: a caller over its rate costs one bucket lookup.
# ``None`` takes the decryption budget (``rate_per_second``/``rate_burst``): every legitimate call of
# those RPCs spends at least one decryption, so their call limit never bites before the decryption
# limit, while calls that fail before decrypting are bounded too.
RPC_RATES: dict[str, tuple[float, float] | None] = {
    # public and cheap; `skerry seal` fetches it once per run
    _SERVICE + "GetCertificate": (10.0, 50),
    # one call per SealedSecret from an agent whose sealer trusts no hub key
    _SERVICE + "Unseal": None,
    # a call (a page, see UNSEAL_PAGE_BYTES) per reconcile of a bundle with SealedSecrets; each one hashes
    # and verifies up to 16 MiB before its first decryption, so a client may not loop on it
    _SERVICE + "UnsealBundle": (1.0, 20),
    # operators re-sealing a repository, one call per SealedSecret
    _SERVICE + "ReEncrypt": None,
}


def rpc_limiters(decrypt_rate: float, decrypt_burst: float) -> dict[str, RateLimiter]:
    """A limiter per RPC of ``RPC_RATES`` (the server's ``method_limiters``)."""
    return {
        method: RateLimiter(*(rates or (decrypt_rate, decrypt_burst)), unit="call(s)")
        for method, rates in RPC_RATES.items()
    }


def decryption_limiter(rate: float = DEFAULT_RATE_PER_SECOND, burst: float = DEFAULT_RATE_BURST) -> RateLimiter:
    """The unseal gate's budget of RSA decryptions per identity."""
    return RateLimiter(rate, burst, unit="decryption(s)")


def audit_refusals(method: str, caller: Caller, error: SkerryError) -> None:
    """The interceptor's ``on_refused``: a refused call is an audited, denied attempt (never a value)."""
    ident = caller.identity
    audit_log.warning(
        "access denied",
        outcome="denied",
        method=method.removeprefix(_SERVICE),
        reason=error.reason,
        error=str(error),
        identity=str(caller),
        fingerprint=ident.fingerprint if ident is not None else "",
    )


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
    key_hint: str = ""

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(sorted(self.encrypted_data))


@dataclasses.dataclass(frozen=True)
class ClusterDomains:
    """Key domains per cluster (agent mTLS name); ``"*"`` applies to clusters not listed.

    The default, with no map configured, lets every cluster use the ``default`` domain only.
    """

    clusters: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: {WILDCARD: (DEFAULT_DOMAIN,)}
    )

    def allowed(self, cluster: str) -> tuple[str, ...]:
        if cluster in self.clusters:
            return self.clusters[cluster]
        return self.clusters.get(WILDCARD, ())

    def check(self, cluster: str, domain: str) -> None:
        if domain not in self.allowed(cluster):
            raise PermissionDenied(
                f"cluster {cluster!r} may not use key domain {domain!r}: the sealer's cluster-domain map "
                f"gives it {', '.join(self.allowed(cluster)) or 'no domain'}",
                reason="DomainDenied",
            )

    @classmethod
    def from_mapping(cls, doc: object, source: str = "cluster-domain map") -> ClusterDomains:
        """``{"clusters": {"oslo-prod": ["no-oslo"], "*": ["default"]}}`` (YAML or JSON)."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("clusters"), Mapping):
            raise ConfigError(f"{source}: expected a mapping with 'clusters: {{cluster: [domains]}}'")
        out: dict[str, tuple[str, ...]] = {}
        for cluster, domains in doc["clusters"].items():
            if isinstance(domains, str):
                domains = [domains]
            if not isinstance(domains, Sequence) or not all(isinstance(d, str) for d in domains):
                raise ConfigError(f"{source}: cluster {cluster!r} must list domain names")
            out[str(cluster)] = tuple(normalize_domain(d) for d in domains)
        return cls(out)

    @classmethod
    def from_file(cls, path: pathlib.Path) -> ClusterDomains:
        text = read_bounded(path, MAX_DOMAIN_MAP_BYTES, f"cluster-domain map {path}", error=ConfigError)
        try:
            (doc, *_) = documents.load_yaml_or_json(text, max_bytes=MAX_DOMAIN_MAP_BYTES) or [None]
        except documents.BadDocument as e:
            raise ConfigError(f"cluster-domain map {path} is not valid YAML or JSON: {e}") from None
        return cls.from_mapping(doc, str(path))


@dataclasses.dataclass(frozen=True)
class BundleUnsealResult:
    namespace: str
    name: str
    data: Mapping[str, bytes] = dataclasses.field(repr=False)
    key_ids: tuple[str, ...] = ()
    error: SkerryError | None = None

    @property
    def page_token(self) -> str:
        return f"{self.namespace}/{self.name}"


class UnsealPage(NamedTuple):
    """One ``unseal_bundle`` answer: the verified release, results in page-token order, and the token to
    continue after ("" on the last page)."""

    release: int
    results: list[BundleUnsealResult]
    next_page_token: str = ""


def page_bound(secret: BundleSecret) -> int:
    """An upper bound, known before decrypting, of what ``secret``'s result adds to an UnsealBundle response:
    plaintext is shorter than the base64 sealed value's 3/4, plus names, a key id per item and an error."""
    items = sum(len(k) + len(v) * 3 // 4 + _ITEM_FRAMING for k, v in secret.encrypted_data.items())
    return (len(secret.namespace) + len(secret.name) + items + len(secret.encrypted_data) * _KEY_ID_BYTES
            + MAX_RESULT_ERROR_CHARS + _RESULT_FRAMING)


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
    if len(request.encrypted_data) > MAX_ITEMS_PER_SECRET:
        raise InvalidInput(f"{request.namespace}/{request.name} has over {MAX_ITEMS_PER_SECRET} items")
    for item in request.encrypted_data:
        if not _ITEM_RE.match(item):
            raise InvalidInput(f"invalid encryptedData item name {item[:64]!r}")
    return scope


class UnsealGate:
    """Validates, decrypts and audits for an authorised caller; the only path from sealed bytes to plaintext."""

    def __init__(
        self,
        registry: KeyRegistry,
        *,
        domains: ClusterDomains | None = None,
        limiter: RateLimiter | None = None,
        bundle_trust: BundleTrust | None = None,
    ):
        self._registry = registry
        self._domains = domains or ClusterDomains()
        self._limiter = limiter or decryption_limiter()
        self._trust = bundle_trust

    @property
    def requires_bundle(self) -> bool:
        return self._trust is not None

    def unseal(self, identity: Identity, request: UnsealAttempt) -> dict[str, bytes]:
        """Plaintext per item, or a ``SkerryError``; every outcome is audited. CPU-bound: run in a thread."""

        def direct_only() -> None:
            if self._trust is not None:
                raise PermissionDenied(
                    f"this sealer unseals only SealedSecrets of a hub-signed bundle (UnsealBundle); "
                    f"refusing {request.namespace}/{request.name} asked for directly",
                    reason="BundleRequired",
                )

        data, _ = self._unseal_one(identity, request, via="direct", precheck=direct_only)
        return data

    def unseal_bundle(
        self, identity: Identity, metadata: bytes, bundle: bytes, *, domain: str = "", page_token: str = "",
        page_bytes: int = UNSEAL_PAGE_BYTES,
    ) -> UnsealPage:
        """Verify the bundle for the caller's own cluster, then unseal its SealedSecrets, in order of
        ``namespace/name``, after ``page_token`` and up to ``page_bytes`` (at least one per page).

        A bad bundle fails the whole call (``VerificationError``); a bad secret fails only itself.
        """
        if self._trust is None:
            raise PermissionDenied(
                "this sealer has no trust root, so it cannot verify bundles; configure "
                "SKERRY_SEALER_TRUST_ROOT", reason="NoBundleTrust"
            )
        try:
            verified = self._trust.verify(metadata, bundle, cluster=identity.name)
        except SkerryError as e:
            audit_log.warning(
                "unseal bundle",
                outcome="denied" if isinstance(e, PermissionDenied) else "failed",
                reason=e.reason,
                error=str(e),
                identity=str(identity),
                fingerprint=identity.fingerprint,
            )
            raise
        audit_log.info(
            "unseal bundle",
            outcome="verified",
            identity=str(identity),
            fingerprint=identity.fingerprint,
            release=verified.release,
            secrets=len(verified.secrets),
        )
        results: list[BundleUnsealResult] = []
        used = 0
        pending = sorted(verified.secrets, key=lambda s: f"{s.namespace}/{s.name}")
        if page_token:
            pending = pending[bisect.bisect_right([f"{s.namespace}/{s.name}" for s in pending], page_token):]
        for secret in pending:
            cost = page_bound(secret)
            if results and used + cost > page_bytes:
                return UnsealPage(verified.release, results, results[-1].page_token)
            results.append(self._bundle_secret(identity, secret, domain, verified.release))
            used += cost
        return UnsealPage(verified.release, results)

    def _bundle_secret(
        self, identity: Identity, secret: BundleSecret, domain: str, release: int
    ) -> BundleUnsealResult:
        attempt = UnsealAttempt(
            namespace=secret.namespace,
            name=secret.name,
            scope=secret.scope,
            domain=secret.domain or domain,
            encrypted_data=secret.encrypted_data,
            key_hint=secret.key_hint,
        )
        try:
            data, key_ids = self._unseal_one(identity, attempt, via=f"bundle release {release}")
        except SkerryError as e:
            return BundleUnsealResult(secret.namespace, secret.name, {}, (), e)
        return BundleUnsealResult(secret.namespace, secret.name, data, tuple(sorted(key_ids)))

    def _unseal_one(
        self,
        identity: Identity,
        request: UnsealAttempt,
        *,
        via: str,
        precheck: Callable[[], None] | None = None,
    ) -> tuple[dict[str, bytes], set[str]]:
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
            "via": via,
        }
        key_ids: set[str] = set()
        try:
            if precheck is not None:
                precheck()
            scope = _validate(request)
            domain = normalize_domain(request.domain)
            record["domain"] = domain
            self._registry.keys(domain)  # NotFound for a domain this sealer does not serve
            self._domains.check(identity.name, domain)
            self._limiter.take(str(identity), len(items))
            label = sealedsecret.encryption_label(request.namespace, request.name, scope)
            out: dict[str, bytes] = {}
            hint = request.key_hint or None
            for item in items:
                raw = crypto.decode_item(request.encrypted_data[item], item=item)
                try:
                    out[item], key_id = self._registry.unseal(domain, raw, label, hint=hint)
                except SealError as e:
                    raise SealError(f"item {item!r} of {request.namespace}/{request.name}: {e}") from e
                key_ids.add(key_id)
                hint = key_id  # items of one secret are nearly always sealed with one key
        except SkerryError as e:
            outcome = "denied" if isinstance(e, (PermissionDenied, ResourceExhausted)) else "failed"
            audit_log.warning(
                "unseal", outcome=outcome, reason=e.reason, error=str(e), key_ids=sorted(key_ids), **record
            )
            raise
        audit_log.info("unseal", outcome="allowed", key_ids=sorted(key_ids), **record)
        return out, key_ids

    def re_encrypt(self, identity: Identity, request: UnsealAttempt) -> tuple[dict[str, str], str, str]:
        """Re-seal every item with the newest key of its domain; operators only. Returns (items, key id, domain)."""
        record = {
            "identity": str(identity),
            "namespace": _clip(request.namespace),
            "name": _clip(request.name),
            "items": [_clip(i) for i in request.items[:_MAX_AUDITED_ITEMS]],
        }
        try:
            scope = _validate(request)
            domain = normalize_domain(request.domain)
            self._limiter.take(str(identity), len(request.items))
            label = sealedsecret.encryption_label(request.namespace, request.name, scope)
            newest = self._registry.sealing_key(domain)
            out: dict[str, str] = {}
            hint = request.key_hint or None
            for item in request.items:
                raw = crypto.decode_item(request.encrypted_data[item], item=item)
                try:
                    plaintext, hint = self._registry.unseal(domain, raw, label, hint=hint)
                except SealError as e:
                    raise SealError(f"item {item!r} of {request.namespace}/{request.name}: {e}") from e
                out[item] = crypto.seal_value(newest.public_key, plaintext, label)
                del plaintext
        except SkerryError as e:
            audit_log.warning("re-encrypt", outcome="failed", reason=e.reason, error=str(e), **record)
            raise
        audit_log.info("re-encrypt", outcome="done", domain=domain, key_id=newest.key_id, **record)
        return out, newest.key_id, domain
