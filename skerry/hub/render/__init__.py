"""Turning a directory of the repository into Kubernetes objects.

* ``engine``       the ``Engine`` protocol and the ``kustomize`` binary engine (or plain YAML)
* ``inprocess``    kustomize's Go library in-process (optional: pykustomize)
* ``worker``       that library in a child process, so one render has a deadline
* ``detect``       which engine ``auto`` means on this host
* ``closure``      the files a directory's render reads (its render key), from a tree listing
* ``kustomization`` kustomization files' size bound and build fields; remote bases found and refused
* ``incremental``  render each needed path once per change of its closure
* ``validate``     rendered objects against the Kubernetes schemas
"""
