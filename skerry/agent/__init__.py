"""The agent: runs inside each cluster, pulls its signed bundle from the hub and reconciles it.

The package is split by concern; only ``kube`` imports the ``kubernetes``
client, and nothing here imports the hub or the sealer (they are reached
over gRPC with the generated stubs in ``skerry.api.v1``).

Entry points and wiring:

* ``app``           ``AgentApp``: the composition root, wiring only; ``run`` is ``skerry agent run``
                  (its commands, ``agent run|enroll``, ``diff``, ``suspend``, ..., are ``skerry.cli.agent``)
* ``config``        ``AgentConfig``, the only place that reads the environment

The loops and what they decide:

* ``runtime``       the watch -> verify -> cache -> apply loop: retry, freeze, trust poll
* ``drift_control`` drift correction (with its backoff) and the operator's suspend / reconcile-now
* ``monitor``       watches of what was applied: drift and health from events, not timers
* ``reporter``      the ready file, status reports to the hub, signed reports
* ``conditions``    pure: an agent snapshot -> its conditions (Verified, Frozen, Fresh, Drifted, ...)

Trust, in and out:

* ``trust``         how the agent decides a bundle is genuine (the one verifier): TUF director + release metadata over the hub's TrustService -> ``VerifiedBundle``
* ``tuf_fetch``     python-tuf fetchers over the hub's TrustService.Fetch (capped, in memory)
* ``evidence``      the TUF metadata the agent shows the sealer
* ``attest``        signed status reports (nonce from the hub, signed with the agent's identity key)
* ``enroll``        enrollment and certificate renewal
* ``cache``         the last verified bundle on disk (still sealed), re-applied on start

Other sides of a wire:

* ``stream``        ``HubClient``: the bundle watch (reconnects with full-jitter backoff) and status reports
* ``secrets``       SealedSecret -> Secret through the sealer's ``Unseal`` (plaintext in memory only)
* ``kube``          ``KubeClient``, split by verb: client, errors, objects, applying, watching, events
* ``reasons``       the ``KubeError`` reasons, importable without the kubernetes client

Reconciling, and what it reports:

* ``reconcile``     the engine and its pure parts (plan, desired, prune, inventory, applied, drift, health, ...)
* ``status``        ``ReconcileResult`` -> ``ClusterStatus`` proto
* ``ops``, ``metrics``, ``events``   metrics, the ops server, the in-cluster ``BundleStatus`` and Events
* ``diff``, ``explain``              ``skerry diff`` and ``skerry explain``, asked of the live cluster

Importing this package is cheap on purpose (no grpc, no kubernetes), so the
CLI's ``--help`` stays fast.
"""
