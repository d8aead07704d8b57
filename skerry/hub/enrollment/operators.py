"""Operator client certificates from the hub-run CA (``skerry operator add``).

Why here: the hub already trusts its enrollment CA for every mutual-TLS caller (``hub.app``), and
authorisation reads the role from the certificate's O (``skerry.core.authz``), so the same CA
can give a person an identity the hub and a sealer that trusts ``enrollment/ca.crt`` accept,
without a second PKI to run. Only the roles in ``OPERATOR_ROLES`` can be issued: a person never
gets ``skerry:agent`` (that would speak for a cluster), ``skerry:hub`` or ``skerry:sealer``.

The certificate is ``O=<role>, CN=<name>``, client-auth only, valid ``lifetime``. The key is made
here (written 0600 by the command) unless the operator sends a CSR, whose key never leaves them.
Approvers and promoters in ``skerry.yaml`` name operators by this CN.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import pathlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from skerry.core.errors import InvalidInput
from skerry.core.tls import ROLE_OPERATOR
from skerry.hub.enrollment.authority import AgentAuthority, csr_public_key

# The roles a person may hold, by the name `--role` takes.
OPERATOR_ROLES = {"operator": ROLE_OPERATOR}
DEFAULT_LIFETIME = _dt.timedelta(days=30)
# A person's certificate cannot be revoked by expiry alone if it lives for years; a year at most.
MAX_LIFETIME = _dt.timedelta(days=365)
MIN_LIFETIME = _dt.timedelta(minutes=10)
# Names appear in audit logs, approver lists and file names: short, no path or shell characters.
_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.@]{0,62}$")  # an identity promotion policies accept


@dataclasses.dataclass(frozen=True)
class OperatorCert:
    name: str
    role: str
    cert_pem: bytes
    key_pem: bytes  # empty when issued for a CSR
    fingerprint: str
    not_after: _dt.datetime


def check_operator_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInput(f"operator name {name!r}: 1-63 letters, digits, '.', '_', '@' or '-', "
                           "starting with a letter or digit")
    return name


def issue_operator(enrollment_dir: pathlib.Path, name: str, role: str = "operator", *,
                   csr_pem: bytes | None = None, lifetime: _dt.timedelta = DEFAULT_LIFETIME) -> OperatorCert:
    """Issue ``name`` a client certificate for ``role`` from the CA in ``enrollment_dir``."""
    check_operator_name(name)
    if role not in OPERATOR_ROLES:
        raise InvalidInput(f"role {role!r}: an operator may hold {', '.join(sorted(OPERATOR_ROLES))}")
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise InvalidInput(f"operator certificate lifetime must be {MIN_LIFETIME} .. {MAX_LIFETIME}, got {lifetime}")
    public_key = csr_public_key(csr_pem, name, "operator") if csr_pem is not None else None
    authority = AgentAuthority.load_or_create(enrollment_dir)
    pair = authority.ca.issue(name, role=OPERATOR_ROLES[role], client=True,
                              days=lifetime.total_seconds() / 86400, public_key=public_key)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    return OperatorCert(name=name, role=OPERATOR_ROLES[role], cert_pem=pair.cert_pem, key_pem=pair.key_pem,
                        fingerprint=cert.fingerprint(hashes.SHA256()).hex(), not_after=cert.not_valid_after_utc)
