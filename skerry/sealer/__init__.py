"""The sealer: the only holder of sealed-secret private keys.

Anyone may seal with its public certificate (``skerry seal``); only verified
agents get plaintext back over mutual TLS. The package is split by concern:

* ``crypto``   the Bitnami Sealed Secrets hybrid format (pure functions)
* ``keys``     the key registry and its storage backend
* ``authz``    who may unseal, and the audit trail of every attempt
* ``servicer`` the gRPC service, proto <-> domain only
* ``config`` / ``app``  settings from the environment and the composition root
* ``seal`` / ``cli``    the client-side ``skerry seal`` and ``skerry sealer serve``

Importing this package is cheap on purpose (no grpc or cryptography), so the
CLI's ``--help`` stays fast.
"""
