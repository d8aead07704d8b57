"""Skerry: pull-based GitOps in three services that never import each other.

* ``hub``      watches Git, renders each cluster's bundle, signs it (TUF) and serves it to agents
* ``agent``    runs in each cluster: verifies its bundle and reconciles the cluster to it
* ``sealer``   holds the sealed-secret keys; unseals only for verified agents
* ``core``     what every service shares (errors, mutual TLS, config, the bundle and trust formats)
* ``api``      the generated gRPC code of ``protos/`` (committed, never edited)
* ``cli``      the ``skerry`` command; ``__main__`` runs it as ``python -m skerry``
* ``install``  ``skerry install``: every key, certificate and object a real installation needs, applied
* ``testing``  the shipped harness: a local API server, the services as processes, PostgreSQL
* ``demo``     ``skerry demo``: the whole loop on one machine
"""
