"""Single-use, expiring bootstrap tokens for ``skerry agent enroll``.

Byte format (ASCII, one line)::

    skt1.<b64url(payload)>.<b64url(HMAC-SHA256(key, "skt1." + b64url(payload)))>
    payload = canonical JSON {"cluster": NAME, "exp": UNIX_SECONDS, "id": 32 hex chars}

(b64url without padding.) The MAC key is 32 random bytes in
``<state>/enrollment/token.key`` (0600), made on first use.

Why this design: the hub "holds no state that cannot be rebuilt from Git, its
keys and agents' reports". A *signed* token needs no record to be checked
(cluster and expiry are inside it, the MAC proves the hub made it), so issuing
one writes nothing. Single use needs *some* memory: ``UsedTokens`` records
the id of every token already redeemed, with its expiry, in the hub state
(``skerry.hub.state``: table ``spent_tokens``), committed *before* the
certificate is returned. The record is one ``INSERT ... ON CONFLICT DO
NOTHING`` on the token id, so two hub replicas redeeming the same token at
once issue exactly one certificate: the other is told the token is spent.
Entries are dropped once their token has expired, so the table holds at most
the tokens redeemed within one ``MAX_TOKEN_TTL``. If the record is lost, the
worst case is that a token redeemed within the last ``MAX_TOKEN_TTL`` can be
redeemed once more before it expires, which is the exposure of the token
itself; rotating ``token.key`` (delete it) invalidates every outstanding token
at once. This is the same bounded, key-like state class as the CA key.

Older hubs kept the record in ``used-tokens.json`` next to the key: the first
start with a hub state imports it and renames it ``used-tokens.json.imported``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import pathlib
import re
import secrets
import time
from collections.abc import Callable

from skerry.core import documents
from skerry.core.errors import ConfigError, InvalidInput, PermissionDenied
from skerry.core.files import atomic_write
from skerry.hub.state import HubState

PREFIX = "skt1"
# A bootstrap token is a password sent over a chat or a ticket: keep its life short.
DEFAULT_TOKEN_TTL = 3600.0
# And never longer than a day, which also bounds the used-token record.
MAX_TOKEN_TTL = 24 * 3600.0
# Longest token the hub parses (the payload is ~100 bytes); bounds work on garbage input.
MAX_TOKEN_CHARS = 512
# The refusal reason of a token that is not one (empty, too long, non-ASCII, wrong shape, bad payload).
MALFORMED_TOKEN = "MalformedToken"
_CLUSTER = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_cluster_name(name: str) -> str:
    if not _CLUSTER.match(name or ""):
        raise InvalidInput(f"cluster name {name!r} must be a lowercase DNS name (like Kubernetes object names)")
    return name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))



@dataclasses.dataclass(frozen=True)
class TokenClaims:
    cluster: str
    expires: float  # unix seconds
    token_id: str


class TokenIssuer:
    """Mints and checks tokens with the hub's MAC key."""

    def __init__(self, key: bytes, *, now: Callable[[], float] = time.time):
        if len(key) < 32:
            raise ConfigError("the enrollment token key must be at least 32 bytes")
        self._key = key
        self._now = now

    @classmethod
    def load_or_create(cls, directory: pathlib.Path, **kw) -> TokenIssuer:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / "token.key"
        if not path.exists():
            atomic_write(path, secrets.token_bytes(32))
        return cls(path.read_bytes(), **kw)

    def _mac(self, signed_part: str) -> str:
        return _b64(hmac.new(self._key, signed_part.encode(), hashlib.sha256).digest())

    def issue(self, cluster: str, ttl: float = DEFAULT_TOKEN_TTL) -> tuple[str, TokenClaims]:
        check_cluster_name(cluster)
        if not 0 < ttl <= MAX_TOKEN_TTL:
            raise InvalidInput(f"token lifetime must be between 1 s and {int(MAX_TOKEN_TTL)} s, got {ttl}")
        claims = TokenClaims(cluster=cluster, expires=float(int(self._now() + ttl)), token_id=secrets.token_hex(16))
        payload = json.dumps(
            {"cluster": claims.cluster, "exp": int(claims.expires), "id": claims.token_id},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        signed_part = f"{PREFIX}.{_b64(payload)}"
        return f"{signed_part}.{self._mac(signed_part)}", claims

    def check(self, token: str) -> TokenClaims:
        """The token's claims if it was made with this key and has not expired (use is checked elsewhere)."""
        token = (token or "").strip()
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise PermissionDenied("enrollment token is missing or malformed", reason=MALFORMED_TOKEN)
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise PermissionDenied(f"enrollment token is malformed (expected {PREFIX}.<payload>.<mac>)",
                                   reason=MALFORMED_TOKEN)
        signed_part = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(signed_part), parts[2]):
            raise PermissionDenied("enrollment token was not issued by this hub (bad MAC)", reason="ForgedToken")
        try:
            doc = documents.load_json(_unb64(parts[1]), max_bytes=MAX_TOKEN_CHARS)
            claims = TokenClaims(cluster=str(doc["cluster"]), expires=float(doc["exp"]), token_id=str(doc["id"]))
        except (ValueError, KeyError, TypeError) as e:
            raise PermissionDenied("enrollment token payload is malformed", reason=MALFORMED_TOKEN) from e
        if self._now() >= claims.expires:
            raise PermissionDenied(
                f"enrollment token for cluster {claims.cluster!r} expired at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(claims.expires))}; "
                f"make a new one with `skerry cluster add {claims.cluster}`",
                reason="TokenExpired",
            )
        return claims


class UsedTokens:
    """The ids of redeemed tokens until they expire, in the hub state (see the module docstring)."""

    PREVIOUS_FILE = "used-tokens.json"

    def __init__(self, state: HubState, *, now: Callable[[], float] = time.time):
        self._state = state
        self._now = now

    def import_previous(self, directory: pathlib.Path) -> int:
        """Take in an older hub's ``used-tokens.json`` (then renamed ``.imported``); returns the entries."""
        path = pathlib.Path(directory) / self.PREVIOUS_FILE
        try:
            doc = documents.load_json(path.read_bytes(), max_bytes=documents.MAX_STATE_FILE_BYTES)
            used = {str(k): float(v) for k, v in doc.items()}
        except FileNotFoundError:
            return 0
        except (ValueError, AttributeError, TypeError) as e:
            # Refuse rather than forget: a corrupt record must not make every token reusable.
            raise ConfigError(f"{path} is corrupt ({e}); fix or delete it and rotate token.key") from e
        now = self._now()
        with self._state.write() as tx:
            for token_id, expires in used.items():
                tx.redeem_token(token_id, expires, now)
        path.rename(path.with_name(self.PREVIOUS_FILE + ".imported"))
        return len(used)

    def redeem(self, claims: TokenClaims) -> None:
        """Record ``claims`` as used (durably) or raise ``PermissionDenied`` if it was used before."""
        with self._state.write() as tx:
            fresh = tx.redeem_token(claims.token_id, claims.expires, self._now())
        if not fresh:
            raise PermissionDenied(
                f"enrollment token for cluster {claims.cluster!r} was already used; tokens are single-use "
                f"(make a new one with `skerry cluster add {claims.cluster}`)"
            )
