"""The hub: watches Git, renders each cluster's desired state, signs it and serves it to agents.

The hub holds no state that cannot be rebuilt from Git, its signing key and
the agents' reports. The package is split by concern:

* ``config``          settings from the environment and flags (the only reader of either)
* ``source``          the Git mirror, its reads and the hub's own commits (the only GitPython user)
* ``fleet``           the ``skerry.yaml`` parser: clusters, labels, path selectors
* ``promotion_policy`` the ``promotion:`` section of ``skerry.yaml`` (below both fleet and promotion)
* ``fields``          the field checks both readers of ``skerry.yaml`` share (mappings, paths, one-line errors)
* ``render``          Kustomize (or plain YAML) rendering of one directory, incremental, validated
* ``bundles``         building one bundle per cluster, signing and keeping releases
* ``trust``           the TUF repository: director and release roles, keys, CI signing, attestations
* ``enrollment``      the agent CA, bootstrap tokens, operator certificates, revocation
* ``state``           the hub state (SQLite or PostgreSQL): what must outlive the process
* ``writer``          the writer lease: the one hub process that publishes, its duties, release transactions
* ``replica``         every process's copy of what the writer published, followed from the state's change log
* ``presence``        a process back from being away (stopped, a stalled loop) serves that copy only once re-read
* ``catchup``         a copy behind what an agent holds waits for its follower, bounded, else sends the agent on
* ``status`` / ``reports``  the agents' latest reports, and their soak clocks kept in the state
* ``sync``            the fetch -> render -> build -> publish loop
* ``webhook``         the push webhook (fetch now)
* ``httplog``         the access log of the two HTTP servers (webhook, dashboard): their refusal counter
* ``promotion``       freight, gates, promote and rollback by commit, following the rollout
* ``authz``           the hub's RPC tables: which identity may call what
* ``servicer``        the gRPC service, proto <-> domain only
* ``listeners``       the hub's gRPC listeners (mutual TLS, rule tables, options) built from settings and parts
* ``admission``       new agent streams a second (token bucket), the pushback past it, the reconnect spread,
                      the cap on streams a replica holds (``ReplicaFull``)
* ``dashboard``       the read-only fleet dashboard (model and HTTPS server)
* ``metrics`` / ``ops``  Prometheus families, and the ops server and dashboard wired in one place
* ``seed``            what ``skerry install`` hands a new hub's state volume (its init container)
* ``app``           the composition root (``skerry hub serve|seed`` and ``skerry render`` are ``skerry.cli.hub``)

Importing this package is cheap on purpose (no grpc, git or yaml), so the
CLI's ``--help`` stays fast.
"""
