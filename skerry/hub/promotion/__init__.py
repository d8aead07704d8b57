"""Promotion: moving an app's freight (its images) from one environment to the next by a Git commit.

``service`` decides (``Promoter``: freight, gates, promote, rollback) and ``servicer`` translates it to
gRPC; the parts, each pure where it can be:

* ``targets``    which overlay and which clusters an app's environment is
* ``freight``    the ``images:`` of a kustomization, read and rewritten with comments kept
* ``gates``      may freight move? order, clusters, soak, freeze, approvals (pure)
* ``health``     the clusters' reports as the gates read them (signed reports only in TUF mode)
* ``approvals``  who approved which freight, kept in the hub state (24 h)
* ``audit``      every promotion call, in the hub state
* ``mirror``     the promotion's own Git mirror: the commit and its push, redone on a race, never forced
* ``records``    each promotion's record: watched, stored, resumed after a restart
* ``pushes``     each push stored before it is made; a dead writer's settled by asking the remote
* ``rollout``    following a commit out to its clusters; auto-rollback within the soak
* ``settings``   where it pushes, who it commits as, how long it follows
"""
