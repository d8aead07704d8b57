"""The sealer: the only holder of sealed-secret private keys.

Anyone may seal with its public certificate (``skerry seal``); only verified
agents get plaintext back over mutual TLS. The package is split by concern:

* ``crypto``      the Bitnami Sealed Secrets hybrid format (pure functions)
* ``keys/``       keys split by verb: ``model``, ``storage`` (+ encryption at rest), ``registry``, ``backup``
* ``authz``       who may unseal, and the audit trail of every attempt
* ``bundle_trust``   how the sealer decides which SealedSecrets a cluster's released bundle holds (TUF + Uptane)
* ``revocations`` the hub's revocation feed as the sealer follows and keeps it
* ``retire``      which SealedSecrets in a repository still need a key, before it is retired
* ``servicer``    the gRPC service, proto <-> domain only
* ``certhttp``    the plain-HTTP endpoint serving only public certificates (``kubeseal --cert URL``)
* ``metrics``     Prometheus families around the gate and the registry
* ``config`` / ``app``  settings (``skerry.core.config``) and the composition root
* ``seal/``       ``skerry seal`` split by verb (``manifests``, ``certificates``, ``sealing``, ``recovery``); the
                commands themselves are ``skerry.cli.seal`` and ``skerry.cli.sealer``

Importing this package is cheap on purpose (no grpc or cryptography), so the
CLI's ``--help`` stays fast.
"""
