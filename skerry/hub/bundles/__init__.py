"""One bundle per cluster: building it from rendered objects, signing it, serving the current one.

* ``builder``  rendered objects of a cluster's paths -> its ``Bundle`` (pure; refuses ambiguity)
* ``store``    each cluster's current signed bundle, its last render error, and the watchers
* ``releases`` a release as the store serves it and the hub state keeps it (restart, new writer, replica)
"""
