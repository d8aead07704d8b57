"""The hub as a TUF repository: director (online keys) and release (offline/CI keys) roles.

* ``repository``  the trust directory on disk: what the director points at, what the release side signed
* ``keys``        key files and signers, named by key reference
* ``admin``       offline key management: init, add, revoke, rotate-root, status (``skerry keys ...``)
* ``signing``     the CI side of a release: check the hub's proposal against an independent render, sign
* ``push``        the metadata a watch event carries, so an agent's refresh needs no Fetch round trip
* ``attest``      nonces for signed agent reports, and the board of verified reports
* ``servicer``    ``TrustService``: proto <-> domain only
"""
