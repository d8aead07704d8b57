"""The hub as a TUF repository: director (online keys) and release (offline/CI keys) roles.

* ``repository``  ``TrustRepository``: the parts below put together, what the hub calls
* ``directing``   the director: which bundle each cluster runs (online key, hash bins)
* ``releasing``   the release side: each environment's bundles, signed by its release keys (threshold)
* ``publishing``  signing and publishing with the online keys: batches, snapshot and timestamp, expiry
* ``storage``     where the repository's bytes live, and the garbage collection that bounds them
* ``awaiting``    opening it on a replica that starts before the writer's first import: wait, then serve
* ``keys``        key files and signers, named by key reference
* ``admin``       offline key management: init, add, revoke, rotate-root, status (``skerry keys ...``)
* ``signing``     the CI side of a release: check the hub's proposal against an independent render, sign
* ``push``        the metadata a watch event carries, so an agent's refresh needs no Fetch round trip
* ``attest``      nonces for signed agent reports, and the board of verified reports
* ``servicer``    ``TrustService``: proto <-> domain only
"""
