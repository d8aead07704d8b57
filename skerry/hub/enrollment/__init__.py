"""Enrollment: the hub-run agent CA, single-use bootstrap tokens, CSR signing and revocation.

``skerry cluster add NAME`` mints a token (``tokens.py``); ``skerry agent
enroll --token`` trades it plus a CSR for a short-lived client certificate
(``authority.py``) bound to exactly that cluster; the agent renews before
expiry with its current certificate. ``revocation.py`` keeps the list of
revoked clusters/fingerprints that the hub enforces on every RPC and on open
streams. ``operators.py`` issues operators' client certificates from the same CA
(``skerry operator add``), and ``service.py`` is enrollment as the hub serves it
(redeem, renew, publish revocations). Everything lives in ``<hub state dir>/enrollment/``;
see each module for what it stores and why losing it is safe.
"""
