"""Where the desired state comes from: Git, mirrored by the hub and read by commit.

* ``git``: ``GitSource``, one remote ref mirrored into the state dir (fetch, resolve, read a file,
  export a tree); with ``writes`` the only GitPython user.
* ``auth``: how the remote is reached (deploy key, token header, a git that never prompts; URLs safe
  to print).
* ``objects``: many objects at once for the incremental renderer (tree listing, batched blob reads,
  materialising a render's files), bounded.
* ``writes``: the commits the hub makes (promotion) without a working tree, pushed without force.
"""
