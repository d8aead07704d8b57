"""Code shared by every Skerry service; imports no service (an import contract in pyproject.toml).

``authz``        who may call which RPC: the interceptor every server is built with, fed a declared table
``backoff``      retry delays, once: capped exponential, full jitter, a spread pause
``bundle``       the bundle document (its identity: what is applied), the shared blob
``canonical``    canonical JSON and digests
``client``       the one gRPC client channel factory (mutual TLS, one option set)
``clock``        wall and monotonic time behind a protocol, so tests move it instead of sleeping
``conditions``   the one condition type agent and hub exchange (Kubernetes-shaped)
``config``       the one settings loader: defaults, ``PREFIX_FIELD`` variables, then flags made from the fields
``documents``    the one reader of outside YAML and JSON (size, alias, depth budgets); the only PyYAML user
``duration``     the one duration syntax (``30s``, ``5m``, ``1h30m``)
``errors``       Skerry's errors, each mapped to one gRPC status
``files``        the one crash-safe file writer and the one bounded reader of outside files
``logging``      structured logs
``metrics``      Prometheus plumbing shared by the services
``peers``        HOST:PORT addresses, keepalive timing and the SIGTERM drain, checked without gRPC (settings import it at CLI start)
``pushback``     when to come back: a refusal's pushback and a stream's reconnect spread, as bounded metadata
``release_number`` the release number people read (r7) beside the counter agents compare
``repopath``     paths inside the Git repository: one rule for the fleet file and ``skerry.yaml``
``report``       signed agent reports
``revocation``   the revoked-certificate list hub and sealer read
``rpc``          server bootstrap, the error/context interceptor, named limits, client error translation
``sealedsecret`` the SealedSecret vocabulary (labels, scopes, annotations)
``tls``          the CA, certificates and identities of mutual TLS
``tlsfiles``     where a party's TLS files are (light: a config names them without loading grpc)
``trust``        the TUF layout, the Uptane agreement rule and the sealer evidence format
"""
