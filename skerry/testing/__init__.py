"""The harnesses Skerry's own tests, benchmarks and demo run on, shipped so users' tests can run on them too.

Like ``temporalio.testing`` and ``kopf.testing``: real parts on loopback, no mocks, importable from the
installed package and reading nothing outside it.

``envtest/``    a real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) on
                free loopback ports with a throwaway PKI; ``python -m skerry.testing.envtest build|run``
``faultproxy.py`` a TCP proxy that blackholes, delays or cuts a link (fault tests)
``postgres.py`` a private PostgreSQL server per test session (initdb + pg_ctl on a free loopback port)
``simagents.py`` simulated agents with real mTLS identities speaking the real protocol (HA tests, benches)
``trees.py``    generated directories to render (the tree of CRDs ``skerry render`` is timed and checked on)
``devstack.py`` a whole installation on one machine: sealer, hub and agents as real processes through the
                ``skerry`` CLI (``skerry demo`` and the end-to-end tests); its default fleet is a source
                checkout's ``examples/fleet``
"""
