"""Reconciliation: what to apply in which order, what to prune, and what was done.

``model`` (refs, results, conditions), ``plan`` and ``inventory`` are pure;
``engine`` drives a ``KubeClient``.
"""
