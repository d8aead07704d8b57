"""The agent: runs inside each cluster, pulls its signed bundle from the hub and reconciles it.

The package is split by concern; only ``kube`` imports the ``kubernetes``
client, and nothing here imports the hub or the sealer (they are reached
over gRPC with the generated stubs in ``skerry.api.v1``):

* ``config``    ``AgentConfig``, the only place that reads the environment
* ``verify``    bytes -> ``VerifiedBundle``, with rollback state that survives restarts
* ``cache``     the last verified bundle on disk (still sealed), re-applied on start
* ``stream``    ``HubClient``: the bundle watch (reconnects with backoff) and status reports
* ``secrets``   SealedSecret -> Secret through the sealer's ``Unseal`` (plaintext in memory only)
* ``kube``      ``KubeClient``: discovery, server-side apply, get, delete, inventory ConfigMap
* ``reconcile`` pure ordering/prune planning (``plan``), the inventory model, the ``engine``
* ``status``    ``ReconcileResult`` -> ``ClusterStatus`` proto
* ``app`` / ``cli``  the composition root and ``skerry agent run``

Importing this package is cheap on purpose (no grpc, no kubernetes), so the
CLI's ``--help`` stays fast.
"""
