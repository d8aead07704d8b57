"""The hub: watches Git, renders each cluster's desired state, signs it and serves it to agents.

The hub holds no state that cannot be rebuilt from Git, its signing key and
the agents' reports. The package is split by concern:

* ``config``          settings from the environment (the only reader of it)
* ``source.git``      the Git mirror (the only user of GitPython)
* ``fleet``           the ``skerry.yaml`` parser: clusters, labels, path selectors
* ``render.engine``   Kustomize (or plain YAML) rendering of one directory
* ``bundles``         building one bundle per cluster, signing and keeping releases
* ``status``          the agents' latest reports
* ``sync``            the fetch -> render -> build -> publish loop
* ``servicer``        the gRPC service, proto <-> domain only
* ``app`` / ``cli``   the composition root and ``skerry hub serve`` / ``skerry render``

Importing this package is cheap on purpose (no grpc, git or yaml), so the
CLI's ``--help`` stays fast.
"""
