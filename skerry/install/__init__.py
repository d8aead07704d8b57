"""``skerry install``: from nothing to a management cluster running the hub and the sealer.

Skerry's ``flux bootstrap``. The manifests under ``deploy/`` need Secrets and ConfigMaps no
``kubectl apply -k`` can make: an installation CA and the hub's and sealer's server certificates,
the hub-run enrollment CA and token key, a TUF repository, the Git credentials. This package makes
them, keeps the offline half on the installer's disk, and applies everything with server-side
apply, so a second run changes nothing and a lost Secret is made again from what exists.

Modules, one concept each:

``material``   every key, CA, certificate and trust file, and the Secrets/ConfigMaps that carry them
``manifests``  the deploy/ overlay rendered with this installation's settings (the hub's kustomize)
``management`` the management cluster's installation as a list of objects (``plan``: decides, applies nothing)
``cluster``    reading what an earlier install left and applying objects (the agent's kube client)
``workload``   an agent in a workload cluster: its bootstrap token and the trust it starts from
"""
