"""Reconciliation: what to apply in which order, what to prune, and what was done.

* ``engine``     ``Reconciler``: the reconcile as steps (inventory, apply, prune, record), each owning a condition
* ``applied``    ``AppliedState``: the engine's memory of what it applied (shared with the drift monitor)
* ``desired``    where a bundle object lands and the body applied for it
* ``prune``      the prune step and its safety rules
* ``crds``       waiting, within one budget, for the kinds a bundle's own CRDs add
* ``plan``       pure: apply/delete order, prune candidates, duplicates, CRD scopes
* ``inventory``  the ConfigMap that records exactly what this agent applied
* ``model``      refs, per-object results, conditions, ``ReconcileResult``
* ``drift``      pure: fingerprints of what was applied and the drift of a live object
* ``health``     pure: an object's health and the roll-up for a bundle
* ``backoff``    pure: per-object drift-correction backoff
* ``defaults``   pure: the API server defaults server-side apply needs up front
"""
